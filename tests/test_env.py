"""MOC/<Game>-v0 envs and ObjectCentricWrapper: spaces, info payloads, rendering, options."""

from __future__ import annotations

import warnings

import ale_py
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import moc_envs.envs.render
from moc_envs import GAMES, Detection, ObjectCentricWrapper, RamDetector


@pytest.fixture
def pretend_display(monkeypatch):
    """Let render_mode="human" through on this headless machine (pygame draws to SDL's dummy driver)."""
    monkeypatch.setattr(moc_envs.envs.render, "display_problem", lambda *args, **kwargs: None)


def _check(env: gym.Env) -> None:
    with warnings.catch_warnings():
        # check_env suggests env.unwrapped, which is the bare ALE env here, not ours.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
        check_env(env, skip_render_check=False)


def test_check_env_pong_ram(make_moc, pretend_display) -> None:
    _check(make_moc("Pong", render_mode="rgb_array"))


@pytest.mark.parametrize("game", sorted(set(GAMES) - {"Pong"}))
def test_every_registered_id_passes_check_env(make_moc, pretend_display, game: str) -> None:
    env = make_moc(game, obs_mode="objects+frame")
    _check(env)
    # Taller screens (Carnival) are cropped to the 210 rows detectors take.
    assert env.unwrapped.ale.getScreenDims()[0] == GAMES[game].screen_height


def test_module_prefixed_id_works() -> None:
    env = gym.make("moc_envs:MOC/Pong-v0", detector="ram")
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (3, 7)
    finally:
        env.close()


def test_observation_and_info(make_moc) -> None:
    env = make_moc("Pong", ram_labels=True)
    obs, info = env.reset(seed=3)
    assert set(info) >= {"objects", "labels", "ram_labels"}
    env.action_space.seed(3)
    saw_ball = False
    for _ in range(200):
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        present = {d.slot for d in info["objects"] if d.slot >= 0}
        assert set(np.flatnonzero(obs[:, 0])) == present
        assert (obs[obs[:, 0] == 0] == 0).all()  # empty slots are all zeros
        for d in info["objects"]:
            assert d.category in ("Player", "Enemy", "Ball") and d.score == 1.0
            row = obs[d.slot]
            assert row[1] == pytest.approx(d.x / 160) and row[2] == pytest.approx(d.y / 210)
        ball = [d for d in info["objects"] if d.category == "Ball"]
        saw_ball |= bool(ball)
        assert ("ball_x" in info["labels"]) == bool(ball)
        assert set(info["ram_labels"]) == set(GAMES["Pong"].ram_label_names)
        if term or trunc:
            break
    assert saw_ball


def test_objects_plus_frame_mode(make_moc) -> None:
    env = make_moc("Breakout", obs_mode="objects+frame")
    assert isinstance(env.observation_space, gym.spaces.Dict)
    obs, _ = env.reset(seed=0)
    assert obs["frame"].shape == (210, 160, 3) and obs["frame"].dtype == np.uint8
    assert obs["objects"].shape == (GAMES["Breakout"].n_slots, 7)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["frame"], env.unwrapped.ale.getScreenRGB())


def test_velocity_follows_motion(make_moc) -> None:
    env = make_moc("Boxing")
    env.reset(seed=0)
    env.action_space.seed(0)
    prev = None
    for _ in range(30):
        obs, *_ = env.step(env.action_space.sample())
        if prev is not None and obs[0, 0] and prev[0, 0]:
            centre = obs[0, 1:3] + obs[0, 3:5] / 2
            prev_centre = prev[0, 1:3] + prev[0, 3:5] / 2
            np.testing.assert_allclose(obs[0, 5:7], centre - prev_centre, atol=1e-5)
        prev = obs


def test_ale_arguments_pass_through(make_moc) -> None:
    env = make_moc("Pong", frameskip=1, repeat_action_probability=0.0)
    assert env.unwrapped._frameskip == 1
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0


def test_render_rgb_array_and_human(make_moc, monkeypatch) -> None:
    env = make_moc("Pong", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (630, 480, 3) and img.dtype == np.uint8
    # The boxes are drawn: the annotated image differs from the enlarged raw frame.
    raw = np.repeat(np.repeat(env.unwrapped.ale.getScreenRGB(), 3, 0), 3, 1)
    assert (img != raw).any()
    # SDL's dummy driver (conftest) shows nothing: human mode says so when it opens its window
    # (the first reset), instead of running blind; building the env stays possible (check_env).
    blind = make_moc("Pong", render_mode="human")
    with pytest.warns(UserWarning, match="SDL_VIDEODRIVER=dummy draws no window.*'rgb_array'"):
        blind.reset(seed=0)
    monkeypatch.setattr(moc_envs.envs.render, "display_problem", lambda *args, **kwargs: None)
    human = make_moc("Pong", render_mode="human")
    human.reset(seed=0)
    human.step(0)
    assert human.render() is None


def test_wrapper_on_plain_ale_env_infers_game() -> None:
    gym.register_envs(ale_py)
    env = ObjectCentricWrapper(gym.make("ALE/MsPacman-v5"), detector="ram")
    try:
        assert env.game.name == "MsPacman"
        obs, info = env.reset(seed=0)
        assert obs.shape == (GAMES["MsPacman"].n_slots, 7)
        assert any(d.category == "Player" for d in info["objects"])
    finally:
        env.close()


class _Scripted:
    """A detector object (protocol, not a subclass) that also reports an unknown category."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        self.calls.append((len(frames), rams is not None))
        return [
            [Detection("Ball", 80, 100, 2, 4, score=0.9), Detection("unknown", 5, 5, 8, 8, 0.4)]
            for _ in frames
        ]


def test_custom_detector_and_unknown_categories(make_moc) -> None:
    detector = _Scripted()
    env = make_moc("Pong", detector=detector)
    obs, info = env.reset(seed=0)
    assert detector.calls == [(1, True)]
    slots = {d.category: d.slot for d in info["objects"]}
    assert slots["unknown"] == -1 and slots["Ball"] == GAMES["Pong"].slot_ranges["Ball"][0]
    assert obs[:, 0].sum() == 1
    assert info["labels"] == {"ball_x": 129, "ball_y": 114}


def test_ram_detector_keeps_state_per_batch_row(blank_frames) -> None:
    det = RamDetector("Pong")
    rams = np.zeros((2, 128), dtype=np.uint8)
    rams[0, 51], rams[1, 51] = 60, 150
    out = det.detect(blank_frames(2), rams)
    assert [d.y for d in out[0]] == [47.0] and [d.y for d in out[1]] == [137.0]
    det.reset(1)
    det.reset()
