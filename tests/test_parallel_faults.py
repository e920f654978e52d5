"""Faults in the parallel vector env stay loud: never a stale row, a bounded wait, no code from the cwd.

Every test compares the parallel env's rows with an in-process MocVectorEnv given the same seeds
and actions (a reply one step old would show as a mismatch), or checks the clear error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import moc_envs
import moc_envs.envs.workers as workers
from moc_envs.envs.parallel import MocParallelVectorEnv
from moc_envs.errors import ClosedEnvError, WorkerError

NUM_ENVS = 4


def _rollout(envs, seed: int, steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of a seeded reset and ``steps`` seeded random steps."""
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, rewards = [obs], []
    for _ in range(steps):
        obs, reward, *_ = envs.step(rng.integers(0, 6, envs.num_envs))
        frames.append(obs)
        rewards.append(reward)
    return np.stack(frames), np.stack(rewards)


def _assert_same_rows(envs, reference, seed: int) -> None:
    obs, rewards = _rollout(envs, seed)
    ref_obs, ref_rewards = _rollout(reference, seed)
    # The rows change from step to step, so a reply one step old cannot match by chance.
    assert any(
        not np.array_equal(ref_obs[t, -1], ref_obs[t + 1, -1]) for t in range(len(ref_obs) - 1)
    )
    np.testing.assert_array_equal(obs, ref_obs)
    np.testing.assert_array_equal(rewards, ref_rewards)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[MocParallelVectorEnv, object]]:
    """A parallel env over three processes (rows 0-1 here, 2 and 3 in workers) and its reference."""
    envs = moc_envs.make_vec("MOC/Pong-v0", NUM_ENVS, detector="ram", workers=3)
    reference = moc_envs.make_vec("MOC/Pong-v0", NUM_ENVS, detector="ram")
    assert isinstance(envs, MocParallelVectorEnv) and envs.parts[0] == range(0, 2)
    try:
        yield envs, reference
    finally:
        envs.close()
        reference.close()


def _zeros() -> np.ndarray:
    return np.zeros(NUM_ENVS, dtype=np.int64)


def test_bad_seeds_send_nothing_and_rows_stay_current(pair) -> None:
    envs, reference = pair
    envs.reset(seed=0)
    envs.step(_zeros())
    # gymnasium's own seed error used to come after the workers had their commands.
    with pytest.raises(
        TypeError, match=r"seed\[0\] \(env 0\) must be None or a non-negative int, got str 'bad'"
    ):
        envs.reset(seed=["bad", 0, 0, 0])
    with pytest.raises(
        ValueError, match=r"seed\[2\] \(env 2\) must be None or a non-negative int, got -1"
    ):
        envs.reset(seed=[0, 1, -1, 3])
    with pytest.raises(ValueError, match=r"got 3 seeds for 4 envs"):
        envs.reset(seed=[0, 1, 2])
    with pytest.raises(
        TypeError, match=r"seed must be None, a non-negative int or a sequence .* got str '0'"
    ):
        envs.reset(seed="0")
    with pytest.raises(ValueError, match="seed must be .*got -5"):
        envs.reset(seed=-5)
    with pytest.raises(TypeError, match="options must be a dict or None, got str 'junk'"):
        envs.reset(seed=0, options="junk")
    with pytest.raises(
        TypeError, match=r"arguments of reset\(\) cannot be sent to a worker process"
    ):
        envs.reset(seed=0, options={"hook": lambda: None})
    with pytest.raises((TypeError, ValueError), match="action"):
        envs.step(np.array([0, 0, 0, 99]))
    with pytest.raises(IndexError, match="env index 7 is out of range for 4 envs"):
        envs.get_env_attr("spec", [7])
    envs.step(_zeros())  # none of the above left the env needing a reset
    _assert_same_rows(envs, reference, seed=0)


def test_numpy_seeds_are_accepted(pair) -> None:
    envs, reference = pair
    obs, _ = envs.reset(seed=np.int64(5))
    ref, _ = reference.reset(seed=5)
    np.testing.assert_array_equal(obs, ref)
    obs, _ = envs.reset(seed=np.arange(4, dtype=np.int64))
    ref, _ = reference.reset(seed=[0, 1, 2, 3])
    np.testing.assert_array_equal(obs, ref)


def _raise(exc: type[BaseException]) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise exc("injected")

    return fail


def _fault_second_send(envs, monkeypatch, exc) -> None:
    """Worker 1 has its step command; sending worker 2 its own raises."""
    monkeypatch.setattr(envs._workers[1], "send", _raise(exc))
    envs.step(_zeros())


def _fault_local_step(envs, monkeypatch, exc) -> None:
    """Both workers have their step command; this process's part raises."""
    monkeypatch.setattr(envs._local, "step", _raise(exc))
    envs.step(_zeros())


def _fault_local_reset(envs, monkeypatch, exc) -> None:
    monkeypatch.setattr(envs._local, "reset", _raise(exc))
    envs.reset(seed=3)


def _fault_wait(envs, monkeypatch, exc) -> None:
    """The wait for worker 1's reply raises (as a Ctrl-C in a hung step would)."""
    monkeypatch.setattr(envs._workers[0].conn, "poll", _raise(exc))
    envs.step(_zeros())


def _fault_after_collect(envs, monkeypatch, exc) -> None:
    """Every reply is in; putting the batch together raises."""
    monkeypatch.setattr(envs, "_batch", _raise(exc))
    envs.step(_zeros())


FAULTS = {
    "second_send": (_fault_second_send, "step"),
    "local_step": (_fault_local_step, "step"),
    "local_reset": (_fault_local_reset, "reset"),
    "wait": (_fault_wait, "step"),
    "after_collect": (_fault_after_collect, "step"),
}


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("where", list(FAULTS))
def test_a_fault_between_sending_and_collecting_leaves_no_stale_row(
    pair, monkeypatch, where, exc
) -> None:
    envs, reference = pair
    fault, call = FAULTS[where]
    envs.reset(seed=1)
    envs.step(_zeros())
    with pytest.raises(exc, match="injected"):
        fault(envs, monkeypatch, exc)
    monkeypatch.undo()
    # The parts may be a step apart now: stepping on is refused, every time, until a full reset.
    for _ in range(2):
        with pytest.raises(
            WorkerError,
            match=rf"{call}\(\) was interrupted \({exc.__name__}: injected\).*call reset\(\)",
        ):
            envs.step(_zeros())
    with pytest.raises(WorkerError, match="call reset"):
        envs.reset(options={"reset_mask": np.ones(NUM_ENVS, dtype=bool)})
    assert (
        envs.get_env_attr("spec", [3])[0].id == "ALE/Pong-v5"
    )  # per-env calls drop stale replies too
    _assert_same_rows(envs, reference, seed=11)


def test_a_worker_error_during_step_leaves_no_stale_row(pair) -> None:
    envs, reference = pair
    envs.reset(seed=2)
    envs.set_env_attr("step", None, [2])  # env 2 lives in worker 1; worker 2's reply is left unread
    try:
        with pytest.raises(
            WorkerError, match=r"worker process 1 \(envs 2..2\) failed with TypeError"
        ):
            envs.step(_zeros())
    finally:
        envs.call_env_method("__delattr__", [2], "step")
    with pytest.raises(WorkerError, match=r"step\(\) was interrupted \(WorkerError"):
        envs.step(_zeros())
    _assert_same_rows(envs, reference, seed=12)


def test_workers_ignore_ctrl_c(pair) -> None:
    envs, reference = pair
    envs.reset(seed=0)
    for pid in envs.worker_pids:
        os.kill(pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    _assert_same_rows(envs, reference, seed=13)


def test_an_interrupted_read_makes_every_later_call_fail() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2)
    try:
        envs.reset(seed=0)
        conn = envs._workers[0].conn
        conn.recv = _raise(KeyboardInterrupt)  # as if Ctrl-C landed inside a message
        with pytest.raises(KeyboardInterrupt):
            envs.step(np.zeros(2, dtype=np.int64))
        del conn.recv
        for call in (
            lambda: envs.step(np.zeros(2, dtype=np.int64)),
            lambda: envs.reset(seed=0),
            lambda: envs.get_env_attr("spec", [1]),
        ):
            with pytest.raises(
                WorkerError,
                match=r"reading its reply was interrupted by KeyboardInterrupt; close this env and make a new one",
            ):
                call()
    finally:
        envs.close()


def test_a_stalled_worker_times_out_with_its_pid_and_state() -> None:
    # The learned detector, as users run it.
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, workers=2, worker_timeout=5)
    reference = moc_envs.make_vec("MOC/Pong-v0", 2)
    assert envs.worker_timeout == 5.0
    pid = envs.worker_pids[0]
    try:
        envs.reset(seed=4)
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(
                WorkerError,
                match=rf"worker process 1 \(envs 1..1\), pid {pid}, state T \(stopped\), did not answer step\(\) within 5 s",
            ):
                envs.step(np.zeros(2, dtype=np.int64))
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(WorkerError, match=r"step\(\) was interrupted"):
            envs.step(np.zeros(2, dtype=np.int64))
        # Its late reply to that step is dropped, not returned by the next call.
        _assert_same_rows(envs, reference, seed=4)
    finally:
        envs.close()
        reference.close()


def test_closing_a_stopped_worker_kills_it() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2, worker_timeout=60)
    worker = envs._workers[0]
    os.kill(worker.pid, signal.SIGSTOP)
    envs.close()  # does not wait for a goodbye a stopped process cannot send
    assert worker.process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "5", True, None])
def test_worker_timeout_is_checked_before_anything_starts(bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match="worker_timeout must be a positive"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2, worker_timeout=bad)
    with pytest.raises((TypeError, ValueError), match="worker_timeout must be a positive"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", worker_timeout=bad)
    with pytest.raises(TypeError, match="Did you mean 'worker_timeout'"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", worker_timout=5)


def test_worker_timeout_with_one_process_is_accepted() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", worker_timeout=5)
    envs.close()


def _plant(folder: Path, marker: Path) -> None:
    package = folder / "moc_envs"
    package.mkdir(parents=True)
    code = f"open({str(marker)!r}, 'w').write('planted code ran')\n"
    (package / "__init__.py").write_text(code)
    (package / "parallel.py").write_text(code)


def test_workers_never_import_a_moc_envs_from_the_working_directory(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "marker"
    _plant(tmp_path / "cwd", marker)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(sys, "path", ["", *sys.path])  # as in a REPL or `python -c`
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2)
    try:
        envs.reset(seed=0)
        envs.step(np.zeros(2, dtype=np.int64))
    finally:
        envs.close()
    assert not marker.exists()


def test_a_worker_refuses_another_moc_envs_without_running_it(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "marker"
    _plant(tmp_path, marker)
    real = workers.worker_sys_path
    monkeypatch.setattr(workers, "worker_sys_path", lambda: [str(tmp_path), *real()])
    with pytest.raises(
        WorkerError,
        match=r"would import moc_envs from '.*/moc_envs/__init__.py', not '.*' as the parent process does; refused",
    ):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2)
    assert not marker.exists()


def test_a_closed_env_raises_a_clear_error() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2)
    envs.reset(seed=0)
    envs.close()
    envs.close()  # twice is fine
    for call, run in {
        "step": lambda: envs.step(np.zeros(2, dtype=np.int64)),
        "reset": lambda: envs.reset(seed=0),
        "get_env_attr": lambda: envs.get_env_attr("spec", [1]),
        "call_env_method": lambda: envs.call_env_method("get_action_meanings", [0]),
    }.items():
        with pytest.raises(
            ClosedEnvError, match=rf"{call}\(\) on a closed MocParallelVectorEnv; make a new one"
        ):
            run()


def test_close_from_another_thread_waits_for_the_step_in_progress() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2)
    reference = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram")
    worker = envs._workers[0]
    try:
        envs.reset(seed=6)
        reference.reset(seed=6)
        inside, go = threading.Event(), threading.Event()
        local_step = envs._local.step

        def slow_step(actions):
            inside.set()  # the worker has its command now
            go.wait()
            return local_step(actions)

        envs._local.step = slow_step
        result: dict[str, object] = {}

        def stepper() -> None:
            try:
                result["obs"] = envs.step(np.ones(2, dtype=np.int64))[0]
            except BaseException as err:  # noqa: BLE001 - inspected below
                result["error"] = err

        stepping = threading.Thread(target=stepper)
        stepping.start()
        inside.wait()
        closing = threading.Thread(target=envs.close)
        closing.start()
        go.set()
        stepping.join()
        closing.join()
        assert "error" not in result, result.get("error")
        ref_obs = reference.step(np.ones(2, dtype=np.int64))[0]
        np.testing.assert_array_equal(result["obs"], ref_obs)  # the step finished, both parts
        assert worker.process.returncode == 0  # it closed its envs and exited, not killed
        with pytest.raises(ClosedEnvError):
            envs.step(np.zeros(2, dtype=np.int64))
    finally:
        envs.close()
        reference.close()
