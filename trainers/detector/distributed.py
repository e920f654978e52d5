"""Data-parallel detector training: torch DistributedDataParallel (DDP) under ``torchrun``.

``moc-envs train-detector`` is one process unless it runs under ``torchrun``; this module
then hands it a :class:`Dist` of one process whose every method leaves the run as it was
(no process group, no sharding, no extra collective), so a plain run is unchanged.

Under ``torchrun --nproc_per_node N -m trainers.detector.train ...`` (what ``moc-envs train-detector
--nproc N`` and :func:`launch` start, one node) each of the N processes:

- joins one process group: NCCL on CUDA (process ``i`` of a node takes ``cuda:i``), gloo on
  the CPU;
- trains on its own shard of the dataset: stacks ``rank, rank + N, rank + 2N, ...`` of the
  train split;
- draws its own batches and sampling noise (seeds derived from the run's seed and the rank;
  rank 0 keeps the run's seed, so its stream is a single-process run's);
- averages gradients with the others in every backward pass (DDP), so all ranks apply the same
  update and keep identical parameters (checked at every checkpoint, see :meth:`Dist.in_sync`);
- agrees with the others on every decision that ends or shapes the loop: a non-finite loss on
  any rank stops all, ``--max-minutes`` stops all at the same step, the dynamic lambda schedule
  uses the mean of every rank's motion distance.

Rank 0 alone holds the run lock, writes checkpoints (with every rank's RNG state),
TensorBoard, ``config.json`` and the evaluation; the export reads its checkpoint as usual.

**Batch and learning rate.** ``--batch-stacks B`` is per process: one step averages the
gradients of N x B stacks (N x B x T frames), and a run of S steps sees N times the frames of
a single-process run. The learning rates are not scaled: they are part of the run's config,
checked on resume. Keep them for the adaptive optimisers used here (RMSprop, Adam divide by
the gradient's running scale, so a larger batch mostly lowers the noise); to follow the
single-process schedule exactly on N processes pass ``--batch-stacks B/N`` instead.

**Resume with another N.** A checkpoint holds the model, both optimisers, the step and every
rank's RNG state. Resumed with the same N, each rank continues its own streams; with another N,
the shards are recut, rank 0 continues its streams and the other ranks seed theirs from (seed,
rank, step); the run continues from the same step and schedule, but its batches are no longer
those of an uninterrupted run (a :class:`trainers.detector.train.TrainWarning` says so).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch

from moc_envs.errors import MocEnvsError

__all__ = [
    "DistributedError",
    "Dist",
    "under_torchrun",
    "setup",
    "shard",
    "rank_seed",
    "parameter_digest",
    "strip_nproc",
    "torchrun_command",
    "launch",
]

T = TypeVar("T")

BARRIER_SECONDS = 300
"""How long a finished rank waits at the closing barrier for the others (a gloo group)."""

# What torchrun sets in every process it starts (torch.distributed.elastic).
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class DistributedError(MocEnvsError, ValueError):
    """A distributed run that cannot start as asked (bad process count, device, launcher)."""


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (its rank variables are set)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for rank ``rank`` (>= 1) of a run seeded ``seed``, resumed at ``step``.

    Derived through NumPy's SeedSequence so that nearby (seed, rank) pairs give unrelated
    streams; rank 0 never uses it (it keeps the run's own seed).
    """
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0]) >> 1


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters (names, dtypes, shapes, bytes), to compare ranks."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        t = p.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def shard(data: T, rank: int, world_size: int) -> T:
    """Stacks ``rank::world_size`` of a dataclass of tensors indexed by stack (TrainData).

    Copies the shard, so that the full split can be freed. Raises DistributedError when the
    split has fewer stacks than there are processes.
    """
    fields = dataclasses.fields(data)  # type: ignore[arg-type]
    n = int(getattr(data, fields[0].name).shape[0])
    if n < world_size:
        raise DistributedError(
            f"the train split holds {n} stacks, fewer than the {world_size} processes: every "
            "process needs a shard of at least one stack; use fewer processes or a larger split"
        )
    return type(data)(**{f.name: getattr(data, f.name)[rank::world_size].clone() for f in fields})


@dataclass
class Dist:
    """This process's place in a run: rank, process count, device, and the collectives it uses.

    With ``world_size == 1`` every method returns its input and runs no collective.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    """The process group's device; None for one process (the command resolves its own)."""
    backend: str | None = None

    @property
    def active(self) -> bool:
        """More than one process (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and logs."""
        return self.rank == 0

    @property
    def where(self) -> str:
        """`` on rank R of N`` for messages of a distributed run; empty for one process."""
        return f" on rank {self.rank} of {self.world_size}" if self.active else ""

    # ------------------------------------------------------------ model and data
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to call forward on: DDP around ``model`` (gradients averaged), or itself.

        DDP copies rank 0's parameters to every rank as it starts, so all ranks begin equal.
        """
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, data: T) -> T:
        """This rank's shard of ``data`` (see :func:`shard`); ``data`` itself for one process."""
        return shard(data, self.rank, self.world_size) if self.active else data

    def reseed(self, seed: int, generator: torch.Generator, step: int = 0) -> None:
        """Give ranks >= 1 their own python / numpy / torch / batch streams; rank 0 keeps its own."""
        if self.rank == 0:
            return
        s = rank_seed(seed, self.rank, step)
        import random

        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)
        generator.manual_seed(s)

    # ------------------------------------------------------------ agreement between ranks
    def _reduce(self, values: Sequence[float]) -> list[float]:
        # float64 on the process group's device: NCCL reduces CUDA tensors only.
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        if not self.active:
            return flag
        return self._reduce([0.0 if flag else 1.0])[0] == 0.0

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on at least one rank."""
        if not self.active:
            return flag
        return self._reduce([1.0 if flag else 0.0])[0] > 0.0

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        if not self.active:
            return value
        return self._reduce([value])[0] / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (plain values, tensors, lists, tuples, dicts) in rank order."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, _plain(obj))
        return [_unplain(o) for o in out]

    def in_sync(self, model: torch.nn.Module) -> list[str]:
        """Every rank's :func:`parameter_digest`; raises DistributedError when they differ."""
        digests = self.gather(parameter_digest(model))
        if len(set(digests)) > 1:
            detail = ", ".join(f"rank {i}: {d[:12]}" for i, d in enumerate(digests))
            raise DistributedError(
                f"the ranks' parameters diverged ({detail}); DDP should keep them identical, "
                "so this run cannot be trusted: report it with the command that produced it"
            )
        return digests

    def close(self, clean: bool = True) -> None:
        """Leave the process group.

        ``clean``: the run ended without an error on this rank. The ranks then wait for each
        other first: a rank that tears the group down while another still talks to it (rank 0
        hosts the group's store) makes the other's communication threads abort the process. A
        failed rank leaves at once (the others' collectives fail on their own)."""
        if not (self.active and torch.distributed.is_initialized()):
            return
        if clean:
            try:
                if torch.distributed.get_backend() == "gloo":
                    torch.distributed.monitored_barrier(timeout=timedelta(seconds=BARRIER_SECONDS))
                else:
                    torch.distributed.barrier()
            except RuntimeError:
                pass  # a rank that never came: leave anyway, the launcher reports its failure
        torch.distributed.destroy_process_group()


_TENSOR = "__tensor__"


def _plain(obj: Any) -> Any:
    """``obj`` with every tensor as (tag, dtype, shape, bytes): all_gather_object then pickles
    plain values only (torch 2.13 cannot unpickle the storages of gathered tensors)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        return (
            _TENSOR,
            str(t.dtype).removeprefix("torch."),
            tuple(t.shape),
            t.reshape(-1).view(torch.uint8).numpy().tobytes(),
        )
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _unplain(obj: Any) -> Any:
    """The inverse of :func:`_plain`."""
    if isinstance(obj, tuple) and len(obj) == 4 and obj[0] == _TENSOR:
        _, dtype, shape, raw = obj
        flat = (
            torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            if raw
            else torch.empty(0, dtype=torch.uint8)
        )
        return flat.view(getattr(torch, dtype)).reshape(shape)
    if isinstance(obj, dict):
        return {k: _unplain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_unplain(v) for v in obj)
    return obj


def _device_for(device: str, local_rank: int, local_world: int) -> torch.device:
    """The device of local rank ``local_rank``: cuda:local_rank on GPUs, else the CPU."""
    from moc_envs.device import resolve_device

    name = resolve_device(device)
    if not name.startswith("cuda"):
        return torch.device("cpu")
    if ":" in name:
        if local_world > 1:
            raise DistributedError(
                f"--device {device} names one GPU, but torchrun starts {local_world} processes "
                "on this node and each takes its own (cuda:LOCAL_RANK): pass --device cuda or "
                "auto, and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )
        return torch.device(name)
    if local_rank >= torch.cuda.device_count():
        raise DistributedError(
            f"local rank {local_rank} needs cuda:{local_rank}, but torch sees "
            f"{torch.cuda.device_count()} GPU(s): start at most that many processes per node"
        )
    return torch.device(f"cuda:{local_rank}")


def setup(device: str, nproc: int = 1) -> Dist:
    """This process's :class:`Dist`; joins the process group when torchrun started N > 1 processes.

    ``device`` is the command's ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``);
    ``nproc`` its ``--nproc``, which under torchrun must be 1 (not given) or torchrun's count.
    """
    if not under_torchrun():
        return Dist()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank, local_world = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
    if nproc not in (1, world):
        raise DistributedError(
            f"--nproc {nproc} under torchrun, which started {world} processes: leave --nproc "
            "out when torchrun launches the run (torchrun's --nproc_per_node sets the count)"
        )
    if world == 1:
        return Dist()
    dev = _device_for(device, local_rank, local_world)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    torch.distributed.init_process_group(backend=backend)
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N`` (what the relaunched processes get)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _check_nproc(nproc: object) -> int:
    if isinstance(nproc, bool) or not isinstance(nproc, int):
        raise TypeError(f"nproc must be an int >= 1, got {type(nproc).__name__} {nproc!r}")
    if nproc < 1:
        raise DistributedError(f"nproc must be >= 1, got {nproc}")
    return nproc


def torchrun_command(args: Sequence[str], nproc: int, module: str = "trainers.detector.train") -> list[str]:
    """The command that runs ``python -m <module> <args>`` as ``nproc`` DDP processes on this node.

    ``torchrun --standalone`` (through ``python -m torch.distributed.run``, so that the
    current interpreter and its packages are used) with a free local rendezvous port. ``args``
    should not hold ``--nproc`` (see :func:`strip_nproc`). For the ``moc-envs train`` pipeline::

        subprocess.run(torchrun_command(["--game", "Pong", "--data", d, "--out", o], 2), check=True)
    """
    n = _check_nproc(nproc)
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
        "-m", module, *args,
    ]  # fmt: skip


def launch(args: Sequence[str], nproc: int, module: str = "trainers.detector.train") -> int:
    """Run :func:`torchrun_command` to the end in the foreground; returns torchrun's exit code.

    torchrun stops every process when one fails and reports which rank failed and why.
    """
    return subprocess.run(
        torchrun_command(strip_nproc(args), nproc, module), check=False
    ).returncode
