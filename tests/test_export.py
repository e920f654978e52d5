"""Export a run to <run>/weights/<Game>/ (or --out) and load it back through SpaceDetector."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moc_envs.errors import CorruptWeightsError, FrameFormatError, MissingWeightsError
from moc_envs.games import get_game
from moc_envs.model import SpaceModel, where_to_boxes
from moc_envs.perception.detection import Detection
from moc_envs.perception.preprocess import resize_frames
from moc_envs.perception.space_detector import CONFIG_FILE, FORMAT, WEIGHTS_FILE, SpaceDetector
from moc_envs.weights.manifest import MANIFEST_FILE, verify_folder, write_manifest
from trainers.data.reader import DatasetError
from trainers.detector.config import make_config
from trainers.detector.train import CHECKPOINT, TrainError, save_checkpoint
from trainers.evaluate.export import default_out, export_run, main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder holding a checkpoint of a randomly initialised model with a few present cells."""
    cfg = make_config("Pong", "cpu")
    torch.manual_seed(0)
    model = SpaceModel(cfg.model)
    with torch.no_grad():
        model.encoder.image_encoder.heads.bias[0] = -0.03  # some cells above 0.5, most below
    run = tmp_path_factory.mktemp("runs") / "pong"
    run.mkdir()
    fg = torch.optim.RMSprop(model.foreground_parameters())
    bg = torch.optim.Adam(model.background.parameters())
    save_checkpoint(
        run / CHECKPOINT,
        {
            "model": model.state_dict(), "fg_opt": fg.state_dict(), "bg_opt": bg.state_dict(),
            "step": 7, "sched": {"v_ema": None}, "rng": {}, "config": cfg.to_dict(), "data": "none",
        },
    )
    return run, model


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "Pong"
    main([str(run_dir[0]), "--game", "Pong", "--out", str(out)])
    return out


def test_export_writes_only_the_inference_module(exported, run_dir):
    from safetensors.torch import load_file

    state = load_file(str(exported / WEIGHTS_FILE))
    model = run_dir[1]
    assert set(state) == set(model.encoder.state_dict())
    assert not any(k.startswith(("glimpse_decoder", "background")) for k in state)
    assert (exported / WEIGHTS_FILE).stat().st_size < 10e6
    meta = json.loads((exported / CONFIG_FILE).read_text())
    assert meta["game"] == "Pong" and meta["step"] == 7
    assert meta["model"] == model.cfg.to_dict()


def test_detect_round_trip_matches_the_model(exported, run_dir):
    det = _load(exported)
    det.suppression = None  # every present cell, to compare with the model cell by cell
    det.refine = False  # the model's own boxes, not tightened to the pixels
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 210, 160, 3), dtype=np.uint8)
    dets = det.detect(frames)
    assert len(dets) == 2 and all(isinstance(d, Detection) for f in dets for d in f)
    # Same boxes as the trained model's posterior means on the shared resize path.
    model = run_dir[1].eval()
    x = torch.from_numpy(resize_frames(frames)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        lat = model.encoder.cells(x)
        prob = torch.sigmoid(lat.pres_logit)
        boxes = where_to_boxes(model.encoder.mean_where(lat))
    for i in range(2):
        keep = prob[i] > 0.5
        expected = boxes[i][keep].numpy()
        got = np.array([[d.x, d.y, d.w, d.h] for d in dets[i]]).reshape(-1, 4)
        assert len(got) == int(keep.sum()) > 0
        np.testing.assert_allclose(
            got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], rtol=1e-4, atol=1e-3
        )
        assert all(d.category == "object" and 0.5 < d.score <= 1 for d in dets[i])
        assert all(d.z_what is not None and d.z_what.shape == (32,) for d in dets[i])


def test_detector_rejects_bad_frames(exported):
    det = _load(exported)
    with pytest.raises(FrameFormatError, match=r"uint8 of shape \(N, 210, 160, 3\)"):
        det.detect(np.zeros((210, 160, 3), np.uint8))
    assert det.detect(np.zeros((0, 210, 160, 3), np.uint8)) == []


def _load(folder, game: str = "Pong") -> SpaceDetector:
    """Load an exported folder (no classifier: these tests check the detector itself)."""
    return SpaceDetector.from_pretrained(folder, get_game(game), allow_unclassified=True)


def _copy(src, dst):
    dst.mkdir(parents=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _resign(folder):
    """Record a folder's edited files in its manifest, so that the checks behind the manifest run."""
    write_manifest(folder, "Pong")
    return folder


def test_corrupt_or_mismatched_weights_are_refused(exported, tmp_path):
    with pytest.raises(CorruptWeightsError, match="not 'Boxing'"):
        _load(exported, "Boxing")
    bad = _resign(_copy(exported, tmp_path / "garbage"))
    (bad / WEIGHTS_FILE).write_bytes(b"not a safetensors file at all")
    with pytest.raises(CorruptWeightsError, match=f"{WEIGHTS_FILE} does not match manifest.json"):
        _load(bad)
    with pytest.raises(CorruptWeightsError, match="not a readable safetensors file"):
        _load(_resign(bad))
    shape = _copy(exported, tmp_path / "shape")
    meta = json.loads((shape / CONFIG_FILE).read_text())
    meta["model"]["z_what_dim"] = 16
    (shape / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CorruptWeightsError, match="wrong shape"):
        _load(_resign(shape))
    cfg = _copy(exported, tmp_path / "cfg")
    (cfg / CONFIG_FILE).write_text("{")
    with pytest.raises(CorruptWeightsError, match="not valid JSON"):
        _load(_resign(cfg))
    (cfg / CONFIG_FILE).write_text("[]")
    with pytest.raises(CorruptWeightsError, match="not a valid detector config"):
        _load(_resign(cfg))
    (cfg / CONFIG_FILE).write_text(json.dumps({**meta, "format": "moc_envs.space_detector/0"}))
    with pytest.raises(CorruptWeightsError, match="has format 'moc_envs.space_detector/0', expected"):
        _load(_resign(cfg))
    keys = _copy(exported, tmp_path / "keys")
    from safetensors.torch import load_file, save_file

    state = load_file(str(keys / WEIGHTS_FILE))
    state.pop(next(iter(state)))
    save_file(state, str(keys / WEIGHTS_FILE), metadata={"format": FORMAT, "game": "Pong"})
    with pytest.raises(CorruptWeightsError, match="missing keys"):
        _load(_resign(keys))
    with pytest.raises(MissingWeightsError, match="is missing"):
        _load(tmp_path / "nowhere")


def test_config_switches_box_refinement(exported, tmp_path):
    assert _load(exported).refine is True  # the default
    off = _copy(exported, tmp_path / "off")
    meta = json.loads((off / CONFIG_FILE).read_text())
    (off / CONFIG_FILE).write_text(json.dumps({**meta, "refine_boxes": False}))
    assert _load(_resign(off)).refine is False
    (off / CONFIG_FILE).write_text(json.dumps({**meta, "refine_boxes": "yes"}))
    with pytest.raises(CorruptWeightsError, match="refine_boxes must be true or false"):
        _load(_resign(off))


def test_config_max_box_drops_oversized_boxes(exported, tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (2, 210, 160, 3), dtype=np.uint8)
    det = _load(exported)
    assert det.max_box is None
    det.refine = False
    boxes = [(d.w, d.h) for f in det.detect(frames) for d in f]
    assert boxes, "the fixture's model must predict some boxes"
    limit = _copy(exported, tmp_path / "limit")
    meta = json.loads((limit / CONFIG_FILE).read_text())
    w_cut = float(np.median([w for w, _ in boxes]))
    assert w_cut >= 160 / 16, "the cut must stay above one grid cell to be accepted"
    (limit / CONFIG_FILE).write_text(json.dumps({**meta, "max_box": [w_cut, 1000]}))
    capped = _load(_resign(limit))
    assert capped.max_box == (w_cut, 1000.0)
    capped.refine = False
    kept = [(d.w, d.h) for f in capped.detect(frames) for d in f]
    assert kept and len(kept) < len(boxes) and all(w <= w_cut for w, _ in kept)
    for bad in ([10], [10, -1], "big", [True, 3]):
        (limit / CONFIG_FILE).write_text(json.dumps({**meta, "max_box": bad}))
        with pytest.raises(CorruptWeightsError, match="max_box must be"):
            _load(_resign(limit))


def test_tiny_max_box_is_refused(exported, tmp_path):
    tiny = _copy(exported, tmp_path / "tiny")
    meta = json.loads((tiny / CONFIG_FILE).read_text())
    # One cell of the 16 x 16 grid over the 160 x 210 frame is 10 x 13.125 px.
    (tiny / CONFIG_FILE).write_text(json.dumps({**meta, "max_box": [10, 13]}))
    with pytest.raises(
        CorruptWeightsError,
        match=r"max_box 10 x 13 px is smaller than one grid cell .*10 x 13\.125 px.*would drop almost every box",
    ):
        _load(_resign(tiny))
    (tiny / CONFIG_FILE).write_text(json.dumps({**meta, "max_box": [10, 13.125]}))
    assert _load(_resign(tiny)).max_box == (10.0, 13.125)


def test_export_default_out_is_under_the_run(run_dir, capsys):
    run = run_dir[0]
    out = main([str(run), "--game", "Pong"])
    assert out == default_out(run, "Pong") == run / "weights" / "Pong"
    assert (out / WEIGHTS_FILE).is_file() and (out / CONFIG_FILE).is_file()
    assert set(verify_folder(out, "Pong").files) == {WEIGHTS_FILE, CONFIG_FILE}
    assert "moc-envs classifier --game Pong --weights" in capsys.readouterr().out


def test_export_writes_a_manifest_and_tags(exported):
    from safetensors import safe_open

    files = verify_folder(exported, "Pong")
    assert set(files.files) == {WEIGHTS_FILE, CONFIG_FILE}
    with safe_open(str(exported / WEIGHTS_FILE), "pt") as f:
        assert f.metadata() == {"format": FORMAT, "game": "Pong"}
    with pytest.raises(MissingWeightsError, match="(?s)no z_what classifier.*moc-envs classifier --game Pong"):
        SpaceDetector.from_pretrained(exported, get_game("Pong"))


def test_export_max_box_needs_a_dataset(run_dir, tmp_path):
    # The fixture's run records the dataset "none", which does not exist.
    with pytest.raises(DatasetError, match="No dataset at 'none'"):
        export_run(run_dir[0], "Pong", tmp_path / "w", max_box_margin=2.0)


def test_export_refuses_another_game(run_dir, tmp_path):
    with pytest.raises(TrainError, match="not 'Boxing'"):
        export_run(run_dir[0], "Boxing", tmp_path / "w")
