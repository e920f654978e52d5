"""Evaluation, classifier fitting and model card end to end on a tiny Pong dataset.

The detector is a randomly initialised, exported SPACE encoder: these tests check the tooling
(outputs, keys, files, verified loading), not detection quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from moc_envs.games import get_game
from moc_envs.model.config import ModelConfig
from moc_envs.model.encoder import SpaceEncoder
from moc_envs.perception.classifier import CLASSIFIER_FILE, CLASSIFIER_JSON, UNKNOWN
from moc_envs.perception.preprocess import resize_frames
from moc_envs.perception.space_detector import CONFIG_FILE, FORMAT, WEIGHTS_FILE, SpaceDetector
from moc_envs.weights.manifest import MANIFEST_FILE, verify_folder, write_manifest
from trainers.classify.classifier import NoObjectsFoundError, fit_from_weights
from trainers.classify.classifier import main as classifier_main
from trainers.data.dataset import build_dataset
from trainers.data.raw_frames import build_raw_frames, has_raw_frames, load_raw_frames
from trainers.data.reader import DatasetError, load_split
from trainers.evaluate.card import build_card, card_markdown, write_card
from trainers.evaluate.card import main as card_main
from trainers.evaluate.detector import (
    evaluate,
    load_encoder,
    main,
    predict_frames,
    truth_z_what,
    write_report,
)
from trainers.evaluate.export import MAX_BOX_QUANTILE, motion_max_box


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "Pong"
    build_dataset("Pong", root, train=1, val=2, test=2, chunk_stacks=4, background_frames=16, progress=False)
    return root


def _export_encoder(out: Path, encoder: SpaceEncoder) -> Path:
    """Write an encoder as trainers.evaluate.export does: tagged weights, config, manifest."""
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": FORMAT, "game": "Pong"})
    meta = {"format": FORMAT, "game": "Pong", "model": encoder.cfg.to_dict(), "step": 0, "train_config": {"steps": 0}}
    (out / CONFIG_FILE).write_text(json.dumps(meta))
    write_manifest(out, "Pong")
    return out


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return _export_encoder(tmp_path_factory.mktemp("weights") / "Pong", SpaceEncoder(ModelConfig()))


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_raw_frames_replay_matches_the_stored_split(tiny):
    with pytest.raises(DatasetError, match="moc-envs raw-frames"):
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
    # Every truth object is scored at its own box, whatever the detector found.
    assert res["latent_truth"]["samples"] == res["detector"]["raw"]["all"]["objects"]
    j, m = write_report(res, tmp_path)
    assert json.loads(j.read_text())["game"] == "Pong"
    text = m.read_text()
    assert "| OCAtari vision mode | moving |" in text and "AP (0.1..0.9)" in text


def test_truth_z_what_is_the_z_what_the_detector_gives_a_box_it_predicts(tiny, random_weights):
    encoder, _ = load_encoder(random_weights, None, "Pong", "cpu")
    frames = load_split(tiny, "test").frames.reshape(-1, 128, 128, 3)
    pred = predict_frames(encoder, frames, threshold=0.0)  # every cell: boxes wherever the model puts them
    picked = [b[::7] for b in pred.boxes]
    z = truth_z_what(encoder, frames, picked, batch=3)
    assert [len(v) for v in z] == [len(b) for b in picked]
    for got, want in zip(z, (zw[::7] for zw in pred.z_what), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    # A frame with no truth box gets an empty row, with the z_what width kept.
    empty = truth_z_what(encoder, frames[:2], [np.zeros((0, 4)), picked[1]])
    assert empty[0].shape == (0, encoder.cfg.z_what_dim) and len(empty[1]) == len(picked[1])


def test_evaluate_cli_without_vision(tiny, random_weights, tmp_path):
    res = main(["--game", "Pong", "--weights", str(random_weights), "--data", str(tiny), "--split", "val",
                "--no-vision", "--out", str(tmp_path)])  # fmt: skip
    assert res["ocatari_vision"] == {"skipped": "disabled"}
    assert (tmp_path / "eval_val.json").is_file() and (tmp_path / "eval_val.md").is_file()
    with pytest.raises(SystemExit):
        main(["--game", "Pong", "--data", str(tiny)])  # neither --weights nor --run


def test_classifier_is_fitted_shipped_and_used(tiny, random_weights, tmp_path):
    folder = _copy(random_weights, tmp_path / "Pong")
    report = fit_from_weights("Pong", folder, tiny, labels_per_class=2)
    assert (folder / CLASSIFIER_FILE).is_file() and (folder / CLASSIFIER_JSON).is_file()
    # The classifier's files joined the manifest; the detector's entries were kept.
    assert set(verify_folder(folder, "Pong").files) == {WEIGHTS_FILE, CONFIG_FILE, CLASSIFIER_FILE, CLASSIFIER_JSON}
    assert report["manifest"] == str(folder / MANIFEST_FILE)
    assert set(report["test"]["by_category"]) <= {"Player", "Enemy", "Ball"}
    det = SpaceDetector.from_pretrained(folder, get_game("Pong"))
    assert det.classifier is not None
    if not has_raw_frames(tiny, "test"):  # built by the replay test when the module runs whole
        build_raw_frames(tiny, "test", progress=False)
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
    # Evaluation and card are recorded in the manifest; the folder still loads.
    listed = set(verify_folder(folder, "Pong").files)
    assert {"eval_test.json", "eval_test.md", "card.json", "card.md"} <= listed
    assert SpaceDetector.from_pretrained(folder, get_game("Pong")).classifier is not None
    # --refresh rebuilds the card from a new evaluation and keeps what only the run knew.
    for block in res["detector"].values():
        block["moving"]["relative"]["f1"] = 0.5
    write_report(res, folder)
    refreshed = card_main(["--game", "Pong", "--weights", str(folder), "--refresh"])
    assert refreshed["training"]["hardware"] == "test machine" and refreshed["training"]["minutes"] == 1.5
    assert refreshed["ship"]["f1_moving"] == 0.5
    assert SpaceDetector.from_pretrained(folder, get_game("Pong")).classifier is not None
    # A detector below the bar carries its shortfall; a later --refresh keeps it.
    note = tmp_path / "shortfall.md"
    note.write_text("Balls of 1 px are missed; a finer grid would find them.\n")
    card_main(["--game", "Pong", "--weights", str(folder), "--refresh", "--shortfall", str(note)])
    card_main(["--game", "Pong", "--weights", str(folder), "--refresh"])
    kept = json.loads((folder / "card.json").read_text())["ship"]["shortfall"]
    assert kept == "Balls of 1 px are missed; a finer grid would find them."
    assert "### Shortfall, diagnosis and what would fix it" in (folder / "card.md").read_text()
    with pytest.raises(SystemExit, match="does not exist"):
        card_main(["--game", "Pong", "--weights", str(folder), "--refresh", "--shortfall", str(tmp_path / "no.md")])
    (folder / "card.json").unlink()
    with pytest.raises(SystemExit, match="needs an existing card"):
        card_main(["--game", "Pong", "--weights", str(folder), "--refresh"])


def test_categories_without_a_slot_are_scored_as_the_observation_drops_them(tiny, random_weights, tmp_path):
    """A classifier may name categories the game has no slot for (Breakout's brick rows)."""
    folder = _copy(random_weights, tmp_path / "Pong")
    fit_from_weights("Pong", folder, tiny, labels_per_class=2)
    if not has_raw_frames(tiny, "test"):
        build_raw_frames(tiny, "test", progress=False)
    meta = json.loads((folder / CLASSIFIER_JSON).read_text())
    renamed = ["Brick" if c == "Ball" else c for c in meta["classes"]]
    (folder / CLASSIFIER_JSON).write_text(json.dumps({**meta, "classes": renamed}))
    write_manifest(folder, "Pong")
    res = evaluate("Pong", tiny, weights=folder, split="test", vision=False, progress=False)
    slots, env = res["detector"]["in_slots"], res["detector"]["refined"]
    assert slots["dropped_categories"] == ["Brick"]
    for subset in ("all", "moving"):
        assert slots[subset]["predictions"] <= env[subset]["predictions"]
    write_report(res, folder)
    card = build_card("Pong", folder)
    assert card["evaluation"]["dropped_categories"] == ["Brick"]
    assert "as the observation holds it: Brick dropped" in card_markdown(card)


def test_motion_max_box_scales_the_motion_boxes(tiny, random_weights, tmp_path):
    d = load_split(tiny, "train")
    sizes = d.motion_where[..., :2][d.motion_pres > 0.5]
    q = np.quantile(sizes, MAX_BOX_QUANTILE, axis=0) * [160, 210]
    w, h = motion_max_box(tiny, 2.0)
    assert (w, h) == pytest.approx((2 * q[0], 2 * q[1]), abs=0.06)
    # Pong's motion boxes are the paddles and the ball: a few pixels wide, under 25 tall.
    assert 0 < w < 20 and 0 < h < 50
    # The evaluation applies a config's max_box before suppression.
    capped = _copy(random_weights, tmp_path / "Pong")
    meta = json.loads((capped / CONFIG_FILE).read_text())
    # One grid cell (160 / 16 x 210 / 16 px), the smallest max_box a detector folder may hold.
    (capped / CONFIG_FILE).write_text(json.dumps({**meta, "max_box": [10.0, 13.125]}))
    write_manifest(capped, "Pong")
    res = evaluate("Pong", tiny, weights=capped, split="test", vision=False, progress=False)
    assert res["max_box"] == [10.0, 13.125]
    assert res["detector"]["raw"]["all"]["predictions"] > 0
    assert res["detector"]["suppressed"]["all"]["predictions"] == 0


def test_classifier_on_a_detector_that_finds_nothing(tiny, tmp_path, capsys):
    torch.manual_seed(0)
    encoder = SpaceEncoder(ModelConfig())
    with torch.no_grad():
        encoder.image_encoder.heads.bias[0] = -30.0  # z_pres logit: no cell is ever present
    folder = _export_encoder(tmp_path / "Pong", encoder)
    with pytest.raises(
        NoObjectsFoundError,
        match=r"(?s)found no objects in the val split .*0 predictions.*undertrained run.*wrong --weights.*max_box",
    ):
        fit_from_weights("Pong", folder, tiny, labels_per_class=2)
    assert not (folder / CLASSIFIER_FILE).exists()
    with pytest.raises(SystemExit) as exit_info:
        classifier_main(["--game", "Pong", "--weights", str(folder), "--data", str(tiny)])
    assert exit_info.value.code == 2
    assert "error: the detector in" in capsys.readouterr().err


def test_ocatari_vision_frames_it_raises_on_count_as_finding_nothing():
    # OCAtari's SpaceInvaders vision holds one satellite; two satellite-coloured blobs make it
    # raise. The frame must be scored as vision finding nothing and counted, not end the run.
    from trainers.evaluate.detector import ocatari_vision

    frames = np.zeros((1, 2, 210, 160, 3), np.uint8)
    frames[0, 1, 20:27, 10:18] = (151, 25, 122)
    frames[0, 1, 20:27, 100:108] = (151, 25, 122)
    frames[0, 0, 20:27, 10:18] = (151, 25, 122)  # one satellite: fine
    pred = ocatari_vision("SpaceInvaders", frames)
    assert pred.refused == 1
    assert len(pred.boxes[1]) == 0
    assert "Satellite" in pred.categories[0]


def test_vision_step_counts_seaquest_frames_without_lives_as_refused():
    # OCAtari's Seaquest vision with its HUD on indexes the lives it finds; a black frame has none.
    from ocatari.ram.extract_ram_info import init_objects
    from ocatari.vision.extract_vision_info import detect_objects_vision

    from trainers.data.ground_truth import vision_step

    objects = init_objects("Seaquest", True)
    assert not vision_step(detect_objects_vision, objects, np.zeros((210, 160, 3), np.uint8), "Seaquest", True)


def test_refresh_keeps_what_the_card_said_of_a_dataset_that_is_gone(tmp_path) -> None:
    """Bundled cards name a run's dataset folder that a fresh checkout does not have."""
    folder = tmp_path / "Carnival"
    shutil.copytree(Path(__file__).resolve().parents[1] / "weights" / "Carnival", folder)
    before = json.loads((folder / "card.json").read_text())["dataset"]
    if Path(before["path"]).joinpath("meta.json").is_file():
        pytest.skip(f"the run's dataset {before['path']} is on this machine (it is not in a fresh checkout)")
    assert before["policy"] == "random"
    after = card_main(["--game", "Carnival", "--weights", str(folder), "--refresh"])["dataset"]
    assert after == before


def test_card_refresh_takes_the_classifier_search_of_the_folder_as_it_is_now() -> None:
    from trainers.evaluate.card import _with_classifier_search

    stale = {"classifier": {"chosen": {"max_ratio": 0.9}}, "max_box": {"max_box": [8, 8]}}
    assert _with_classifier_search(stale, {}) == stale  # no classifier: kept
    assert _with_classifier_search(stale, {"method": "prototypes"}) == stale  # options given by hand: kept
    search = {"chosen": {"max_ratio": 1.0, "colour_weight": 3.0}, "held_out_accuracy": 0.99}
    fresh = _with_classifier_search(stale, {"options_search": search})
    assert fresh == {"classifier": search, "max_box": {"max_box": [8, 8]}} and stale["classifier"]["chosen"]["max_ratio"] == 0.9
    assert _with_classifier_search(None, {"options_search": search}) == {"classifier": search}
