"""The frozen image encoder (moc_envs.model.runtime): same detections as eager mode, safe fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from moc_envs.games import get_game
from moc_envs.model.runtime import frozen_encoder
from moc_envs.perception.space_detector import SpaceDetector
from moc_envs.weights.search import bundled_games, weights_root

FIXTURE = Path(__file__).parent / "fixtures" / "pong_frames.npz"


def _place(d) -> tuple:
    return (d.category, round(d.x, 2), round(d.y, 2), round(d.w, 2), round(d.h, 2))


@pytest.mark.parametrize("game", bundled_games())
def test_frozen_detector_finds_what_the_eager_one_finds(game: str) -> None:
    folder = weights_root() / game
    spec = get_game(game)
    frozen = SpaceDetector.from_pretrained(folder, spec)
    eager = SpaceDetector.from_pretrained(folder, spec, freeze=False)
    assert frozen._image_raw is not None and eager._image_raw is None
    frames = np.load(FIXTURE)["frames"]
    if game != "Pong":
        rng = np.random.default_rng(0)  # another game's frames: whatever it finds must agree
        frames = np.concatenate([frames, rng.integers(0, 256, (2, 210, 160, 3), dtype=np.uint8)])
    for batch in (frames[:1], frames):
        got, want = frozen.detect(batch), eager.detect(batch)
        assert [len(d) for d in got] == [len(d) for d in want]
        # Equal scores (a 1x1 box on noise) may come in either order: each frame's detections
        # are compared sorted by place.
        got, want = ([sorted(d, key=_place) for d in dets] for dets in (got, want))
        for a, b in zip(sum(got, []), sum(want, []), strict=True):
            assert a.category == b.category
            np.testing.assert_allclose([a.x, a.y, a.w, a.h, a.score], [b.x, b.y, b.w, b.h, b.score], atol=1e-4)
            np.testing.assert_allclose(a.z_what, b.z_what, atol=1e-4)


class _Broken(nn.Module):
    def raw(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cannot run")


def test_freezing_falls_back_to_eager_mode_with_a_warning() -> None:
    enc = _Broken().eval()
    with pytest.warns(RuntimeWarning, match="could not freeze the image encoder .*RuntimeError: cannot run"):
        raw = frozen_encoder(enc, torch.zeros(1, 3, 8, 8))
    assert raw == enc.raw


def test_freezing_traces_a_plain_encoder_and_keeps_its_outputs() -> None:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    enc.raw = enc.forward  # type: ignore[attr-defined]
    x = torch.rand(2, 3, 16, 16)
    raw = frozen_encoder(enc, x[:1])
    assert isinstance(raw, torch.jit.ScriptModule)
    with torch.inference_mode():
        torch.testing.assert_close(raw(x), enc(x))  # other batch sizes too


@pytest.mark.parametrize("game", ["Pong", "SpaceInvaders"])
def test_onnxruntime_detector_finds_what_the_eager_one_finds(game: str) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from moc_envs.model.runtime import OnnxRuntimeEncoder

    folder, spec = weights_root() / game, get_game(game)
    fast = SpaceDetector.from_pretrained(folder, spec, runtime="onnxruntime")
    eager = SpaceDetector.from_pretrained(folder, spec, runtime="eager")
    assert isinstance(fast._image_raw, OnnxRuntimeEncoder) and eager._image_raw is None
    frames = np.load(FIXTURE)["frames"]
    if game != "Pong":
        rng = np.random.default_rng(1)
        frames = np.concatenate([frames, rng.integers(0, 256, (2, 210, 160, 3), dtype=np.uint8)])
    x = torch.from_numpy(np.random.default_rng(2).random((3, 128, 128, 3), dtype=np.float32)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        np.testing.assert_allclose(fast._image_raw(x).numpy(), eager.encoder.image_encoder.raw(x).numpy(), atol=1e-4)
    for batch in (frames[:1], frames):
        got, want = fast.detect(batch), eager.detect(batch)
        assert [len(d) for d in got] == [len(d) for d in want]
        # Equal scores (a 1x1 box on noise) may come in either order: each frame's detections
        # are compared sorted by place.
        got, want = ([sorted(d, key=_place) for d in dets] for dets in (got, want))
        for a, b in zip(sum(got, []), sum(want, []), strict=True):
            assert a.category == b.category
            np.testing.assert_allclose([a.x, a.y, a.w, a.h, a.score], [b.x, b.y, b.w, b.h, b.score], atol=1e-4)


def test_the_runtime_reaches_the_detector_of_every_env_kind() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import gymnasium as gym

    import moc_envs

    env = gym.make("MOC/Pong-v0", device="cpu", runtime="onnxruntime")
    try:
        assert env.get_wrapper_attr("detector").runtime == "onnxruntime"
        env.reset(seed=0)
        env.step(0)
        assert env.spec.kwargs["runtime"] == "onnxruntime"
    finally:
        env.close()
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, device="cpu", runtime="onnxruntime")
    try:
        assert envs.detector.runtime == "onnxruntime"
        envs.reset(seed=0)
        envs.step(np.array([0, 1]))
    finally:
        envs.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"runtime": "onnx"}, ValueError, "Unknown runtime 'onnx'; expected one of 'torchscript', 'onnxruntime', 'eager'"),
        ({"runtime": 1}, TypeError, "runtime must be one of .* got int 1"),
        ({"runtime": "eager", "detector": "ram"}, ValueError, "runtime='eager' only applies to detector='space'"),
    ],
)
def test_a_bad_runtime_is_refused(kwargs: dict, error: type, match: str) -> None:
    import gymnasium as gym

    import moc_envs

    with pytest.raises(error, match=match):
        gym.make("MOC/Pong-v0", **kwargs)
    with pytest.raises(error, match=match):
        moc_envs.make_vec("MOC/Pong-v0", 2, **kwargs)


def test_onnxruntime_missing_names_the_packages_and_the_way_around(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from moc_envs.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    # The default runtime: an install without onnxruntime (pip --no-deps) is told what to do.
    with pytest.raises(MissingDependencyError, match=r"needs onnxruntime.*pip install onnxruntime \(or pass runtime='torchscript'\)"):
        SpaceDetector.from_pretrained(weights_root() / "Pong", get_game("Pong"))
    detector = SpaceDetector.from_pretrained(weights_root() / "Pong", get_game("Pong"), runtime="torchscript")
    assert detector.runtime == "torchscript"
