"""Making vector MOC envs: :func:`make_vec` and the registered ids' ``vector_entry_point``.

It picks between the in-process :class:`~moc_envs.envs.vector.MocVectorEnv` and the
multi-process :class:`~moc_envs.envs.parallel.MocParallelVectorEnv`; keeping that choice here
lets the parallel env build on the in-process one without the two importing each other.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from moc_envs.envs.parallel import MocParallelVectorEnv, check_worker_timeout, check_workers
from moc_envs.envs.registration import game_of_id, is_flat_id
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detector
from moc_envs.perception.detectors import DetectorName

__all__ = ["make_vec", "vector_entry"]


def make_vec(
    env_id: str,
    num_envs: int,
    detector: DetectorName | Detector = "space",
    device: str = "auto",
    weights: str | os.PathLike[str] | None = None,
    allow_unclassified: bool = False,
    threads: int | None = None,
    workers: int | None = None,
    **kwargs: Any,
) -> MocVectorEnv | MocParallelVectorEnv:
    """``num_envs`` copies of ``env_id`` (``"MOC/Pong-v0"``) as one vector env with batched detection.

    ``workers`` (None: 1) is the number of processes that step, detect and track a share of
    the envs each: 1 gives a :class:`MocVectorEnv` in this process; more give a
    :class:`~moc_envs.envs.parallel.MocParallelVectorEnv` (one share here, the others in worker
    processes; ``detector`` must then be ``"space"`` or ``"ram"``). Use one worker per core
    (``workers=2`` on a 2-core machine): the emulator keeps Python's GIL while it runs, so only
    processes put a second core to work. ``kwargs`` take the single env's keywords
    (``obs_mode``, ``ram_labels``, ALE arguments) and ``autoreset_mode``; ``weights``,
    ``allow_unclassified`` and ``threads`` (torch CPU threads per process, None: one) go to the
    learned detector. ``worker_timeout`` (seconds, default 300) bounds each wait for a worker
    process's reply (``workers`` > 1; checked, and unused, with one process). Also reached
    through ``gymnasium.make_vec("MOC/Pong-v0", num_envs=8)`` (the ids' ``vector_entry_point``).
    ``distractors`` / ``distractor_seed`` draw moving bars on every env's frames, each env with
    its own stream (:mod:`moc_envs.perception.distractors`). ``emulator="ale-vector"`` steps
    the games in ale-py's C++ vector env, on threads outside the GIL (no RAM, and the
    differences :mod:`moc_envs.envs.emulators` lists); ``emulator_threads`` sets its threads.
    ``max_episode_steps`` truncates each env's episode after
    that many steps, as ``gym.make``'s keyword does; a ``-flat`` id (``"MOC/Pong-flat-v0"``)
    defaults ``obs_mode`` to ``"flat"``. Example::

        envs = moc_envs.make_vec("MOC/Pong-v0", num_envs=8, workers=2)
        obs, infos = envs.reset(seed=0)          # obs: (8, n_slots, 7)
    """
    if is_flat_id(env_id):
        kwargs.setdefault("obs_mode", "flat")  # what gym.make_vec reads from the id's kwargs
    return vector_entry(
        game_of_id(env_id), num_envs, detector=detector, device=device, weights=weights,
        allow_unclassified=allow_unclassified, threads=threads, workers=workers, **kwargs,
    )  # fmt: skip


def vector_entry(
    game: str | GameSpec, num_envs: int, workers: int | None = None, **kwargs: Any
) -> MocVectorEnv | MocParallelVectorEnv:
    """The registered ids' ``vector_entry_point``: a MocVectorEnv, or a MocParallelVectorEnv for ``workers`` > 1."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    if check_workers(workers, int(num_envs)) > 1:
        return MocParallelVectorEnv(game, int(num_envs), workers=int(workers), **kwargs)  # type: ignore[arg-type]
    if "worker_timeout" in kwargs:  # one process: no worker to wait for
        check_worker_timeout(kwargs.pop("worker_timeout"))
    return MocVectorEnv(game, num_envs, **kwargs)
