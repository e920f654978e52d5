"""The Noisy Atari benchmark: bars drawn on the held-out frames, false detections on them counted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import noisy
from moc_envs.perception.distractors import (
    BAR_COLOR,
    HORIZONTAL_THICKNESS,
    VERTICAL_THICKNESS,
    Bars,
)


def test_noisy_frames_draw_new_bars_on_every_frame_reproducibly() -> None:
    frames = np.zeros((5, 210, 160, 3), np.uint8)
    out, bars = noisy.noisy_frames(frames, "both", seed=3)
    again, bars_again = noisy.noisy_frames(frames, "both", seed=3)
    assert np.array_equal(out, again) and bars == bars_again
    assert len({b.row for b in bars}) > 1  # a new position every frame
    for image, b in zip(out, bars, strict=True):
        assert (image[b.row : b.row + HORIZONTAL_THICKNESS] == BAR_COLOR).all()
        assert (image[:, b.col : b.col + VERTICAL_THICKNESS] == BAR_COLOR).all()
    assert not frames.any()  # the clean frames are untouched
    with pytest.raises(ValueError, match="kind must be one of"):
        noisy.run(["Pong"], kind="diagonal")


def test_false_detections_on_bars_are_unmatched_boxes_centred_on_a_bar() -> None:
    truth = [(np.array([[140.0, 100, 4, 16]]), ["Player"])]
    bars = [Bars(row=50, col=None)]
    preds = [(np.array([[140.0, 100, 4, 16], [60, 50, 8, 8], [60, 150, 8, 8], [10, 50, 8, 8]]),
              ["Player", "Ball", "Ball", "unknown"])]  # fmt: skip
    # The match is no false detection; the ball on the bar is; the one off it, and a box of a
    # category without a slot, are not counted.
    assert noisy.bar_false_detections(preds, truth, bars, frozenset({"Player", "Enemy", "Ball"})) == 1


def test_hidden_share_counts_boxes_wholly_under_a_bar() -> None:
    truths = [(np.array([[10.0, 52, 2, 4], [10, 60, 4, 16], [103, 0, 4, 30], [100, 100, 12, 2]]), ["a"] * 4)]
    bars = [Bars(row=50, col=102)]
    # Under the row band; crossing it (not hidden); under the column band; wider than the column band.
    assert noisy.hidden_share(truths, bars) == 0.5
    assert noisy.hidden_share(truths, [Bars(row=None, col=None)]) == 0.0


def test_noisy_quick_scores_vision_clean_and_noisy(monkeypatch, tmp_path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setattr("benchmarks.noisy.learned_weights", lambda game: None)
    noisy.main(["--quick", "--games", "Pong", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "noisy.json").read_text())
    (game,) = data["results"]
    (row,) = game["rows"]
    assert row["detector"] == noisy.VISION and row["frames"] == 3 * 16
    assert 0.0 <= row["f1_noisy"] <= row["f1_clean"] <= 1.0
    md = (tmp_path / "noisy.md").read_text()
    assert md.count("| Pong | OCAtari vision |") == 1 and (tmp_path / "noisy.png").is_file()
    assert 0.0 <= game["hidden_share"] <= 1.0 and "wholly under a bar" in md
