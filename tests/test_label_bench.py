"""``moc-envs bench labels``: every label scored against RAM, with its source, for both detectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.labels.accuracy import run, score_label


def test_score_label_counts_given_steps_and_tolerance() -> None:
    truth = [{"a": 10}, {"a": 10}, {"a": 10}, {"a": 10}]
    got = [{"a": 10}, {"a": 12}, {"a": 17}, {}]
    s = score_label(got, truth, "a", tolerance=5)
    assert s["given"] == 0.75 and s["exact"] == pytest.approx(1 / 3)
    assert s["within_1"] == pytest.approx(1 / 3) and s["within_5"] == pytest.approx(2 / 3) and s["right"] == pytest.approx(2 / 3)
    assert score_label([{}, {}], [{"a": 1}, {"a": 2}], "a", 0)["right"] is None


def test_the_benchmark_scores_every_label_of_the_game_with_its_source(tmp_path: Path) -> None:
    result = run(["Pong"], steps=40, runs=1, seed=1000, out=tmp_path)
    row = result["rows"][0]
    labels = row["labels"]
    assert set(labels) == {"enemy_score", "player_score", "enemy_x", "player_x", "ball_x", "enemy_y", "player_y", "ball_y"}
    assert labels["player_y"]["source"] == "link" and labels["enemy_score"]["source"] == "hud"
    # The HUD reader reads Pong's score exactly on unseen play; the RAM oracle has no HUD reader.
    assert labels["enemy_score"]["learned"]["right"] >= 0.9 and labels["enemy_score"]["ram"]["given"] == 0.0
    assert labels["player_y"]["ram"]["right"] >= 0.9
    assert row["n_labels"] == 8 and row["right"] <= row["given"] <= 8
    assert (tmp_path / "labels.md").read_text().count("| Pong |") == 9
    assert (tmp_path / "labels.json").exists() and (tmp_path / "labels.png").exists()
