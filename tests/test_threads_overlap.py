"""The `threads` keyword, gymnasium.make_vec's batched vector env, and overlapped stepping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import moc_envs
from moc_envs.detection import Detection
from moc_envs.threads import check_threads, torch_threads
from moc_envs.vector import MocVectorEnv


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


def _rollout(overlap: bool, detector: object, steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    envs = moc_envs.make_vec(
        "MOC/Pong-v0", 5, detector=detector, overlap=overlap, autoreset_mode="SameStep"
    )
    try:
        assert envs.overlap is overlap
        obs, _ = envs.reset(seed=7)
        rng = np.random.default_rng(3)
        all_obs, rewards = [obs], []
        for _ in range(steps):
            obs, r, *_ = envs.step(rng.integers(0, 6, envs.num_envs))
            all_obs.append(obs)
            rewards.append(r)
        return np.stack(all_obs), np.stack(rewards)
    finally:
        envs.close()


def test_overlapped_stepping_gives_the_same_rollout() -> None:
    det = CountingThreads()
    with_overlap = _rollout(True, det)
    two_calls = len(det.seen)
    without = _rollout(False, CountingThreads())
    np.testing.assert_array_equal(with_overlap[0], without[0])
    np.testing.assert_array_equal(with_overlap[1], without[1])
    assert two_calls == 2 * (1 + 40) - 1  # reset: one call; each step: one per half


def test_overlap_refuses_a_stateful_detector() -> None:
    with pytest.raises(ValueError, match="overlap=True needs"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", overlap=True)
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram")
    try:
        assert envs.overlap is False  # the RAM oracle keeps per-env state
    finally:
        envs.close()
