"""How many CPU threads torch may use, for the envs and for every command that runs torch.

torch's default is one OpenMP thread per core. On a shared machine that oversubscribes at
once: two threads beside a busy process ran the detector 10-20x slower than one, and every
env process of a vector setup would claim every core. So the default here is one thread,
and more is opt-in (``threads=N`` on the envs, ``--threads N`` on the commands).

The envs do not change torch's process-wide setting for good: the learned detector runs its
forward pass under :func:`torch_threads`, which sets the count for the call and restores the
previous one. Command-line entry points own their process and call :func:`set_torch_threads`.

Loading a detector runs on one thread whatever its count (:mod:`moc_envs.perception.space_detector`): the
first torch op on more than one thread starts OpenMP's worker pool, and a process that forks
after that hangs in its children's first parallel op. Gymnasium's async vector env builds an
env in the parent and then forks, so a parent that only built envs must have no pool yet.
No torch import at module level: ``import moc_envs`` stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "DEFAULT_THREADS",
    "check_threads",
    "torch_threads",
    "set_torch_threads",
    "add_threads_argument",
]

DEFAULT_THREADS = 1
"""One intra-op thread: cannot oversubscribe a shared machine; vector envs add a stepping thread."""

THREADS_HELP = (
    "torch CPU threads (1 cannot oversubscribe a shared machine; on an idle machine up to the "
    "number of cores is faster)"
)


def check_threads(threads: object) -> int:
    """``threads`` as an int >= 1 (None means :data:`DEFAULT_THREADS`), else ValueError/TypeError."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int):
        import numpy as np

        if not isinstance(threads, np.integer):
            raise TypeError(f"threads must be a positive int or None, got {type(threads).__name__} {threads!r}")
    if int(threads) < 1:  # type: ignore[call-overload]
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    return int(threads)  # type: ignore[call-overload]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_torch_threads(threads: int | None) -> int:
    """Set torch's thread count for this process (command-line entry points); returns it."""
    import torch

    n = check_threads(threads)
    torch.set_num_threads(n)
    return n


def add_threads_argument(parser: argparse.ArgumentParser, default: int = DEFAULT_THREADS) -> None:
    """Add ``--threads`` (torch CPU threads, default one) to a command's parser."""
    parser.add_argument("--threads", type=int, default=default, help=THREADS_HELP)
