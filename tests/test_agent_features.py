"""Relative agent features: the player found by its label link, objects seen from it, nearest first.

Observations here are built by hand (slot rows ``present, x, y, w, h, dx, dy`` in the env's
units) so that every expected entry can be worked out; one tiny training run checks that a
policy trained on them plays the env's own observations as SB3 does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moc_envs.agent_features import (
    FEATURE_SETS,
    apply_features,
    feature_count,
    feature_set_names,
    layout_for,
    relative_layout,
)
from moc_envs.games import get_game
from moc_envs.perception.observation import feature_names

SHIPPED = ("Pong", "Boxing", "Freeway", "Breakout", "SpaceInvaders", "Asterix", "Carnival", "MsPacman",
           "Seaquest", "Skiing", "Tennis")


def _row(x: float, y: float, w: float = 8, h: float = 8, present: bool = True) -> list[float]:
    """A slot row from frame pixels."""
    return [float(present), x / 160, y / 210, w / 160, h / 210, 0.01, -0.02] if present else [0.0] * 7


@pytest.mark.parametrize("game", SHIPPED)
def test_every_shipped_game_has_a_player_to_read_from(game: str) -> None:
    spec = get_game(game)
    layout = relative_layout(game)
    assert layout.n_slots == spec.n_slots and len(layout.candidates) >= 1
    names = feature_set_names(feature_names(spec), "relative", layout)
    assert len(names) == feature_count("relative", spec.n_slots) == (spec.n_slots + 1) * 7
    assert names[:2] == ["player.present", "player.x"]
    obs = np.zeros(spec.n_slots * 7, np.float32)
    assert apply_features(obs, "relative", layout).shape == (len(names),)


def test_freeway_player_is_the_left_chicken_whatever_its_slot() -> None:
    layout = relative_layout("Freeway")
    obs = np.zeros((12, 7))
    obs[0] = _row(104, 180)  # the second player's chicken, right of the player's lane (x < 76)
    obs[1] = _row(44, 100)
    obs[2] = _row(140, 30)  # far car
    obs[7] = _row(50, 90)  # near car
    out = apply_features(obs.ravel(), "relative", layout).reshape(13, 7)
    np.testing.assert_allclose(out[0], obs[1], atol=1e-6)  # the player, absolute
    # Chicken group: the other chicken first (seen from the player), the player's own slot absent.
    np.testing.assert_allclose(out[1, 1:3], [(104 - 44) / 160, (180 - 100) / 210], atol=1e-6)
    assert out[1, 0] == 1 and not out[2].any()
    # Car group: nearest first, then the far one, then eight absent rows of zeros.
    np.testing.assert_allclose(out[3, 1:3], [6 / 160, -10 / 210], atol=1e-6)
    np.testing.assert_allclose(out[4, 1:3], [96 / 160, -70 / 210], atol=1e-6)
    np.testing.assert_allclose(out[3, 3:7], obs[7, 3:7], atol=1e-6)  # size, velocity unchanged
    assert not out[5:].any()


def test_relative_features_do_not_depend_on_slot_order_within_a_category() -> None:
    layout = relative_layout("Freeway")
    rng = np.random.default_rng(0)
    obs = np.zeros((12, 7))
    obs[1] = _row(44, 120)
    for k in range(2, 12):
        obs[k] = _row(rng.uniform(0, 150), 20 + 16 * (k - 2), present=bool(rng.random() < 0.8))
    shuffled = obs.copy()
    shuffled[2:] = obs[2 + rng.permutation(10)]
    np.testing.assert_array_equal(
        apply_features(obs.ravel(), "relative", layout), apply_features(shuffled.ravel(), "relative", layout)
    )


def test_without_a_player_positions_stay_absolute_and_the_player_row_is_empty() -> None:
    layout = relative_layout("Pong")
    obs = np.array([_row(0, 0, present=False), _row(16, 80), _row(70, 100)], np.float64)
    out = apply_features(obs.ravel(), "relative", layout).reshape(4, 7)
    assert not out[0].any() and not out[1].any()
    np.testing.assert_allclose(out[2:], obs[1:], atol=1e-6)
    # With the player there: its own one-slot category reads as absent, the rest move with it.
    obs[0] = _row(140, 50)
    out = apply_features(obs.ravel(), "relative", layout).reshape(4, 7)
    np.testing.assert_allclose(out[0], obs[0], atol=1e-6)
    assert not out[1].any()
    np.testing.assert_allclose(out[3, 1:3], [-70 / 160, 50 / 210], atol=1e-6)


def test_batches_match_single_observations_and_bad_input_is_refused() -> None:
    layout = relative_layout("Tennis")
    rng = np.random.default_rng(1)
    batch = rng.uniform(0, 1, (5, 28)).astype(np.float32)
    batch[:, ::7] = rng.random((5, 4)) < 0.7
    out = apply_features(batch, "relative", layout)
    assert out.shape == (5, 35) and out.dtype == np.float32
    for i in range(5):
        np.testing.assert_array_equal(out[i], apply_features(batch[i], "relative", layout))
    np.testing.assert_array_equal(apply_features(batch, "slots", None), batch)
    with pytest.raises(ValueError, match="expected flat observations of 28 entries"):
        apply_features(batch[:, :21], "relative", layout)
    with pytest.raises(ValueError, match="features must be one of"):
        apply_features(batch, "polar", layout)
    assert FEATURE_SETS == ("slots", "relative", "relative_screen")


def test_screen_order_keeps_each_car_in_its_row_as_the_player_moves() -> None:
    layout = layout_for("relative_screen", "Freeway")
    assert layout is not None and layout_for("slots", "Freeway") is None
    with pytest.raises(ValueError, match="features must be one of"):
        layout_for("polar", "Freeway")
    obs = np.zeros((12, 7))
    lanes = [(30 + 13 * k, 20 + 16 * k) for k in range(10)]  # one car a lane, top to bottom
    for slot, k in zip(range(2, 12), [3, 0, 9, 5, 1, 7, 2, 8, 4, 6], strict=True):
        obs[slot] = _row(lanes[k][0], lanes[k][1])
    obs[6] = _row(0, 0, present=False)  # lane 1's car not found: rows below it move up
    rows = []
    for player_y in (180, 100, 30):
        obs[1] = _row(44, player_y)
        out = apply_features(obs.ravel(), "relative_screen", layout).reshape(13, 7)
        # Car rows in lane order (lane 1 missing), seen from the player, then one absent row.
        expect = [[(x - 44) / 160, (y - player_y) / 210] for x, y in lanes if (x, y) != lanes[1]]
        np.testing.assert_allclose(out[3:12, 1:3], expect, atol=1e-6)
        assert not out[12].any()
        rows.append(out[3:12, 1])
    # Horizontal offsets stay in their rows wherever the player is; nearest-first reorders them.
    np.testing.assert_array_equal(rows[0], rows[2])
    near = [apply_features(obs.ravel(), "relative", relative_layout("Freeway")).reshape(13, 7)[3:12, 1]]
    obs[1] = _row(44, 180)
    near.append(apply_features(obs.ravel(), "relative", relative_layout("Freeway")).reshape(13, 7)[3:12, 1])
    assert not np.array_equal(near[0], near[1])
    names = feature_set_names(feature_names(get_game("Freeway")), "relative_screen", layout)
    assert "Car.screen0.x" in names and len(names) == feature_count("relative_screen", 12) == 13 * 7


# ---------------------------------------------------------------------------- a policy trained on them
pytest.importorskip("stable_baselines3")
pytest.importorskip("ocatari")


def _tiny_run(tmp_path_factory, features: str):
    from trainers.agents import train as agent_train

    out = tmp_path_factory.mktemp(features) / "run"
    agent_train.main(["--game", "Freeway", "--detector", "ram", "--envs", "2", "--workers", "1", "--n-steps", "128",
                      "--frames", "1024", "--features", features, "--no-progress", "--out", str(out)])
    return out


@pytest.fixture(scope="module", params=["relative", "relative_screen"])
def any_relative_run(request, tmp_path_factory):
    return _tiny_run(tmp_path_factory, request.param), request.param


def test_a_relative_policy_plays_env_observations_as_sb3_does(any_relative_run, flat_play) -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    from moc_envs.agents import normalise_observation
    from trainers.agents import train as agent_train

    run, features = any_relative_run
    record, tensors = agent_train.load_checkpoint(run)
    assert record["features"] == features and record["feature_names"][0] == "player.present"
    policy = agent_train.policy_from_checkpoint(run)
    assert policy.features == features and policy.n_inputs == 84 and policy.n_features == 91
    sb3 = ActorCriticPolicy(
        gym.spaces.Box(-np.inf, np.inf, (91,), np.float32), gym.spaces.Discrete(3), lambda _: 0.0,
        net_arch={"pi": [64, 64], "vf": [64, 64]}, activation_fn=torch.nn.Tanh,
    )
    sb3.load_state_dict(tensors["policy"])
    batch = flat_play("Freeway", 3, 40)
    layout = relative_layout("Freeway")
    want, _ = sb3.predict(normalise_observation(apply_features(batch, features, layout), policy.normalisation),
                          deterministic=True)
    np.testing.assert_array_equal(policy(batch), want)
    np.testing.assert_array_equal(policy(batch.reshape(-1, 12, 7)), want)
    assert policy(batch[0]) == want[0]


def test_resume_with_other_features_and_a_tampered_agent_are_refused(any_relative_run, tmp_path) -> None:
    from moc_envs.agents import AGENT_FILE, load_folder
    from moc_envs.errors import CorruptWeightsError
    from moc_envs.weights.manifest import write_manifest
    from trainers.agents import evaluate as agent_eval
    from trainers.agents import train as agent_train

    run, trained = any_relative_run
    args = agent_train.Args(game="Freeway", out=str(run), detector="ram", envs=2, workers=1,
                            n_steps=128, frames=1024, resume=True, progress=False)
    with pytest.raises(agent_train.AgentTrainError, match=f"features '{trained}', not 'slots'"):
        agent_train.train(args)
    folder = tmp_path / "agent"
    agent_eval.export_run(run, folder, None)
    assert load_folder(folder, "Freeway").features == trained
    order = "nearest first" if trained == "relative" else "in screen order"
    assert f"{order} (features: {trained}, `moc_envs.agent_features`)" in (folder / agent_eval.CARD_FILE).read_text()
    info = json.loads((folder / AGENT_FILE).read_text())
    for features, match in (("slots", "slots features of Freeway make 84 inputs, the architecture says 91"), ("polar", "features must be one of")):
        (folder / AGENT_FILE).write_text(json.dumps({**info, "features": features}))
        write_manifest(folder, "Freeway", written=[AGENT_FILE])
        with pytest.raises(CorruptWeightsError, match=match):
            load_folder(folder, "Freeway")
