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
