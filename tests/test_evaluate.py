"""Evaluation, classifier fitting and model card end to end on a tiny Pong dataset.

The detector is a randomly initialised, exported SPACE encoder: these tests check the tooling
(outputs, keys, files, verified loading), not detection quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moc_envs.classifier import CLASSIFIER_FILE, MANIFEST_FILE, UNKNOWN
from moc_envs.games import get_game
from moc_envs.model.config import ModelConfig
from moc_envs.model.encoder import SpaceEncoder
from moc_envs.preprocess import resize_frames
from moc_envs.space_detector import CONFIG_FILE, FORMAT, WEIGHTS_FILE, SpaceDetector
from trainers.card import build_card, write_card
from trainers.classifier import fit_from_weights
from trainers.data import DatasetError, load_split
from trainers.dataset import build_dataset
from trainers.evaluate import evaluate, main, write_report
from trainers.export import MAX_BOX_QUANTILE, motion_max_box
from trainers.raw_frames import build_raw_frames, load_raw_frames


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "Pong"
    build_dataset("Pong", root, train=1, val=2, test=2, chunk_stacks=4, background_frames=16, progress=False)
    return root


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "Pong"
    out.mkdir()
    torch.manual_seed(0)
    cfg = ModelConfig()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in SpaceEncoder(cfg).state_dict().items()}, str(out / WEIGHTS_FILE))
    meta = {"format": FORMAT, "game": "Pong", "model": cfg.to_dict(), "step": 0, "train_config": {"steps": 0}}
    (out / CONFIG_FILE).write_text(json.dumps(meta))
    return out


def test_raw_frames_replay_matches_the_stored_split(tiny):
    with pytest.raises(DatasetError, match="python -m trainers.raw_frames"):
        load_raw_frames(tiny, "test")
    build_raw_frames(tiny, "test", progress=False)
    raw = load_raw_frames(tiny, "test")
    stored = load_split(tiny, "test")
    assert raw.shape == (2, 4, 210, 160, 3) and raw.dtype == np.uint8
    np.testing.assert_array_equal(resize_frames(raw.reshape(-1, 210, 160, 3)), stored.frames.reshape(-1, 128, 128, 3))


def test_evaluate_writes_json_and_markdown(tiny, random_weights, tmp_path):
    build_raw_frames(tiny, "test", progress=False)
    res = evaluate("Pong", tiny, weights=random_weights, split="test", progress=False)
    assert res["frames"] == 8 and res["split"] == "test"
    for method in (res["detector"]["raw"], res["detector"]["suppressed"], res["ocatari_vision"]):
        for subset in ("all", "moving"):
            m = method[subset]
            assert set(m["ap"]["per_iou"]) == {f"{0.1 * i:.1f}" for i in range(1, 10)}
            for crit in ("relative", "ocatari", "iou"):
                assert 0.0 <= m[crit]["f1"] <= 1.0
            assert 0.0 <= m["duplicates"]["duplicate_rate"] <= 1.0
            assert 0.0 <= m["count_accuracy"] <= 1.0
            assert set(m["recall_by_category"]) <= {"Player", "Enemy", "Ball"}
    # Suppression never adds boxes; OCAtari's colour detector is exact on Pong.
    assert res["detector"]["suppressed"]["all"]["predictions"] <= res["detector"]["raw"]["all"]["predictions"]
    assert res["ocatari_vision"]["moving"]["relative"]["f1"] == pytest.approx(1.0)
    assert res["ocatari_vision"]["all"]["category"]["accuracy"] == pytest.approx(1.0)
    assert "few_shot_ridge" in res["latent"] and "kmeans" in res["latent"]
    j, m = write_report(res, tmp_path)
    assert json.loads(j.read_text())["game"] == "Pong"
    text = m.read_text()
    assert "| OCAtari vision mode | moving |" in text and "AP (0.1..0.9)" in text


def test_evaluate_cli_without_vision(tiny, random_weights, tmp_path):
    res = main(["--game", "Pong", "--weights", str(random_weights), "--data", str(tiny), "--split", "val",
                "--no-vision", "--out", str(tmp_path)])  # fmt: skip
    assert res["ocatari_vision"] == {"skipped": "disabled"}
    assert (tmp_path / "eval_val.json").is_file() and (tmp_path / "eval_val.md").is_file()
    with pytest.raises(SystemExit):
        main(["--game", "Pong", "--data", str(tiny)])  # neither --weights nor --run


def test_classifier_is_fitted_shipped_and_used(tiny, random_weights, tmp_path):
    folder = tmp_path / "Pong"
    folder.mkdir()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        (folder / name).write_bytes((random_weights / name).read_bytes())
    report = fit_from_weights("Pong", folder, tiny, labels_per_class=2)
    assert (folder / CLASSIFIER_FILE).is_file() and (folder / MANIFEST_FILE).is_file()
    assert set(report["test"]["by_category"]) <= {"Player", "Enemy", "Ball"}
    det = SpaceDetector.from_pretrained(folder, get_game("Pong"))
    assert det.classifier is not None
    frames = load_raw_frames(tiny, "test")[0]
    cats = {d.category for frame in det.detect(frames) for d in frame}
    assert cats and cats <= set(det.classifier.classes) | {UNKNOWN}
    res = evaluate("Pong", tiny, weights=folder, split="test", vision=False, progress=False)
    assert res["detector"]["suppressed"]["moving"]["category"]["matched"] >= 0
    write_report(res, folder)
    card = build_card("Pong", folder, hardware="test machine", train_minutes=1.5)
    assert card["evaluation"]["split"] == "test" and card["ship"]["f1_moving_required"] == 0.95
    assert card["ship"]["meets_bar"] is False  # random weights
    assert len(card["classifier"]["sha256"]) == 64 and card["classifier"]["labels_per_class"] == 2
    j, m = write_card(card, folder)
    assert json.loads(j.read_text())["training"]["hardware"] == "test machine"
    assert "Shipping bar" in m.read_text()


def test_motion_max_box_scales_the_motion_boxes(tiny, random_weights, tmp_path):
    d = load_split(tiny, "train")
    sizes = d.motion_where[..., :2][d.motion_pres > 0.5]
    q = np.quantile(sizes, MAX_BOX_QUANTILE, axis=0) * [160, 210]
    w, h = motion_max_box(tiny, 2.0)
    assert (w, h) == pytest.approx((2 * q[0], 2 * q[1]), abs=0.06)
    # Pong's motion boxes are the paddles and the ball: a few pixels wide, under 25 tall.
    assert 0 < w < 20 and 0 < h < 50
    # The evaluation applies a config's max_box before suppression.
    capped = tmp_path / "Pong"
    capped.mkdir()
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        (capped / name).write_bytes((random_weights / name).read_bytes())
    meta = json.loads((capped / CONFIG_FILE).read_text())
    (capped / CONFIG_FILE).write_text(json.dumps({**meta, "max_box": [1.0, 1.0]}))
    res = evaluate("Pong", tiny, weights=capped, split="test", vision=False, progress=False)
    assert res["max_box"] == [1.0, 1.0]
    assert res["detector"]["raw"]["all"]["predictions"] > 0
    assert res["detector"]["suppressed"]["all"]["predictions"] == 0
