"""Vector MOC envs over several processes: each steps, detects and tracks its share of the envs.

:class:`MocParallelVectorEnv` (``make_vec(..., workers=2)``) splits N envs into W near-equal
parts: the first runs in this process, each other part in a worker process of its own. Every
part is a :class:`~moc_envs.envs.vector.MocVectorEnv` with its own emulators, detector (loaded from
the same weights, with the same thread count) and trackers, so the W parts run at the same time
on W cores and one step costs about as much as the slowest part.

Why processes: ale-py 0.12 keeps the GIL while it emulates (two threads stepping two ALE envs
take as long as one thread stepping both; measured in issue 11), so a thread cannot emulate one
half of the envs while another detects the other half. Processes share nothing: each env's
rollout is the one an in-process vector env with the same seed gives (tests check this), and
the observation and info layout is the same.

Each worker is a fresh interpreter (torch and OpenMP state does not survive a fork, and
multiprocessing's spawn would re-import the caller's script) that imports exactly this
process's ``moc_envs``, never one from the working directory (:mod:`moc_envs.envs.workers`); it
loads the detector once, a few seconds, with the usual loaders (manifest-checked safetensors
and JSON). Commands, actions, observations and detections travel over a private socket pair
between this process and the workers it started (multiprocessing's connection), and an error
comes back as text: :class:`~moc_envs.errors.WorkerError` here, with the worker's own error and
traceback.

The protocol cannot fall out of step. Every argument is checked (and every command encoded)
before the first command is sent; each command carries a sequence number that its reply
echoes, and a reply to an earlier command (one a call that raised never collected) is dropped,
never returned. A step or reset that raises after its commands went out (an error in one part,
a KeyboardInterrupt, a timeout) may leave the parts a step apart, so the next ``step()`` raises
WorkerError until a full ``reset()``. A worker that does not answer within ``worker_timeout``
seconds (default 300) gives WorkerError naming it, its pid and its state (running, stopped,
zombie, from ``/proc``); one that exits, or whose connection broke in the middle of a message,
makes every later call raise WorkerError. One call runs at a time (a lock); ``close()`` from
another thread waits for the call in progress (at most about ``worker_timeout``), and a closed
env raises :class:`~moc_envs.errors.ClosedEnvError`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from moc_envs.envs.arguments import check_actions
from moc_envs.envs.vector import MocVectorEnv, reset_arguments
from moc_envs.envs.workers import (
    CLOSE_TIMEOUT_S,
    START_SEQ,
    Worker,
    pack_command,
    process_state,
    run_command,
)
from moc_envs.errors import ClosedEnvError, WorkerError
from moc_envs.games import GameSpec

__all__ = [
    "DEFAULT_WORKER_TIMEOUT_S",
    "MocParallelVectorEnv",
    "check_worker_timeout",
    "check_workers",
    "process_state",  # re-exported from moc_envs.envs.workers
    "split_rows",
]

DEFAULT_WORKER_TIMEOUT_S = 300.0
"""How long a call waits for a worker's reply by default: far above any step (milliseconds) or
per-env call, so that only a worker that stopped answering reaches it."""

_START_TIMEOUT_S = 600.0
"""How long a worker may take to build its envs and load its detector (at least)."""


def check_workers(workers: object, num_envs: int) -> int:
    """``workers`` as an int in [1, num_envs] (None means 1), else a clear ValueError/TypeError."""
    if workers is None:
        return 1
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer):
        raise TypeError(
            f"workers must be a positive int or None, got {type(workers).__name__} {workers!r}"
        )
    if not 1 <= int(workers) <= num_envs:
        raise ValueError(
            f"workers must be in [1, num_envs={num_envs}] (each process steps at least one env), "
            f"got {workers}"
        )
    return int(workers)


def check_worker_timeout(value: object) -> float:
    """``worker_timeout`` as positive finite seconds, else a clear TypeError/ValueError."""
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise TypeError(
            "worker_timeout must be a positive number of seconds, got "
            f"{type(value).__name__} {value!r}"
        )
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"worker_timeout must be a positive finite number of seconds, got {value!r}"
        )
    return seconds


def split_rows(num_envs: int, workers: int) -> list[range]:
    """Env rows of each part: ``workers`` consecutive ranges, sizes differing by at most one."""
    base, extra = divmod(num_envs, workers)
    out, start = [], 0
    for k in range(workers):
        size = base + (1 if k < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


class MocParallelVectorEnv(VectorEnv):
    """N MOC envs of one game split over ``workers`` processes (see the module docstring).

    Takes :class:`~moc_envs.envs.vector.MocVectorEnv`'s arguments; ``detector`` must be a name
    (``"space"`` or ``"ram"``): each process builds its own. ``workers`` >= 2 and <= ``num_envs``.
    Rows 0..n0-1 run in this process, the others in worker processes, in order.
    ``worker_timeout``: seconds a call waits for a worker's reply before it raises
    :class:`~moc_envs.errors.WorkerError` naming the worker, its pid and its state.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        game: str | GameSpec,
        num_envs: int,
        workers: int = 2,
        worker_timeout: float = DEFAULT_WORKER_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        # First, so that close() works whatever fails below.
        self._workers: list[Worker] = []
        self._local: MocVectorEnv | None = None
        self._lock = threading.RLock()
        self._closing = False
        self._stale: str | None = None
        self._timeout = DEFAULT_WORKER_TIMEOUT_S
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        workers = check_workers(workers, int(num_envs))
        if workers < 2:
            raise ValueError(
                f"MocParallelVectorEnv needs workers >= 2, got {workers}; "
                "use MocVectorEnv for one process"
            )
        self._timeout = check_worker_timeout(worker_timeout)
        detector = kwargs.get("detector", "space")
        if not isinstance(detector, str):
            raise TypeError(
                "workers > 1 needs detector='space' or 'ram' (each process builds its own); got a "
                f"{type(detector).__name__} object, which cannot be shared across processes: "
                "use workers=1"
            )
        name = game if isinstance(game, str) else game.name
        self.num_envs = int(num_envs)
        self.parts = split_rows(self.num_envs, workers)
        """Env rows of each part; part 0 runs in this process."""
        # The local part first: its checks (game, keywords, weights) fail fast, before any spawn.
        self._local = MocVectorEnv(name, len(self.parts[0]), **kwargs)
        # Each part's rows in the whole, so that its envs' distractor streams are the ones
        # workers=1 gives them (and no two envs share one).
        offset = int(kwargs.pop("row_offset", 0))
        try:
            starts = [
                pack_command(
                    START_SEQ, "start", (name, len(rows), {**kwargs, "row_offset": offset + rows.start})
                )
                for rows in self.parts[1:]
            ]
            for k, rows in enumerate(self.parts[1:], start=1):
                self._workers.append(Worker(k, rows, self._timeout))
            seqs = [w.send(blob) for w, blob in zip(self._workers, starts, strict=True)]
            for w, seq in zip(self._workers, seqs, strict=True):
                w.receive(seq, "start", max(_START_TIMEOUT_S, self._timeout))
        except BaseException:
            self.close_extras()
            raise
        local = self._local
        self.game = local.game
        self.autoreset_mode = local.autoreset_mode
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.single_observation_space = local.single_observation_space
        self.single_action_space = local.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self.env_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        """Each env's latest info dict, unbatched (as :attr:`MocVectorEnv.env_infos`)."""
        self._part_obs: list[Any] = [None] * len(self.parts)
        self._calls = [0] * len(self.parts)

    @property
    def workers(self) -> int:
        """Processes stepping the envs, this one included."""
        return len(self.parts)

    @property
    def worker_timeout(self) -> float:
        """Seconds a call waits for a worker's reply."""
        return self._timeout

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (parts 1.., in order)."""
        return [w.pid for w in self._workers]

    @property
    def detect_calls(self) -> int:
        """``detector.detect`` calls of every part, summed."""
        return self._local.detect_calls + sum(self._calls[1:]) if self._local is not None else 0

    # ------------------------------------------------------------ call guard
    @contextmanager
    def _calling(self, call: str) -> Iterator[None]:
        """Run ``call`` alone (a lock), on an open env whose workers can all be used."""
        with self._lock:
            if self._closing or self.closed:
                raise ClosedEnvError(f"{call}() on a closed MocParallelVectorEnv; make a new one")
            for w in self._workers:
                w.check()
            yield

    def _exchange_failed(self, call: str, err: BaseException) -> None:
        """Note that ``call`` raised after its commands went out: the parts may be a step apart."""
        what = type(err).__name__ + (f": {str(err).splitlines()[0]}" if str(err).strip() else "")
        self._stale = (
            f"MocParallelVectorEnv: {call}() was interrupted ({what}) after its commands went to "
            "the worker processes, so its parts may be a step apart"
        )

    def _check_in_step(self, call: str) -> None:
        if self._stale is not None:
            raise WorkerError(
                f"{self._stale}; call reset() without reset_mask before {call}(), or close this env"
            )

    # ---------------------------------------------------------------- API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env (or those of ``options["reset_mask"]``), as :meth:`MocVectorEnv.reset`.

        After a step or reset that raised, only a full reset (no ``reset_mask``) is accepted.
        """
        with self._calling("reset"):
            seeds, options, mask = reset_arguments(seed, options, self.num_envs)
            if mask is not None:
                self._check_in_step("reset(options={'reset_mask': ...})")
            touched: list[int] = []
            jobs = []
            for k, rows in enumerate(self.parts):
                part_opts = dict(options)
                if mask is not None:
                    if not mask[rows.start : rows.stop].any():
                        continue
                    part_opts["reset_mask"] = mask[rows.start : rows.stop]
                jobs.append((k, [seeds[i] for i in rows], part_opts or None))
                touched += [i for i in rows if mask is None or mask[i]]
            # Encoded before anything is sent: options that cannot travel raise here.
            blobs = {k: self._workers[k - 1].pack("reset", (s, o)) for k, s, o in jobs if k > 0}
            try:
                seqs = {k: self._workers[k - 1].send(blob) for k, blob in blobs.items()}
                for k, part_seeds, part_opts in jobs:
                    if k == 0:
                        obs, _ = self._local.reset(seed=part_seeds, options=part_opts)
                        infos, calls = self._local.env_infos, self._local.detect_calls
                    else:
                        obs, infos, calls = self._workers[k - 1].receive(
                            seqs[k], "reset", self._timeout
                        )
                        self._calls[k] = calls
                    self._store(k, obs, infos)
                out = self._batch(), self._infos(touched)
            except BaseException as err:
                self._exchange_failed("reset", err)
                raise
            if mask is None:
                self._stale = None
            return out

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env, each part in its own process at the same time (as MocVectorEnv.step)."""
        with self._calling("step"):
            self._check_in_step("step")
            actions = check_actions(actions, self.single_action_space, self.num_envs)
            blobs = {
                k: self._workers[k - 1].pack("step", actions[rows.start : rows.stop])
                for k, rows in enumerate(self.parts)
                if k > 0
            }
            rewards = np.zeros(self.num_envs, dtype=np.float64)
            terms = np.zeros(self.num_envs, dtype=bool)
            truncs = np.zeros(self.num_envs, dtype=bool)
            try:
                seqs = {k: self._workers[k - 1].send(blob) for k, blob in blobs.items()}
                for k, rows in enumerate(self.parts):
                    if k == 0:
                        obs, r, te, tr, _ = self._local.step(actions[rows.start : rows.stop])
                        infos = self._local.env_infos
                    else:
                        obs, r, te, tr, infos, calls = self._workers[k - 1].receive(
                            seqs[k], "step", self._timeout
                        )
                        self._calls[k] = calls
                    part = slice(rows.start, rows.stop)
                    rewards[part], terms[part], truncs[part] = r, te, tr
                    self._store(k, obs, infos)
                out = self._batch(), rewards, terms, truncs, self._infos(range(self.num_envs))
            except BaseException as err:
                self._exchange_failed("step", err)
                raise
            return out

    def _store(self, k: int, obs: Any, infos: list[dict[str, Any]]) -> None:
        rows = self.parts[k]
        self._part_obs[k] = obs
        for j, i in enumerate(rows):
            self.env_infos[i] = infos[j]

    def _batch(self) -> Any:
        parts = self._part_obs
        if isinstance(parts[0], dict):
            return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return np.concatenate(parts)

    def _infos(self, rows: Sequence[int]) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        for i in rows:
            infos = self._add_info(infos, self.env_infos[i], i)
        return infos

    # ------------------------------------------------ per-env access (SB3)
    def _route(self, indices: Sequence[int]) -> list[tuple[int, list[int]]]:
        """(part, local rows) in the order of ``indices``' parts."""
        out: dict[int, list[int]] = {}
        for i in indices:
            k = next(k for k, rows in enumerate(self.parts) if i in rows)
            out.setdefault(k, []).append(i - self.parts[k].start)
        return list(out.items())

    def _check_indices(self, call: str, indices: Sequence[int]) -> list[int]:
        out = []
        for i in indices:
            if isinstance(i, bool | np.bool_) or not isinstance(i, int | np.integer):
                raise TypeError(f"{call}: env indices must be ints, got {type(i).__name__} {i!r}")
            if not 0 <= int(i) < self.num_envs:
                raise IndexError(
                    f"{call}: env index {int(i)} is out of range for {self.num_envs} envs"
                )
            out.append(int(i))
        return out

    def _per_env(self, call: str, cmd: str, indices: Sequence[int], *args: Any) -> list[Any]:
        with self._calling(call):
            indices = self._check_indices(call, indices)
            routes = self._route(indices)
            blobs = {
                k: self._workers[k - 1].pack(cmd, (rows, *args)) for k, rows in routes if k > 0
            }
            results: dict[int, Any] = {}
            for k, local_rows in routes:
                if k == 0:
                    value = run_command(self._local, cmd, (local_rows, *args))
                else:
                    w = self._workers[k - 1]
                    value = w.receive(w.send(blobs[k]), cmd, self._timeout)
                if value is not None:
                    for j, v in zip(local_rows, value, strict=True):
                        results[self.parts[k].start + j] = v
            return [results.get(i) for i in indices]

    def get_env_attr(self, name: str, indices: Sequence[int]) -> list[Any]:
        """Attribute ``name`` of each inner ALE env ``indices``."""
        return self._per_env("get_env_attr", "get_attr", indices, name)

    def set_env_attr(self, name: str, value: Any, indices: Sequence[int]) -> None:
        """Set attribute ``name`` on each inner ALE env ``indices``."""
        self._per_env("set_env_attr", "set_attr", indices, name, value)

    def call_env_method(
        self, name: str, indices: Sequence[int], *args: Any, **kwargs: Any
    ) -> list[Any]:
        """Call method ``name`` of each inner ALE env ``indices``."""
        return self._per_env("call_env_method", "call", indices, name, args, kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: Sequence[int]) -> list[bool]:
        """Whether each inner env ``indices`` is wrapped with ``wrapper_class``."""
        return self._per_env("env_is_wrapped", "is_wrapped", indices, wrapper_class)

    def close_extras(self, **kwargs: Any) -> None:
        """Stop the worker processes and close the local part.

        A call in progress in another thread finishes first (it waits at most
        ``worker_timeout`` for a worker); later calls raise ClosedEnvError.
        """
        self._closing = True
        held = self._lock.acquire(timeout=self._timeout + CLOSE_TIMEOUT_S)
        try:
            if not held:
                # The call in progress is stuck outside any worker wait: free it by ending the
                # workers (its reads fail at once), then take the lock.
                for w in self._workers:
                    w.kill()
                held = self._lock.acquire(timeout=CLOSE_TIMEOUT_S)
            for w in self._workers:
                w.close()
            self._workers = []
            if self._local is not None and held:
                self._local.close()
                self._local = None
        finally:
            if held:
                self._lock.release()
