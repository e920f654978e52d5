"""The lean encoders: both architectures load, and trainers.detector.distill turns a SPACE detector into one."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from moc_envs.games import get_game
from moc_envs.model import SpaceEncoder
from moc_envs.model.config import ModelConfig
from moc_envs.perception.space_detector import CONFIG_FILE, SpaceDetector
from moc_envs.weights.manifest import verify_folder
from trainers.evaluate.export import write_detector_folder

LEAN = {"image_encoder": "lean", "glimpse_encoder": "lean"}


def test_configs_without_the_field_hold_spaces_encoder() -> None:
    old = {k: v for k, v in ModelConfig().to_dict().items() if k not in LEAN}
    cfg = ModelConfig.from_dict(old)
    assert cfg.image_encoder == "space" and cfg.glimpse_encoder == "space"
    with pytest.raises(ValueError, match="image_encoder must be one of space, lean, got 'tiny'"):
        ModelConfig(image_encoder="tiny")


@pytest.mark.parametrize("arch", [{}, {"image_encoder": "lean"}, LEAN])
def test_every_architecture_gives_the_same_posteriors_shapes(arch: dict[str, str]) -> None:
    torch.manual_seed(0)
    enc = SpaceEncoder(ModelConfig(**arch)).eval()
    x = torch.rand(3, 3, 128, 128)
    lat = enc.cells(x)
    assert lat.pres_logit.shape == (3, 256) and lat.scale_mean.shape == (3, 256, 2)
    with torch.no_grad():
        enc.image_encoder.heads.bias[0] = 5.0  # every cell present
    b, prob, where, z = enc.infer(x)
    assert len(b) == 3 * 256 and where.shape == (3 * 256, 4) and z.shape == (3 * 256, 32)


def _macs(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of the convolutions and linear layers of one forward pass."""
    total = 0

    def count(m: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return total


def test_lean_encoders_cost_a_fraction_of_spaces() -> None:
    space, lean = SpaceEncoder(ModelConfig()), SpaceEncoder(ModelConfig(**LEAN))
    frame, glimpse = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 16, 16)
    assert _macs(lean.image_encoder, frame) * 30 < _macs(space.image_encoder, frame)
    assert _macs(lean.glimpse_encoder, glimpse) * 5 < _macs(space.glimpse_encoder, glimpse)


@pytest.mark.parametrize("arch", [{}, LEAN])
def test_both_architectures_load_from_a_weights_folder(tmp_path, arch: dict[str, str], blank_frames) -> None:
    torch.manual_seed(1)
    cfg = ModelConfig(**arch)
    enc = SpaceEncoder(cfg)
    with torch.no_grad():
        enc.image_encoder.heads.bias[0] = 5.0
    state = {k: v.contiguous() for k, v in enc.state_dict().items()}
    meta = {"format": "moc_envs.space_detector/1", "game": "Pong", "model": cfg.to_dict()}
    folder = write_detector_folder(tmp_path / "Pong", "Pong", state, meta)
    det = SpaceDetector.from_pretrained(folder, get_game("Pong"), allow_unclassified=True)
    assert det.config == cfg
    assert type(det.encoder.image_encoder).__name__ == ("LeanImageEncoder" if arch else "ImageEncoder")
    out = det.detect(np.full((2, 210, 160, 3), 90, np.uint8))
    assert len(out) == 2 and all(d.category == "object" for frame in out for d in frame)
    # A lean folder whose weights do not fit its config is refused (keys of the other architecture).
    other = ModelConfig() if arch else ModelConfig(**LEAN)
    bad = json.loads((folder / CONFIG_FILE).read_text())
    bad["model"] = other.to_dict()
    write_detector_folder(tmp_path / "Bad" / "Pong", "Pong", state, bad)
    from moc_envs.errors import CorruptWeightsError

    with pytest.raises(CorruptWeightsError, match="does not match the detector model"):
        SpaceDetector.from_pretrained(tmp_path / "Bad" / "Pong", get_game("Pong"), allow_unclassified=True)



@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A random SPACE detector folder with a few present cells per frame."""
    torch.manual_seed(2)
    cfg = ModelConfig()
    enc = SpaceEncoder(cfg)
    with torch.no_grad():
        enc.image_encoder.heads.bias[0] = 0.02
    state = {k: v.contiguous() for k, v in enc.state_dict().items()}
    meta = {"format": "moc_envs.space_detector/1", "game": "Pong", "model": cfg.to_dict(), "max_box": [60.0, 80.0]}
    return write_detector_folder(tmp_path_factory.mktemp("teacher") / "Pong", "Pong", state, meta)


def test_distill_exports_a_lean_detector_and_resumes(tiny_pong, teacher, tmp_path) -> None:
    from trainers.detector.distill import main

    out = tmp_path / "run"
    args = ["--game", "Pong", "--teacher", str(teacher), "--data", str(tiny_pong), "--out", str(out),
            "--epochs", "2", "--glimpse-epochs", "2", "--batch", "16"]  # fmt: skip
    calibrated = main([*args[:7], str(tmp_path / "calibrated"), *args[8:], "--calibrate-threshold"])
    assert calibrated["val_agreement"]["pres_threshold"] in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    first = main(args)
    folder = out / "weights" / "Pong"
    files = verify_folder(folder, "Pong")
    cfg = files.read_json(CONFIG_FILE)
    assert cfg["model"]["image_encoder"] == "lean" and cfg["model"]["glimpse_encoder"] == "lean"
    assert cfg["max_box"] == [60.0, 80.0]  # the teacher's settings travel
    assert cfg["distillation"]["teacher_detector_sha256"] == first["teacher_detector_sha256"]
    assert 0.0 <= first["val_agreement"]["pres_f1"] <= 1.0
    assert first["val_agreement"]["pres_threshold"] == 0.5 and "pres_threshold" not in cfg
    det = SpaceDetector.from_pretrained(folder, get_game("Pong"), allow_unclassified=True)
    assert det.config == dataclasses.replace(ModelConfig(), **LEAN)
    # A second run into the same folder refuses; --resume finishes without training again.
    from trainers.detector.train import TrainError

    with pytest.raises(TrainError, match="pass --resume"):
        main(args)
    again = main([*args, "--resume"])
    assert again["val_agreement"] == first["val_agreement"]
    assert again["glimpse_encoder"]["val"] == first["glimpse_encoder"]["val"]


def test_distill_refuses_a_lean_teacher(tiny_pong, tmp_path) -> None:
    from trainers.detector.distill import main
    from trainers.detector.train import TrainError

    cfg = ModelConfig(**LEAN)
    state = {k: v.contiguous() for k, v in SpaceEncoder(cfg).state_dict().items()}
    meta = {"format": "moc_envs.space_detector/1", "game": "Pong", "model": cfg.to_dict()}
    lean = write_detector_folder(tmp_path / "lean" / "Pong", "Pong", state, meta)
    with pytest.raises(TrainError, match="distil from a 'space' one"):
        main(["--game", "Pong", "--teacher", str(lean), "--data", str(tiny_pong), "--out", str(tmp_path / "r")])


def test_pres_threshold_of_a_folder_is_used_and_checked(tmp_path) -> None:
    from moc_envs.errors import CorruptWeightsError

    cfg = ModelConfig(**LEAN)
    state = {k: v.contiguous() for k, v in SpaceEncoder(cfg).state_dict().items()}
    meta = {"format": "moc_envs.space_detector/1", "game": "Pong", "model": cfg.to_dict(), "pres_threshold": 0.7}
    folder = write_detector_folder(tmp_path / "Pong", "Pong", state, meta)
    assert SpaceDetector.from_pretrained(folder, get_game("Pong"), allow_unclassified=True).threshold == 0.7
    for bad in (1.5, 0.0, "0.5", True):
        write_detector_folder(tmp_path / "Pong", "Pong", state, {**meta, "pres_threshold": bad})
        with pytest.raises(CorruptWeightsError, match="pres_threshold must be a number in"):
            SpaceDetector.from_pretrained(folder, get_game("Pong"), allow_unclassified=True)


def test_glimpse_pairs_stop_at_max_pairs_in_the_given_order(teacher) -> None:
    # A game of many objects teaches the glimpse encoder from a capped, seeded subset of frames.
    from trainers.detector.distill import _student_of, glimpse_pairs

    det = SpaceDetector.from_pretrained(teacher, get_game("Pong"), allow_unclassified=True)
    enc = det.encoder.float()
    student = _student_of(enc)
    frames = np.random.default_rng(0).integers(0, 256, (40, 128, 128, 3), dtype=np.uint8)
    every = glimpse_pairs(enc, student, frames, batch=8)
    assert len(every["z_what"]) > 10
    cap = len(every["z_what"]) // 3
    order = np.random.default_rng(1).permutation(len(frames))
    some = glimpse_pairs(enc, student, frames, batch=8, order=order, max_pairs=cap)
    assert all(len(v) == cap for v in some.values())
    # Each kept glimpse is one of the full run's (same frame, same teacher box).
    full = {(int(f), *np.round(b, 4)) for f, b in zip(every["frame"], every["boxes"], strict=True)}
    assert {(int(f), *np.round(b, 4)) for f, b in zip(some["frame"], some["boxes"], strict=True)} <= full
