"""trainers.evaluate.unmatched: a detector's unmatched predictions, grouped by category, rows and size."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from moc_envs.perception.detection import Detection
from trainers.data.raw_frames import build_raw_frames
from trainers.data.reader import load_ground_truth
from trainers.evaluate import unmatched


@pytest.fixture(scope="module")
def data(tiny_pong, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unmatched") / "Pong"
    shutil.copytree(tiny_pong, root)
    build_raw_frames(root, "test", progress=False)
    return root


class _TruthPlusOne:
    """Returns each frame's non-HUD OCAtari boxes, plus one stray 4 x 4 box at row 150."""

    def __init__(self, root: Path) -> None:
        self.truth = load_ground_truth(root, "test")
        self.stack = 0

    def detect(self, frames):
        out = []
        for t in range(len(frames)):
            boxes, cats = self.truth.boxes(self.stack, t)
            dets = [Detection(str(c), *map(float, b)) for b, c in zip(boxes, cats, strict=True)]
            out.append([*dets, Detection("Ball", 100.0, 150.0, 4.0, 4.0)])
        self.stack += 1
        return out


def test_only_the_stray_boxes_are_unmatched_and_grouped(data, monkeypatch) -> None:
    monkeypatch.setattr("moc_envs.perception.space_detector.SpaceDetector.from_pretrained", lambda *a, **k: _TruthPlusOne(data))
    res = unmatched.unmatched_predictions("Pong", data, "unused", progress=False)
    frames = res["frames"]
    assert frames == 2 * 4  # two test stacks of T = 4
    assert res["unmatched"] == frames and res["predictions"] > frames
    assert res["groups"] == [{"category": "Ball", "rows": [150, 159], "size": "4 x 4", "count": frames, "per_frame": 1.0}]
    assert "| Ball | 150-159 | 4 x 4 | 8 | 1.000 |" in unmatched.to_markdown(res)


def test_cli_on_the_bundled_pong_detector(data, capsys) -> None:
    weights = Path(__file__).resolve().parents[1] / "weights" / "Pong"
    res = unmatched.main(["--game", "Pong", "--data", str(data), "--weights", str(weights), "--threads", "1"])
    assert res["frames"] == 8 and res["unmatched"] == sum(g["count"] for g in res["groups"]) <= res["predictions"]
    assert "unmatched (not on an object or a HUD object)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="every must be >= 1"):
        unmatched.unmatched_predictions("Pong", data, weights, every=0)
