"""The `threads` keyword, gymnasium.make_vec's batched vector env, and worker processes (`workers`)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import moc_envs
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.perception.detection import Detection
from moc_envs.threads import check_threads, torch_threads


class CountingThreads:
    """A stateless detector that records torch's thread count while it runs."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        self.seen.append(torch.get_num_threads())
        # A box that follows the frame's content, so that a row mix-up would show.
        return [[Detection("Ball", float(f.mean()) % 150, 20.0, 2.0, 4.0)] for f in frames]


def test_gymnasium_make_vec_returns_the_batched_env() -> None:
    envs = gym.make_vec("MOC/Pong-v0", num_envs=3, detector="ram")
    try:
        assert isinstance(envs, MocVectorEnv) and envs.num_envs == 3
        obs, _ = envs.reset(seed=0)
        calls = envs.detect_calls
        obs, *_ = envs.step(envs.action_space.sample())
        assert obs.shape == (3, moc_envs.get_game("Pong").n_slots, 7)
        assert envs.detect_calls == calls + 1  # one batched call for the three envs
    finally:
        envs.close()


def test_gymnasium_make_vec_passes_keywords() -> None:
    envs = gym.make_vec("MOC/Pong-v0", num_envs=2, detector="ram", obs_mode="flat", frameskip=2)
    try:
        assert envs.single_observation_space.shape == (moc_envs.get_game("Pong").n_slots * 7,)
        assert envs.envs[0].unwrapped._frameskip == 2
    finally:
        envs.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_threads_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="threads must be"):
        check_threads(bad)
    with pytest.raises((ValueError, TypeError), match="threads must be"):
        gym.make("MOC/Pong-v0", detector="ram", threads=bad)
    with pytest.raises((ValueError, TypeError), match="threads must be"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", threads=bad)


def test_torch_threads_restores_the_process_setting() -> None:
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before


def test_learned_detector_runs_with_its_thread_count() -> None:
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    env = gym.make("MOC/Pong-v0", threads=wanted)
    try:
        det = env.get_wrapper_attr("detector")
        assert det.threads == wanted
        seen: list[int] = []
        forward = det._image_raw  # the image encoder (frozen on the CPU)
        assert forward is not None

        def spy(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return forward(*args, **kwargs)

        det._image_raw = spy
        env.reset(seed=0)
        env.step(0)
        assert seen == [wanted, wanted]
        assert torch.get_num_threads() == before  # the env does not keep the process setting
    finally:
        env.close()


def _rollout(workers: int, mode: str, detector: str = "space", steps: int = 40, num_envs: int = 5):
    """Observations, rewards, flags and per-env infos of a seeded random rollout."""
    envs = moc_envs.make_vec(
        "MOC/Pong-v0", num_envs, detector=detector, workers=workers, autoreset_mode=mode,
        max_num_frames_per_episode=120,  # episodes of 30 steps: autoresets inside the rollout
    )  # fmt: skip
    try:
        obs, infos = envs.reset(seed=7)
        rng = np.random.default_rng(3)
        out = {"obs": [obs], "reward": [], "done": [], "labels": [], "objects": []}
        for _ in range(steps):
            obs, r, term, trunc, infos = envs.step(rng.integers(0, 6, envs.num_envs))
            out["obs"].append(obs)
            out["reward"].append(r)
            out["done"].append(term | trunc)
            out["labels"].append({k: v.copy() for k, v in infos["labels"].items() if not k.startswith("_")})
            out["objects"].append([[(d.category, d.x, d.y, d.slot) for d in objs] for objs in infos["objects"]])
        out["final"] = [sorted(info) for info in envs.env_infos]
        return out
    finally:
        envs.close()


@pytest.mark.parametrize("mode", ["SameStep", "NextStep"])
def test_worker_processes_give_the_same_rollout(mode: str) -> None:
    one = _rollout(1, mode)
    two = _rollout(2, mode)
    assert any(d.any() for d in one["done"])  # the rollout crosses episode ends
    for key in ("obs", "reward", "done"):
        np.testing.assert_array_equal(np.stack(one[key]), np.stack(two[key]))
    assert one["objects"] == two["objects"] and one["final"] == two["final"]
    for a, b in zip(one["labels"], two["labels"], strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_workers_split_the_envs_and_route_per_env_calls() -> None:
    from moc_envs.envs.parallel import MocParallelVectorEnv, split_rows
    from moc_envs.envs.sb3 import SB3VecEnv

    assert [list(r) for r in split_rows(5, 2)] == [[0, 1, 2], [3, 4]]
    assert [len(r) for r in split_rows(8, 3)] == [3, 3, 2]
    envs = gym.make_vec("MOC/Pong-v0", num_envs=4, detector="ram", workers=2, autoreset_mode="SameStep", frameskip=3)
    try:
        assert isinstance(envs, MocParallelVectorEnv) and envs.workers == 2
        venv = SB3VecEnv(envs)
        obs = venv.reset()
        assert obs.shape == (4, moc_envs.get_game("Pong").n_slots, 7)
        # Rows 2 and 3 live in the worker process.
        assert [spec.kwargs["frameskip"] for spec in venv.get_attr("spec")] == [3, 3, 3, 3]
        venv.set_attr("tag", "b", indices=[1, 3])
        venv.set_attr("tag", "a", indices=[0, 2])
        assert venv.get_attr("tag") == ["a", "b", "a", "b"]
        assert venv.env_method("get_wrapper_attr", "_frameskip", indices=[0, 3]) == [3, 3]
        from moc_envs.errors import WorkerError

        with pytest.raises(WorkerError, match=r"worker process 1 \(envs 2..3\) failed with AttributeError: .*no_such_method"):
            venv.env_method("no_such_method", indices=[3])
        assert venv.env_is_wrapped(gym.Wrapper) == [True] * 4
        venv.step_async(np.zeros(4, dtype=np.int64))
        venv.step_wait()
        assert envs.detect_calls >= 4  # a reset and a step in each of the two processes
    finally:
        envs.close()


def test_workers_are_checked_before_anything_starts() -> None:
    with pytest.raises(ValueError, match=r"workers must be in \[1, num_envs=2\]"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=3)
    with pytest.raises(TypeError, match="workers must be a positive int or None, got str"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers="2")
    with pytest.raises(TypeError, match="workers > 1 needs detector='space' or 'ram'"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector=CountingThreads(), workers=2)
    with pytest.raises(TypeError, match="Unknown keyword 'worker'.*Did you mean 'workers'"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", worker=2)


def test_a_dead_worker_is_a_clear_error() -> None:
    from moc_envs.errors import WorkerError

    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2)
    try:
        envs.reset(seed=0)
        envs._workers[0].process.kill()
        envs._workers[0].process.wait()
        with pytest.raises(WorkerError, match=r"worker process 1 \(envs 1..1\) exited unexpectedly"):
            envs.step(np.zeros(2, dtype=np.int64))
    finally:
        envs.close()
