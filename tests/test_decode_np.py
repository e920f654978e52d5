"""The NumPy path after the image encoder (moc_envs.model.decode_np) against the torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moc_envs.model import ModelConfig
from moc_envs.model.decode_np import LeanGlimpseKernel, crop_glimpses_np, decode_cells
from moc_envs.model.geometry import crop_glimpses, latents_to_where, where_to_boxes
from moc_envs.model.lean import LeanGlimpseEncoder


def test_decoded_cells_match_the_torch_geometry() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 2, (3, 11, 16, 16)).astype(np.float32)
    b, prob, where, boxes = decode_cells(raw, 8.8, 0.5)
    t = torch.from_numpy(raw).flatten(2).transpose(1, 2)
    t_prob = torch.sigmoid(8.8 * torch.tanh(t[..., 0]))
    tb, tc = torch.nonzero(t_prob > 0.5, as_tuple=True)
    t_where = latents_to_where(t[..., 3:5], t[..., 7:9], 16)[tb, tc]
    assert len(b) > 10 and np.array_equal(b, tb.numpy())
    np.testing.assert_allclose(prob, t_prob[tb, tc].numpy(), atol=1e-6)
    np.testing.assert_allclose(where, t_where.numpy(), atol=1e-6)
    np.testing.assert_allclose(boxes, where_to_boxes(t_where).numpy(), atol=1e-4)
    assert prob.dtype == where.dtype == boxes.dtype == np.float32 and b.dtype == np.int64


def test_nothing_present_decodes_to_empty_arrays() -> None:
    b, prob, where, boxes = decode_cells(np.full((2, 11, 16, 16), -5.0, np.float32), 8.8, 0.5)
    assert b.shape == prob.shape == (0,) and where.shape == boxes.shape == (0, 4)


@pytest.mark.parametrize("size", [16, 32])
def test_numpy_glimpses_match_grid_sample(size: int) -> None:
    rng = np.random.default_rng(size)
    images = rng.random((4, 128, 128, 3), dtype=np.float32)
    frame_index = np.array([0, 0, 1, 3, 3])
    # Boxes inside the image, across its border and far outside it (zero padding).
    where = np.array(
        [[0.1, 0.2, 0.0, 0.0], [0.05, 0.05, -0.97, 0.99], [0.3, 0.1, 0.5, -0.5], [0.2, 0.2, 1.5, 0.0], [0.01, 0.02, 0.3, 0.3]],
        dtype=np.float32,
    )
    got = crop_glimpses_np(images, frame_index, where, size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    want = crop_glimpses(x[torch.from_numpy(frame_index)], torch.from_numpy(where), size).permute(0, 2, 3, 1)
    assert got.shape == (5, size, size, 3)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    assert np.abs(got[3]).max() < 1e-6  # the box beyond the right edge reads only padding
    assert crop_glimpses_np(images, np.zeros(0, np.int64), np.zeros((0, 4), np.float32), size).shape == (0, size, size, 3)


def test_glimpse_kernel_is_the_lean_encoders_mean() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(image_encoder="lean", glimpse_encoder="lean")
    enc = LeanGlimpseEncoder(cfg).eval()
    glimpses = torch.rand(7, 3, cfg.glimpse, cfg.glimpse)
    kernel = LeanGlimpseKernel(enc, cfg.glimpse)
    got = kernel(glimpses.permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        want, _ = enc(glimpses)
    assert got.shape == (7, cfg.z_what_dim)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
