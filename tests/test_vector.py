"""moc_envs.make_vec: batched detection, equality with single envs, autoreset, SB3."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import moc_envs
from moc_envs.envs.make import make_vec
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.perception.detection import Detection
from moc_envs.perception.ram_detector import RamDetector


class CountingDetector:
    """RamDetector that records the batch size of every detect call."""

    def __init__(self, game: str = "Pong") -> None:
        self.inner = RamDetector(game)
        self.batches: list[int] = []

    def reset(self, index: int | None = None) -> None:
        self.inner.reset(index)

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        self.batches.append(len(frames))
        return self.inner.detect(frames, rams)


class StatelessCounting:
    """Counting detector without per-row state (no reset method), like the learned one."""

    def __init__(self, game: str = "Pong") -> None:
        self.inner = RamDetector(game)
        self.batches: list[int] = []

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        self.batches.append(len(frames))
        # A fresh oracle per call: Pong's RAM extraction keeps no state that matters.
        return RamDetector(self.inner.spec).detect(frames, rams)


def test_make_vec_is_a_gymnasium_vector_env_with_batched_spaces() -> None:
    envs = make_vec("MOC/Pong-v0", num_envs=3, detector="ram")
    try:
        assert isinstance(envs, gym.vector.VectorEnv)
        assert envs.num_envs == 3
        assert envs.observation_space.shape == (3, 3, 7)
        assert envs.single_observation_space == gym.make("MOC/Pong-v0", detector="ram").observation_space
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        obs, infos = envs.reset(seed=0)
        assert envs.observation_space.contains(obs)
        assert infos["objects"].shape == (3,) and all(isinstance(o, list) for o in infos["objects"])
    finally:
        envs.close()
    assert moc_envs.make_vec is make_vec


def test_one_detect_call_per_step_for_all_frames() -> None:
    det = CountingDetector()
    envs = make_vec("MOC/Pong-v0", num_envs=4, detector=det)
    try:
        envs.reset(seed=1)
        assert det.batches == [4]
        for _ in range(25):
            envs.step(envs.action_space.sample())
        assert det.batches == [4] * 26
        assert envs.detect_calls == 26
    finally:
        envs.close()


def test_observations_and_labels_equal_those_of_single_envs() -> None:
    n, seed, steps = 3, 7, 60
    envs = make_vec("MOC/Pong-v0", num_envs=n, detector="ram", ram_labels=True)
    singles = [gym.make("MOC/Pong-v0", detector="ram", ram_labels=True) for _ in range(n)]
    try:
        obs, infos = envs.reset(seed=seed)
        for i, env in enumerate(singles):
            o, info = env.reset(seed=seed + i)
            np.testing.assert_array_equal(obs[i], o)
            assert infos["objects"][i] == info["objects"]
        rng = np.random.default_rng(0)
        for _ in range(steps):
            actions = rng.integers(0, envs.single_action_space.n, size=n)
            obs, rew, term, trunc, infos = envs.step(actions)
            for i, env in enumerate(singles):
                o, r, te, tr, info = env.step(int(actions[i]))
                np.testing.assert_array_equal(obs[i], o)
                assert rew[i] == r and term[i] == te and trunc[i] == tr
                assert infos["objects"][i] == info["objects"]
                for name, value in info["ram_labels"].items():
                    assert infos["ram_labels"][name][i] == value
                for name, value in info["labels"].items():
                    assert infos["labels"][f"_{name}"][i]
                    assert infos["labels"][name][i] == value
    finally:
        envs.close()
        for env in singles:
            env.close()


def _run_until_done(envs: MocVectorEnv, limit: int = 200) -> tuple[int, tuple]:
    for t in range(limit):
        out = envs.step(np.zeros(envs.num_envs, dtype=np.int64))
        if (out[2] | out[3]).any():
            return t, out
    raise AssertionError("no episode ended")


def test_next_step_autoreset_resets_on_the_following_step() -> None:
    # 100 emulator frames per episode = 25 agent steps: truncation comes quickly.
    det = CountingDetector()
    envs = make_vec("MOC/Pong-v0", 2, detector=det, max_num_frames_per_episode=100)
    single = gym.make("MOC/Pong-v0", detector="ram", max_num_frames_per_episode=100)
    try:
        envs.reset(seed=3)
        single.reset(seed=3)
        _, (obs, rew, term, trunc, infos) = _run_until_done(envs)
        assert trunc.all() and not term.any()
        assert "final_obs" not in infos
        calls = len(det.batches)
        obs, rew, term, trunc, infos = envs.step(np.array([3, 3]))
        assert len(det.batches) == calls + 1  # the reset frames share one call
        assert not (term | trunc).any() and (rew == 0).all()
        assert (infos["episode_frame_number"] == 0).all()
        # The reset frame's observation: a fresh tracker, so no motion yet.
        assert (obs[..., 5:] == 0).all()
    finally:
        envs.close()
        single.close()


def test_same_step_autoreset_returns_the_new_episode_and_final_obs() -> None:
    det = CountingDetector()
    envs = make_vec(
        "MOC/Pong-v0", 2, detector=det, autoreset_mode="SameStep", max_num_frames_per_episode=100
    )
    try:
        envs.reset(seed=4)
        before = len(det.batches)
        t, (obs, rew, term, trunc, infos) = _run_until_done(envs)
        assert trunc.all()
        # t+1 steps with one call each, plus one call for the reset frames.
        assert len(det.batches) == before + t + 2
        assert infos["_final_obs"].all()
        assert infos["final_obs"][0].shape == (3, 7)
        assert (infos["episode_frame_number"] == 0).all()
        assert infos["final_info"]["episode_frame_number"][0] == 100
        assert not np.array_equal(infos["final_obs"][0], obs[0])
    finally:
        envs.close()


def test_stateless_detector_gets_only_the_reset_rows() -> None:
    det = StatelessCounting()
    envs = make_vec(
        "MOC/Pong-v0", 3, detector=det, autoreset_mode="SameStep", max_num_frames_per_episode=100,
    )  # fmt: skip
    try:
        envs.reset(seed=0, options={"reset_mask": np.array([True, True, True])})
        _run_until_done(envs)
        assert det.batches[-1] == 3 and det.batches[-2] == 3  # all three ended together
        # A partial reset detects only the rows asked for.
        envs.reset(options={"reset_mask": np.array([False, True, False])})
        assert det.batches[-1] == 1
    finally:
        envs.close()


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        make_vec("MOC/Pong-v0", 0, detector="ram")
    with pytest.raises(ValueError, match="Unknown autoreset_mode 'Sometimes'"):
        make_vec("MOC/Pong-v0", 1, detector="ram", autoreset_mode="Sometimes")
    with pytest.raises(moc_envs.UnknownGameError, match="Did you mean 'Pong'"):
        make_vec("MOC/Pongg-v0", 1, detector="ram")
    envs = make_vec("MOC/Pong-v0", 2, detector="ram")
    try:
        envs.reset(seed=0)
        with pytest.raises(ValueError, match=r"one action per env, shape \(2,\)"):
            envs.step(np.zeros(3, dtype=np.int64))
        with pytest.raises(ValueError, match="got 1 seeds for 2 envs"):
            envs.reset(seed=[1])
    finally:
        envs.close()


def test_missing_weights_fail_before_starting_emulators(monkeypatch, tmp_path) -> None:
    # $MOC_ENVS_WEIGHTS is searched in front of the bundled weights: hide those too.
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(moc_envs.weights.search, "weights_root", lambda: tmp_path)
    with pytest.raises(moc_envs.MissingWeightsError, match="No trained SPACE\\+MOC detector for Pong"):
        make_vec("MOC/Pong-v0", 2)


def test_sb3_ppo_trains_on_the_vector_env() -> None:
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO

    from moc_envs.envs.sb3 import SB3VecEnv

    torch.set_num_threads(1)
    det = CountingDetector()
    venv = SB3VecEnv(
        make_vec(
            "MOC/Pong-v0", 4, detector=det, autoreset_mode="SameStep", max_num_frames_per_episode=200
        )
    )
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=512)
    assert model.num_timesteps >= 512
    assert all(b == 4 for b in det.batches)
    # 200 frames = 50 steps per episode: the 50th step hands SB3 the new episode.
    venv.reset()
    for _ in range(49):
        _, _, dones, infos = venv.step(np.zeros(4, dtype=np.int64))
        assert not dones.any()
    obs, _, dones, infos = venv.step(np.zeros(4, dtype=np.int64))
    assert dones.all()
    assert all(info["TimeLimit.truncated"] for info in infos)
    assert all(info["terminal_observation"].shape == (3, 7) for info in infos)
    assert (obs[..., 5:] == 0).all()  # first frame of the new episode: no motion yet
    with pytest.raises(ValueError, match="needs autoreset_mode='SameStep'"):
        SB3VecEnv(make_vec("MOC/Pong-v0", 1, detector="ram"))
    venv.close()
