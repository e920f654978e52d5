"""benchmarks.transfer: lockstep play of an agent seen by both detectors, and its analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest

import moc_envs.agents
from benchmarks import transfer
from moc_envs.games import get_game
from moc_envs.perception.observation import feature_names

NAMES = feature_names(get_game("Pong"))


def _col(name: str) -> int:
    return NAMES.index(name)


@pytest.fixture(scope="module")
def policy() -> moc_envs.agents.Policy:
    return moc_envs.agents.load("Pong")


def test_identical_observations_agree_everywhere(policy) -> None:
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (50, len(NAMES))).astype(np.float32)
    obs[:, [_col(f"{s}.present") for s in ("Player0", "Enemy0", "Ball0")]] = 1.0
    r = transfer.analyse(policy, obs, obs.copy(), NAMES)
    assert r["action_agreement"] == 1.0 and r["action_agreement_where_presence_agrees"] == 1.0
    assert all(v["missed"] == 0 and v["extra"] == 0 for v in r["per_slot"].values())
    assert all(v["mean_px"] == 0.0 for v in r["features"].values())


def test_misses_runs_and_substitution(policy) -> None:
    ram = np.zeros((10, len(NAMES)), dtype=np.float32)
    for s, (x, y) in {"Player0": (0.88, 0.5), "Enemy0": (0.1, 0.5), "Ball0": (0.5, 0.5)}.items():
        ram[:, _col(f"{s}.present")] = 1.0
        ram[:, _col(f"{s}.x")], ram[:, _col(f"{s}.y")] = x, y
    space = ram.copy()
    space[[2, 3, 4, 7], _col("Ball0.present")] = 0.0  # the learned detector misses the ball 4 times
    space[[2, 3, 4, 7], _col("Ball0.x")] = 0.0
    space[[2, 3, 4, 7], _col("Ball0.y")] = 0.0
    space[:, _col("Player0.h")] += 2.0 / 210.0  # and draws the paddle 2 px taller
    r = transfer.analyse(policy, ram, space, NAMES)
    ball = r["per_slot"]["Ball0"]
    assert (ball["missed"], ball["longest_miss_run"], ball["mean_miss_run"]) == (4, 3, 2.0)
    assert ball["miss_rate"] == pytest.approx(0.4)
    assert r["features"]["Player0.h"]["mean_px"] == pytest.approx(2.0, abs=1e-4)
    assert r["steps_where_presence_agrees"] == 6
    # Each difference alone is undone by substituting what it touched.
    only_misses = space.copy()
    only_misses[:, _col("Player0.h")] = ram[:, _col("Player0.h")]
    sub = transfer.analyse(policy, ram, only_misses, NAMES)["agreement_after_substitution"]
    assert sub["oracle's missed and extra objects"] == 1.0 and sub["oracle's Ball0"] == 1.0
    only_size = ram.copy()
    only_size[:, _col("Player0.h")] = space[:, _col("Player0.h")]
    sub = transfer.analyse(policy, ram, only_size, NAMES)["agreement_after_substitution"]
    assert sub["oracle's size (w, h)"] == 1.0 and sub["oracle's Player0"] == 1.0
    with pytest.raises(ValueError, match="expected two"):
        transfer.analyse(policy, ram, space[:, :-1], NAMES)


def test_misses_touching_another_object_are_counted_apart(policy) -> None:
    ram = np.zeros((10, len(NAMES)), dtype=np.float32)
    boxes = {"Player0": (140, 100, 4, 16), "Enemy0": (16, 100, 4, 16), "Ball0": (80, 100, 2, 4)}
    for s, (x, y, w, h) in boxes.items():
        ram[:, _col(f"{s}.present")] = 1.0
        for f, v, scale in (("x", x, 160), ("y", y, 210), ("w", w, 160), ("h", h, 210)):
            ram[:, _col(f"{s}.{f}")] = v / scale
    ram[:4, _col("Ball0.x")] = 137 / 160  # 1 px left of the player's paddle on steps 0-3
    ram[4, _col("Ball0.x")] = 135 / 160  # 3 px: apart
    space = ram.copy()
    space[[0, 1, 2, 8], _col("Ball0.present")] = 0.0
    ball = transfer.analyse(policy, ram, space, NAMES)["per_slot"]["Ball0"]
    assert ball["seen_touching"] == 4
    assert ball["miss_rate_touching"] == pytest.approx(3 / 4) and ball["miss_rate_apart"] == pytest.approx(1 / 6)
    paddle = transfer.analyse(policy, ram, space, NAMES)["per_slot"]["Player0"]
    assert paddle["seen_touching"] == 4 and paddle["miss_rate_touching"] == 0.0


def test_quick_run_writes_the_report(tmp_path) -> None:
    transfer.main(["--quick", "--out", str(tmp_path), "--seeds", "3"])
    data = json.loads((tmp_path / "transfer.json").read_text())
    assert data["agent_detector"] == moc_envs.agents.load("Pong").detector and data["steps"] > 0
    assert set(data["per_slot"]) == {"Player0", "Enemy0", "Ball0"}
    assert 0.0 <= data["action_agreement"] <= 1.0
    md = (tmp_path / "transfer.md").read_text()
    assert "What restores the agent's choices" in md and (tmp_path / "transfer.png").is_file()
