"""Flicker games: the env and the dataset see the maximum of the last two emulator frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import moc_envs
from moc_envs.envs.registration import make_ale_env
from moc_envs.games import GAMES, get_game
from moc_envs.perception.frames import MaxOfLastTwoFrames, frame_source


def test_flicker_games_are_the_measured_ones() -> None:
    # benchmarks/results/flicker.md: the max of two frames shows more true objects only there.
    assert sorted(name for name, g in GAMES.items() if g.flicker) == ["MsPacman", "SpaceInvaders"]


def test_pooled_env_steps_as_ale_v5_and_pools_the_last_two_frames() -> None:
    spec = get_game("MsPacman")
    pooled = make_ale_env(spec)
    plain = gym.make("ALE/MsPacman-v5", disable_env_checker=True)  # frameskip 4, sticky 0.25
    single = gym.make("ALE/MsPacman-v5", frameskip=1, disable_env_checker=True)
    try:
        assert isinstance(pooled, MaxOfLastTwoFrames) and pooled.frameskip == 4
        frame_of = frame_source(pooled)
        for env in (pooled, plain, single):
            env.reset(seed=5)
        rng = np.random.default_rng(0)
        differ = 0
        for _ in range(60):
            a = int(rng.integers(pooled.action_space.n))
            obs, r, term, trunc, _ = pooled.step(a)
            obs_v5, r_v5, term_v5, trunc_v5, _ = plain.step(a)
            screens, r_single = [], 0.0
            for _ in range(4):
                o, rs, *_ = single.step(a)
                screens.append(o)
                r_single += float(rs)
            # Same emulation as ALE v5's frameskip 4 (sticky actions included)...
            np.testing.assert_array_equal(pooled.unwrapped.ale.getScreenRGB(), obs_v5)
            assert (r, term, trunc) == (r_v5, term_v5, trunc_v5) == (r_single, term, trunc)
            # ... and the frame is the max of the last two emulator frames.
            expected = np.maximum(screens[-2], screens[-1])
            np.testing.assert_array_equal(obs, expected)
            np.testing.assert_array_equal(frame_of(), expected[:210])
            differ += int(not np.array_equal(expected, screens[-1]))
            if term or trunc:
                break
        assert differ > 0  # MsPacman does flicker
    finally:
        for env in (pooled, plain, single):
            env.close()


def test_other_games_keep_the_plain_v5_env() -> None:
    env = make_ale_env(get_game("Pong"))
    try:
        assert not isinstance(env, MaxOfLastTwoFrames)
        env.reset(seed=0)
        np.testing.assert_array_equal(frame_source(env)(), env.unwrapped.ale.getScreenRGB()[:210])
    finally:
        env.close()


def test_flicker_env_keeps_its_keywords_and_spaces() -> None:
    env = gym.make("MOC/MsPacman-v0", detector="ram", frameskip=2, obs_mode="objects+frame")
    try:
        obs, _ = env.reset(seed=1)
        inner = env.unwrapped  # the ALE env under MaxOfLastTwoFrames runs one frame per call
        assert inner._frameskip == 1
        layer = env
        while not isinstance(layer, MaxOfLastTwoFrames):
            layer = layer.env
        assert layer.frameskip == 2
        obs, *_ = env.step(0)
        assert obs["frame"].shape == (210, 160, 3)
        np.testing.assert_array_equal(obs["frame"], layer.frame())
    finally:
        env.close()
    with pytest.raises(ValueError, match="frameskip must be a positive int"):
        make_ale_env(get_game("MsPacman"), frameskip=0)


def test_vector_env_detects_pooled_frames() -> None:
    envs = moc_envs.make_vec("MOC/SpaceInvaders-v0", 2, detector="ram", obs_mode="objects+frame")
    try:
        envs.reset(seed=2)
        obs, *_ = envs.step(np.zeros(2, dtype=np.int64))
        for i in range(2):
            np.testing.assert_array_equal(obs["frame"][i], frame_source(envs.envs[i])())
    finally:
        envs.close()


def test_visibility_needs_a_pixel_unlike_the_surroundings() -> None:
    from benchmarks.flicker import visible

    frame = np.zeros((210, 160, 3), dtype=np.uint8)
    frame[:, :, 2] = 90  # blue background
    frame[50:54, 30:32] = (200, 200, 0)  # a 2x4 sprite
    assert visible(frame, (30, 50, 2, 4)) is True
    assert visible(frame, (100, 100, 4, 4)) is False  # background only
    assert visible(frame, (170, 100, 4, 4)) is None  # outside the frame
    pooled = np.maximum(frame, np.zeros_like(frame))
    assert visible(pooled, (29, 49, 4, 6)) is True


def test_pooled_frame_is_the_maximum_of_the_last_two_emulator_screens() -> None:
    """Against a twin ALE env stepped one emulator frame at a time by hand, screens read after each."""
    game = get_game("SpaceInvaders")
    pooled_env = make_ale_env(game, repeat_action_probability=0.0)
    twin = gym.make(game.ale_id, frameskip=1, repeat_action_probability=0.0)
    try:
        layer = pooled_env
        while not isinstance(layer, MaxOfLastTwoFrames):
            layer = layer.env
        pooled_env.reset(seed=4)
        twin.reset(seed=4)
        rng = np.random.default_rng(0)
        for _ in range(40):
            action = int(rng.integers(pooled_env.action_space.n))
            pooled_env.step(action)
            screens = []
            for _ in range(layer.frameskip):
                twin.step(action)
                screens.append(twin.unwrapped.ale.getScreenRGB())
            np.testing.assert_array_equal(layer.frame(), np.maximum(screens[-2], screens[-1])[:210])
    finally:
        pooled_env.close()
        twin.close()
