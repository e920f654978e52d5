"""Clients nobody here wrote (issue 26): Gymnasium's checker headless, CleanRL-style flat ids,
SB3's episode statistics, ``gym.make_vec(max_episode_steps=)``, and the argument checks and
use-after-close errors those clients run into."""

from __future__ import annotations

import math
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import moc_envs.envs.registration
import moc_envs.envs.vector
import moc_envs.envs.wrapper
from moc_envs import GAMES, RamDetector, env_id, make_vec
from moc_envs.cli import main
from moc_envs.envs.registration import game_of_id, is_flat_id
from moc_envs.errors import ClosedEnvError


@pytest.fixture
def headless(monkeypatch):
    """A machine with no display at all: no DISPLAY, no WAYLAND_DISPLAY, no SDL_VIDEODRIVER."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if an emulator starts or a detector loads: checks must come first."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an emulator or detector was built before the arguments were checked")

    import moc_envs.envs.emulators

    # The vector envs build their emulators in moc_envs.envs.emulators.
    for module in (moc_envs.envs.registration, moc_envs.envs.emulators):
        monkeypatch.setattr(module, "make_ale_env", boom)
    for module in (moc_envs.envs.wrapper, moc_envs.envs.vector):
        monkeypatch.setattr(module, "make_detector", boom)


# ------------------------------------------------------------------ Gymnasium's checker, headless
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY decides only on Linux")
def test_check_env_with_defaults_passes_headless(headless) -> None:
    pytest.importorskip("torch")
    env = gym.make("MOC/Pong-v0")  # the learned detector, every default
    try:
        # Re-makes the env in each declared render mode, "human" included, and resets it.
        check_env(env)
        check_env(env.unwrapped)
    finally:
        env.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY decides only on Linux")
def test_human_window_that_cannot_open_is_a_clear_error_at_reset(headless, monkeypatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")  # a real window, and no X server to draw it
    env = gym.make("MOC/Pong-v0", detector="ram", render_mode="human")  # building it is fine
    try:
        pattern = (
            r"render_mode='human' cannot open a window: SDL says .*\(there is no display "
            r"\(neither DISPLAY nor WAYLAND_DISPLAY is set\)\)\. On a headless machine use "
            r"render_mode='rgb_array'"
        )
        with pytest.raises(ValueError, match=pattern):
            env.reset(seed=0)
        with pytest.raises(ValueError, match=pattern):
            env.render()
    finally:
        env.close()


def test_headless_human_window_warns_and_runs(headless) -> None:
    env = gym.make("MOC/Pong-v0", detector="ram", render_mode="human")
    try:
        if sys.platform.startswith("linux"):
            with pytest.warns(UserWarning, match=r"render_mode='human' shows nothing here: there is no display"):
                env.reset(seed=0)
        else:  # pragma: no cover - a display exists
            env.reset(seed=0)
        env.step(0)
        assert env.render() is None
    finally:
        env.close()


# ------------------------------------------------------------------ flat ids (CleanRL's ppo.py)
@pytest.mark.parametrize("game", sorted(GAMES))
def test_every_game_has_a_flat_id(game: str) -> None:
    flat = env_id(game, flat=True)
    assert flat == f"MOC/{game}-flat-v0"
    spec = gym.spec(flat)
    assert spec.kwargs["obs_mode"] == "flat" and spec.kwargs["game"] == game
    assert is_flat_id(flat) and not is_flat_id(env_id(game))
    assert game_of_id(flat).name == game and game_of_id(f"moc_envs:{flat}").name == game


def test_flat_id_is_the_objects_id_flattened(make_moc) -> None:
    env = gym.make("MOC/Pong-flat-v0", detector="ram")
    objects = make_moc("Pong")
    try:
        n = GAMES["Pong"].n_slots
        assert env.observation_space.shape == (n * 7,)
        flat, _ = env.reset(seed=5)
        rows, _ = objects.reset(seed=5)
        np.testing.assert_array_equal(flat, rows.ravel())
        for action in (2, 3, 2):
            np.testing.assert_array_equal(env.step(action)[0], objects.step(action)[0].ravel())
    finally:
        env.close()
    envs = make_vec("MOC/Pong-flat-v0", 2, detector="ram")
    try:
        assert envs.single_observation_space.shape == (n * 7,)
        assert envs.reset(seed=0)[0].shape == (2, n * 7)
    finally:
        envs.close()
    vec = gym.make_vec("MOC/Pong-flat-v0", 2, detector="ram")
    try:
        assert vec.single_observation_space.shape == (n * 7,)
    finally:
        vec.close()


def test_cleanrl_style_loop_on_a_flat_id() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    # What CleanRL's ppo.py does with --env-id: gym.make without keywords (the learned
    # detector), RecordEpisodeStatistics, SyncVectorEnv, a first layer sized by prod(shape).
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("MOC/Pong-flat-v0"))]
    )
    try:
        assert isinstance(envs.single_action_space, gym.spaces.Discrete)
        in_features = int(np.array(envs.single_observation_space.shape).prod())
        net = torch.nn.Linear(in_features, int(envs.single_action_space.n))
        obs, _ = envs.reset(seed=1)
        for _ in range(4):
            logits = net(torch.Tensor(obs))
            action = torch.distributions.Categorical(logits=logits).sample()
            obs, reward, term, trunc, _ = envs.step(action.cpu().numpy())
            assert obs.shape == (1, in_features) and obs.dtype == np.float32
            assert reward.shape == term.shape == trunc.shape == (1,)
    finally:
        envs.close()


# ------------------------------------------------------------------ SB3 episode statistics
def _sb3_venv(steps: int) -> Any:
    from moc_envs.envs.sb3 import SB3VecEnv

    return SB3VecEnv(
        make_vec("MOC/Pong-flat-v0", 2, detector="ram", autoreset_mode="SameStep",
                 max_episode_steps=steps)
    )  # fmt: skip


def test_sb3_vec_env_reports_episode_statistics() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import VecMonitor

    venv = _sb3_venv(6)
    try:
        venv.seed(0)
        venv.reset()
        total = np.zeros(2)
        for t in range(6):
            venv.step_async(np.array([t % 6, 0]))
            _, rewards, dones, infos = venv.step_wait()
            total += rewards
            if t < 5:
                assert not dones.any() and not any("episode" in i for i in infos)
        assert dones.all()
        for i, info in enumerate(infos):
            assert info["episode"]["l"] == 6 and math.isclose(info["episode"]["r"], total[i])
            assert info["episode"]["t"] >= 0 and "terminal_observation" in info
        # VecMonitor on top replaces the entry with its own: one episode per end, not two.
        monitored = VecMonitor(venv)
        monitored.reset()
        for _ in range(6):
            _, _, dones, infos = monitored.step(np.zeros(2, dtype=np.int64))
        assert dones.all() and [i["episode"]["l"] for i in infos] == [6, 6]
    finally:
        venv.close()


def test_sb3_ppo_logs_episode_rewards_without_a_monitor() -> None:
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    venv = _sb3_venv(8)
    try:
        model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
        model.learn(total_timesteps=32)
        # What SB3 averages into rollout/ep_rew_mean and ep_len_mean.
        assert model.ep_info_buffer and {e["l"] for e in model.ep_info_buffer} == {8}
    finally:
        venv.close()


# ------------------------------------------------------------------ make_vec(max_episode_steps=)
def test_make_vec_takes_max_episode_steps_as_gym_make_does() -> None:
    single = gym.make("MOC/Pong-v0", detector="ram", max_episode_steps=4)
    envs = gym.make_vec("MOC/Pong-v0", 2, detector="ram", max_episode_steps=4)
    try:
        single.reset(seed=0)
        assert [single.step(0)[3] for _ in range(4)] == [False, False, False, True]
        envs.reset(seed=0)
        flags = []
        for _ in range(9):
            _, _, term, trunc, _ = envs.step([0, 0])
            assert trunc[0] == trunc[1] and not term.any()
            flags.append(bool(trunc[0]))
        # As the single env: truncated after 4 steps; then NEXT_STEP's reset step, 4 more steps.
        assert flags == [False, False, False, True, False, False, False, False, True]
    finally:
        single.close()
        envs.close()


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        (0, ValueError, r"max_episode_steps must be None or an int >= 1, got 0"),
        (2.5, TypeError, r"max_episode_steps must be None or an int >= 1, got float 2\.5"),
        ("30", TypeError, r"got str '30'"),
    ],
)
def test_bad_max_episode_steps_is_refused_up_front(nothing_built, value, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        make_vec("MOC/Pong-v0", 2, max_episode_steps=value)
    with pytest.raises(error, match=pattern):
        gym.make_vec("MOC/Pong-v0", 2, detector="ram", max_episode_steps=value)


# ------------------------------------------------------------------ tracker arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"max_distance": "40"}, TypeError, r"max_distance must be a number of pixels > 0, got str '40'"),
        ({"max_distance": float("nan")}, ValueError, r"max_distance must be a finite number .* got nan"),
        ({"max_distance": float("inf")}, ValueError, r"finite number of pixels > 0, got inf"),
        ({"max_distance": 0}, ValueError, r"finite number of pixels > 0, got 0"),
        ({"max_distance": True}, TypeError, r"got bool True"),
        ({"max_age": "30"}, TypeError, r"max_age must be an int number of steps >= 0, got str '30'"),
        ({"max_age": 2.5}, TypeError, r"max_age must be an int number of steps >= 0, got float 2\.5"),
        ({"max_age": -1}, ValueError, r"max_age must be an int number of steps >= 0, got -1"),
    ],
)
def test_bad_tracker_arguments_fail_before_the_detector_loads(
    nothing_built, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        gym.make("MOC/Pong-v0", **kwargs)  # the learned detector: it must not load
    with pytest.raises(error, match=pattern):
        make_vec("MOC/Pong-v0", 2, **kwargs)


def test_numpy_tracker_arguments_are_accepted(make_moc) -> None:
    env = make_moc("Pong", max_distance=np.float32(12.5), max_age=np.int64(3))
    env.reset(seed=0)
    wrapper = env
    while not isinstance(wrapper, moc_envs.envs.wrapper.ObjectCentricWrapper):
        wrapper = wrapper.env
    tracker = wrapper.builder.tracker
    assert tracker.max_distance == 12.5 and tracker.max_age == 3


# ------------------------------------------------------------------ reset arguments
def test_single_env_reset_checks_seed_and_options(make_moc) -> None:
    env = make_moc("Pong")
    # (A first good reset: Gymnasium's PassiveEnvChecker loses track if its first reset raises.)
    env.reset(seed=0)
    with pytest.raises(TypeError, match=r"options must be a dict or None, got str 'junk'"):
        env.reset(options="junk")
    with pytest.raises(TypeError, match=r"seed must be None or a non-negative int, got float 2\.0"):
        env.reset(seed=2.0)
    with pytest.raises(TypeError, match=r"got bool True"):
        env.reset(seed=True)
    with pytest.raises(ValueError, match=r"seed must be None or a non-negative int, got -1"):
        env.reset(seed=-1)
    # A numpy integer seed works as in the vector env, and is the same seed as the int.
    obs_np, _ = env.reset(seed=np.int64(7))
    after_np = env.step(2)[0]
    obs_int, _ = env.reset(seed=7)
    np.testing.assert_array_equal(obs_np, obs_int)
    np.testing.assert_array_equal(after_np, env.step(2)[0])
    envs = make_vec("MOC/Pong-v0", 2, detector="ram")
    try:
        envs.reset(seed=np.int64(7))
    finally:
        envs.close()


# ------------------------------------------------------------------ use after close
def test_closed_env_refuses_every_use_and_frees_its_detector() -> None:
    det = RamDetector("Pong")  # stateful: one open env at a time
    env = gym.make("MOC/Pong-v0", detector=det, render_mode="rgb_array")
    env.reset(seed=0)
    env.close()
    env.close()  # closing twice is allowed (Gymnasium's checker does it)
    other = gym.make("MOC/Pong-v0", detector=det)  # the claim was released
    try:
        other.reset(seed=0)
        for call in (lambda: env.step(0), lambda: env.reset(seed=0), env.render):
            with pytest.raises(ClosedEnvError, match=r"on a closed Pong env: close\(\) ended it"):
                call()
        other.step(0)
    finally:
        other.close()


# ------------------------------------------------------------------ moc-envs demo --steps
@pytest.mark.parametrize("steps", ["0", "-3", "many"])
def test_demo_steps_error_comes_from_the_demo_parser(capsys, steps: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--steps", steps])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: moc-envs demo ")
    assert "moc-envs demo: error: argument --steps:" in err
