"""Vector MOC envs over several processes: each steps, detects and tracks its share of the envs.

:class:`MocParallelVectorEnv` (``make_vec(..., workers=2)``) splits N envs into W near-equal
parts: the first runs in this process, each other part in a worker process of its own. Every
part is a :class:`~moc_envs.vector.MocVectorEnv` with its own emulators, detector (loaded from
the same weights, with the same thread count) and trackers, so the W parts run at the same time
on W cores and one step costs about as much as the slowest part.

Why processes: ale-py 0.12 keeps the GIL while it emulates (two threads stepping two ALE envs
take as long as one thread stepping both; measured in issue 11), so a thread cannot emulate one
half of the envs while another detects the other half. Processes share nothing: each env's
rollout is the one an in-process vector env with the same seed gives (tests check this), and
the observation and info layout is the same.

Each worker is a fresh interpreter (``python -m moc_envs.parallel``: torch and OpenMP state
does not survive a fork, and multiprocessing's spawn would re-import the caller's script); each
imports torch and loads the detector once, a few seconds. Each process reads its weights with
the usual loaders (manifest-checked safetensors and JSON); commands, actions, observations and
detections travel over a private socket pair between this process and the workers it started
(multiprocessing's connection), and an error comes back as text. A worker that fails raises :class:`~moc_envs.errors.WorkerError` here, with the worker's
own error and traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from moc_envs.arguments import check_actions
from moc_envs.errors import WorkerError
from moc_envs.games import GameSpec
from moc_envs.vector import MocVectorEnv, reset_arguments

__all__ = ["MocParallelVectorEnv", "split_rows", "check_workers"]

_START_TIMEOUT_S = 600.0
"""How long a worker may take to build its envs and load its detector."""


def check_workers(workers: object, num_envs: int) -> int:
    """``workers`` as an int in [1, num_envs] (None means 1), else a clear ValueError/TypeError."""
    if workers is None:
        return 1
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer):
        raise TypeError(f"workers must be a positive int or None, got {type(workers).__name__} {workers!r}")
    if not 1 <= int(workers) <= num_envs:
        raise ValueError(f"workers must be in [1, num_envs={num_envs}] (each process steps at least one env), got {workers}")
    return int(workers)


def split_rows(num_envs: int, workers: int) -> list[range]:
    """Env rows of each part: ``workers`` consecutive ranges, sizes differing by at most one."""
    base, extra = divmod(num_envs, workers)
    out, start = [], 0
    for k in range(workers):
        size = base + (1 if k < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def _serve(conn: Connection) -> None:
    """Worker process: build a MocVectorEnv and answer the parent's commands until "close"."""
    try:
        _, (game, num_envs, kwargs) = conn.recv()
        envs = MocVectorEnv(game, num_envs, **kwargs)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", _report(err), traceback.format_exc()))
        conn.close()
        return
    conn.send(("ok", None, ""))
    while True:
        try:
            cmd, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):  # the parent is gone
            break
        try:
            if cmd == "close":
                envs.close()
                conn.send(("ok", None, ""))
                break
            conn.send(("ok", _run(envs, cmd, payload), ""))
        except BaseException as err:  # noqa: BLE001
            conn.send(("error", _report(err), traceback.format_exc()))
    conn.close()


def _run(envs: MocVectorEnv, cmd: str, payload: Any) -> Any:
    if cmd == "step":
        obs, rewards, terms, truncs, _ = envs.step(payload)
        return obs, rewards, terms, truncs, envs.env_infos, envs.detect_calls
    if cmd == "reset":
        seeds, options = payload
        obs, _ = envs.reset(seed=seeds, options=options)
        return obs, envs.env_infos, envs.detect_calls
    if cmd == "get_attr":
        rows, name = payload
        return envs.get_env_attr(name, rows)
    if cmd == "set_attr":
        rows, name, value = payload
        envs.set_env_attr(name, value, rows)
        return None
    if cmd == "call":
        rows, name, args, kwargs = payload
        return envs.call_env_method(name, rows, *args, **kwargs)
    if cmd == "is_wrapped":
        rows, wrapper_class = payload
        return envs.env_is_wrapped(wrapper_class, rows)
    raise ValueError(f"unknown worker command {cmd!r}")


def _report(err: BaseException) -> str:
    """The error as text for the parent (only strings cross back, never exception objects)."""
    return f"{type(err).__name__}: {err}"


class _Worker:
    """One worker process (``python -m moc_envs.parallel FD``) and its end of a socket pair.

    Not multiprocessing.Process: its ``spawn`` start method re-imports the caller's main
    module in the child, which fails in any script without an ``if __name__ == "__main__"``
    guard; a fresh interpreter running this module imports only moc_envs.
    """

    def __init__(self, index: int, rows: range, game: str, kwargs: dict[str, Any]) -> None:
        self.index, self.rows = index, rows
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # The child finds moc_envs (and whatever the caller imports from) where this process did.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moc_envs.parallel", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self._pending = False
        self.send("start", (game, len(rows), kwargs))

    def send(self, cmd: str, payload: Any = None) -> None:
        try:
            self.conn.send((cmd, payload))
        except (ConnectionError, OSError) as err:
            raise WorkerError(f"{self._name()} exited unexpectedly (exit code {self._exit_code()})") from err
        self._pending = True

    def receive(self, timeout: float | None = None) -> Any:
        """The answer to the last command; raises the worker's error as :class:`WorkerError`'s cause."""
        try:
            if timeout is not None and not self.conn.poll(timeout):
                raise WorkerError(f"{self._name()} did not answer within {timeout:.0f} s")
            status, value, tb = self.conn.recv()
        except (EOFError, ConnectionError, OSError) as err:
            raise WorkerError(f"{self._name()} exited unexpectedly (exit code {self._exit_code()})") from err
        finally:
            self._pending = False
        if status == "error":
            raise WorkerError(f"{self._name()} failed with {value}\n{tb.rstrip()}")
        return value

    def _name(self) -> str:
        return f"worker process {self.index} (envs {self.rows.start}..{self.rows.stop - 1})"

    def _exit_code(self) -> int | None:
        try:
            return self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                if self._pending:
                    self.receive(timeout=30.0)
                self.send("close")
                self.receive(timeout=30.0)
            except (WorkerError, OSError):
                pass
        try:
            self.process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5.0)
        self.conn.close()


class MocParallelVectorEnv(VectorEnv):
    """N MOC envs of one game split over ``workers`` processes (see the module docstring).

    Takes :class:`~moc_envs.vector.MocVectorEnv`'s arguments; ``detector`` must be a name
    (``"space"`` or ``"ram"``): each process builds its own. ``workers`` >= 2 and <= ``num_envs``.
    Rows 0..n0-1 run in this process, the others in worker processes, in order.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, game: str | GameSpec, num_envs: int, workers: int = 2, **kwargs: Any) -> None:
        self._workers: list[_Worker] = []
        self._local: MocVectorEnv | None = None
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        workers = check_workers(workers, int(num_envs))
        if workers < 2:
            raise ValueError(f"MocParallelVectorEnv needs workers >= 2, got {workers}; use MocVectorEnv for one process")
        detector = kwargs.get("detector", "space")
        if not isinstance(detector, str):
            raise TypeError(
                "workers > 1 needs detector='space' or 'ram' (each process builds its own); got a "
                f"{type(detector).__name__} object, which cannot be shared across processes: use workers=1"
            )
        name = game if isinstance(game, str) else game.name
        self.num_envs = int(num_envs)
        self.parts = split_rows(self.num_envs, workers)
        """Env rows of each part; part 0 runs in this process."""
        # The local part first: its checks (game, keywords, weights) fail fast, before any spawn.
        self._local = MocVectorEnv(name, len(self.parts[0]), **kwargs)
        try:
            self._workers = [_Worker(k, rows, name, kwargs) for k, rows in enumerate(self.parts) if k > 0]
            for w in self._workers:
                w._pending = True
                w.receive(timeout=_START_TIMEOUT_S)
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
    def detect_calls(self) -> int:
        """``detector.detect`` calls of every part, summed."""
        return self._local.detect_calls + sum(self._calls[1:]) if self._local is not None else 0

    # ---------------------------------------------------------------- API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env (or those of ``options["reset_mask"]``), as :meth:`MocVectorEnv.reset`."""
        seeds, options, mask = reset_arguments(seed, options, self.num_envs)
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
        for k, part_seeds, part_opts in jobs:
            if k > 0:
                self._workers[k - 1].send("reset", (part_seeds, part_opts))
        for k, part_seeds, part_opts in jobs:
            if k == 0:
                obs, _ = self._local.reset(seed=part_seeds, options=part_opts)
                infos, calls = self._local.env_infos, self._local.detect_calls
            else:
                obs, infos, calls = self._workers[k - 1].receive()
                self._calls[k] = calls
            self._store(k, obs, infos)
        return self._batch(), self._infos(touched)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env, each part in its own process at the same time; as :meth:`MocVectorEnv.step`."""
        actions = check_actions(actions, self.single_action_space, self.num_envs)
        for k, rows in enumerate(self.parts):
            if k > 0:
                self._workers[k - 1].send("step", actions[rows.start : rows.stop])
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terms = np.zeros(self.num_envs, dtype=bool)
        truncs = np.zeros(self.num_envs, dtype=bool)
        for k, rows in enumerate(self.parts):
            if k == 0:
                obs, r, te, tr, _ = self._local.step(actions[rows.start : rows.stop])
                infos = self._local.env_infos
            else:
                obs, r, te, tr, infos, self._calls[k] = self._workers[k - 1].receive()
            rewards[rows.start : rows.stop], terms[rows.start : rows.stop], truncs[rows.start : rows.stop] = r, te, tr
            self._store(k, obs, infos)
        return self._batch(), rewards, terms, truncs, self._infos(range(self.num_envs))

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

    def _per_env(self, cmd: str, indices: Sequence[int], *args: Any) -> list[Any]:
        indices = list(indices)
        results: dict[int, Any] = {}
        for k, local_rows in self._route(indices):
            if k == 0:
                value = _run(self._local, cmd, (local_rows, *args))
            else:
                self._workers[k - 1].send(cmd, (local_rows, *args))
                value = self._workers[k - 1].receive()
            if value is not None:
                for j, v in zip(local_rows, value, strict=True):
                    results[self.parts[k].start + j] = v
        return [results.get(i) for i in indices]

    def get_env_attr(self, name: str, indices: Sequence[int]) -> list[Any]:
        """Attribute ``name`` of each inner ALE env ``indices``."""
        return self._per_env("get_attr", indices, name)

    def set_env_attr(self, name: str, value: Any, indices: Sequence[int]) -> None:
        """Set attribute ``name`` on each inner ALE env ``indices``."""
        self._per_env("set_attr", indices, name, value)

    def call_env_method(self, name: str, indices: Sequence[int], *args: Any, **kwargs: Any) -> list[Any]:
        """Call method ``name`` of each inner ALE env ``indices``."""
        return self._per_env("call", indices, name, args, kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: Sequence[int]) -> list[bool]:
        """Whether each inner env ``indices`` is wrapped with ``wrapper_class``."""
        return self._per_env("is_wrapped", indices, wrapper_class)

    def close_extras(self, **kwargs: Any) -> None:
        """Stop the worker processes and close the local part."""
        for w in self._workers:
            w.close()
        self._workers = []
        if self._local is not None:
            self._local.close()
            self._local = None


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
