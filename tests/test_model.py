"""The SPACE model: box geometry round trips, glimpse crop/paste, shapes, inference path."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from moc_envs.model import (
    ModelConfig,
    SpaceEncoder,
    SpaceModel,
    boxes_to_where,
    crop_glimpses,
    crop_glimpses_grouped,
    crop_present_glimpses,
    latents_to_where,
    paste_glimpses,
    where_to_boxes,
)


def test_where_box_round_trip():
    g = torch.Generator().manual_seed(0)
    where = torch.cat(
        [torch.rand(50, 2, generator=g) * 0.3 + 0.01, torch.rand(50, 2, generator=g) * 2 - 1], dim=1
    )
    torch.testing.assert_close(boxes_to_where(where_to_boxes(where)), where)
    boxes = torch.tensor([[10.0, 20.0, 4.0, 16.0], [0.0, 0.0, 160.0, 210.0]])
    torch.testing.assert_close(where_to_boxes(boxes_to_where(boxes)), boxes)


def test_where_to_boxes_known_values():
    # A full-frame box is centred at (0, 0) with scale 1.
    box = where_to_boxes(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(box, torch.tensor([0.0, 0.0, 160.0, 210.0]))
    # Pong's player paddle: 4x16 px at (140, 100).
    w = boxes_to_where(torch.tensor([140.0, 100.0, 4.0, 16.0]))
    torch.testing.assert_close(w, torch.tensor([4 / 160, 16 / 210, 2 * 142 / 160 - 1, 2 * 108 / 210 - 1]))


def test_zero_shift_puts_the_centre_in_its_cell():
    grid = 16
    where = latents_to_where(torch.zeros(grid * grid, 2), torch.zeros(grid * grid, 2), grid)
    col = torch.arange(grid * grid) % grid
    row = torch.arange(grid * grid) // grid
    torch.testing.assert_close(where[:, 2], (2 / grid) * (col + 0.5) - 1)
    torch.testing.assert_close(where[:, 3], (2 / grid) * (row + 0.5) - 1)
    torch.testing.assert_close(where[:, :2], torch.full((grid * grid, 2), 0.5))
    # A saturated shift moves a centre by at most one cell.
    far = latents_to_where(torch.zeros(grid * grid, 2), torch.full((grid * grid, 2), 50.0), grid)
    assert float(far[0, 2]) == pytest.approx((2 / grid) * 1.5 - 1, abs=1e-6)


def test_crop_and_paste_follow_the_box():
    img = torch.zeros(1, 1, 128, 128)
    img[0, 0, 32:48, 64:80] = 1.0  # a 16x16 square, centre (72, 40) in pixels
    tx, ty = 2 * 72 / 128 - 1, 2 * 40 / 128 - 1
    where = torch.tensor([[16 / 128, 16 / 128, tx, ty]])
    glimpse = crop_glimpses(img, where, 16)
    assert glimpse.shape == (1, 1, 16, 16)
    assert float(glimpse.mean()) > 0.95
    pasted = paste_glimpses(torch.ones(1, 1, 16, 16), where, 128)
    assert float(pasted[0, 0, 34:46, 66:78].min()) > 0.99
    assert float(pasted[0, 0, :30].abs().max()) == 0.0
    assert float(pasted[0, 0, :, :60].abs().max()) == 0.0


def test_full_model_shapes_and_top_k():
    torch.manual_seed(0)
    cfg = ModelConfig(top_k=5)
    model = SpaceModel(cfg)
    x = torch.rand(4, 3, 128, 128)
    out = model(x)
    assert out.pres_prob.shape == (4, 256)
    assert out.where_mean.shape == (4, 256, 4)
    assert out.topk_idx.shape == (4, 5)
    assert out.what_mean.shape == (4, 5, cfg.z_what_dim)
    assert out.fg.shape == (4, 3, 128, 128) and out.alpha_map.shape == (4, 1, 128, 128)
    assert out.bg_log_lik.shape == (4, 128, 128) and out.bg_kl.shape == (4,)
    assert float(out.alpha_map.min()) >= 0.0 and float(out.alpha_map.max()) <= 1.0
    # The decoded cells are the K most likely ones.
    expected = out.lat.pres_logit.topk(5, dim=1).indices
    assert torch.equal(out.topk_idx.sort(1).values, expected.sort(1).values)


def test_mean_forward_is_deterministic():
    torch.manual_seed(0)
    model = SpaceModel(ModelConfig()).eval()
    x = torch.rand(2, 3, 128, 128)
    a, b = model(x, sample=False), model(x, sample=False)
    torch.testing.assert_close(a.fg, b.fg)
    torch.testing.assert_close(a.bg_log_lik, b.bg_log_lik)


def test_infer_returns_only_present_cells():
    torch.manual_seed(0)
    enc = SpaceEncoder(ModelConfig()).eval()
    with torch.no_grad():
        enc.image_encoder.heads.bias[0] = -5.0  # nothing present
    b_idx, prob, where, what = enc.infer(torch.rand(3, 3, 128, 128))
    assert b_idx.numel() == 0 and what.shape == (0, 32)
    with torch.no_grad():
        enc.image_encoder.heads.bias[0] = 5.0  # every cell present
    b_idx, prob, where, what = enc.infer(torch.rand(3, 3, 128, 128))
    assert b_idx.numel() == 3 * 256
    assert bool((prob > 0.5).all()) and where.shape == (768, 4) and what.shape == (768, 32)


def test_model_config_round_trip_and_errors():
    cfg = ModelConfig(top_k=12)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="top_k must be"):
        ModelConfig(top_k=0)
    with pytest.raises(ValueError, match="glimpse must be 16 or 32"):
        ModelConfig(glimpse=8)


def test_glimpse_32_variant_builds():
    model = SpaceModel(ModelConfig(glimpse=32, top_k=3))
    out = model(torch.rand(4, 3, 128, 128))
    assert out.fg.shape == (4, 3, 128, 128)


def test_import_moc_envs_stays_torch_free():
    code = "import sys, moc_envs; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_bf16_autocast_forward_gives_float32_outputs():
    # The CUDA path trains under bf16 autocast; CPU autocast exercises the same dtype handling.
    torch.manual_seed(0)
    model = SpaceModel(ModelConfig(top_k=4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(4, 3, 128, 128))
    for t in (out.fg, out.alpha_map, out.bg_log_lik, out.fg_log_lik, out.pres_prob, out.what_mean):
        assert t.dtype == torch.float32
        assert bool(torch.isfinite(t).all())
    (out.fg_log_lik.sum() + out.bg_log_lik.sum()).backward()
    assert model.encoder.image_encoder.heads.weight.grad is not None


def test_grouped_crops_equal_the_per_box_crops():
    torch.manual_seed(1)
    images = torch.rand(3, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    where = torch.rand(3, 4, 4) * torch.tensor([0.3, 0.3, 1.8, 1.8]) - torch.tensor([0.0, 0.0, 0.9, 0.9])
    per_box = crop_glimpses(images.repeat_interleave(4, dim=0), where.flatten(0, 1), 16)
    grouped = crop_glimpses_grouped(images, where, 16)
    assert grouped.shape == (3, 4, 3, 16, 16)
    assert torch.equal(grouped.flatten(0, 1), per_box)


@pytest.mark.parametrize("frame_index", [[0, 0, 2, 4, 4, 4], [3], [1, 1, 1, 1], []])
def test_crops_of_present_cells_equal_the_per_box_crops(frame_index):
    torch.manual_seed(2)
    images = torch.rand(5, 3, 128, 128)
    b = torch.tensor(frame_index, dtype=torch.long)
    where = torch.rand(len(frame_index), 4) * 0.5
    got = crop_present_glimpses(images, b, where, 16)
    assert got.shape == (len(frame_index), 3, 16, 16)
    if frame_index:
        assert torch.equal(got, crop_glimpses(images[b], where, 16))


def _full_canvas_composite(rgb, alpha, z_where, z_pres, z_depth, n_cells, out_size):
    """The blend with every glimpse pasted on the whole canvas: the definition."""
    b, k = z_pres.shape
    glimpse = torch.cat([rgb, alpha], dim=2).flatten(0, 1)
    pasted = paste_glimpses(glimpse, z_where.flatten(0, 1), out_size).view(b, k, 4, out_size, out_size)
    alpha_hat = pasted[:, :, 3:] * z_pres[:, :, None, None, None]
    importance = alpha_hat * 100.0 * torch.sigmoid(-z_depth)[:, :, None, None, None]
    logits = torch.cat([importance, importance.new_zeros((b, n_cells - k, 1, out_size, out_size))], dim=1)
    weight = torch.softmax(logits, dim=1)[:, :k]
    return (weight * pasted[:, :, :3] * alpha_hat).sum(1), (weight * alpha_hat).sum(1)


@pytest.mark.parametrize("largest", [0.05, 0.3, 0.95])
def test_composite_on_windows_equals_the_full_canvas_blend(largest):
    # Boxes of every window size and larger than the largest window (the whole canvas), reaching
    # past every edge of the canvas. Values and every input's gradient agree.
    from moc_envs.model.decoder import composite

    g = torch.Generator().manual_seed(int(largest * 100))
    b, k, gl, s, n = 2, 12, 8, 48, 64
    rgb = torch.rand(b, k, 3, gl, gl, generator=g).requires_grad_()
    alpha = torch.rand(b, k, 1, gl, gl, generator=g).requires_grad_()
    scale = torch.rand(b, k, 2, generator=g) * largest + 0.01
    shift = torch.rand(b, k, 2, generator=g) * 2.4 - 1.2
    z_where = torch.cat([scale, shift], -1).requires_grad_()
    z_pres = torch.rand(b, k, generator=g).requires_grad_()
    z_depth = torch.randn(b, k, generator=g).requires_grad_()
    inputs = (rgb, alpha, z_where, z_pres, z_depth)
    weights = torch.randn(b, 3, s, s, generator=g)
    fg, alpha_map = composite(*inputs, n, s)
    fg_ref, alpha_ref = _full_canvas_composite(*inputs, n, s)
    torch.testing.assert_close(fg, fg_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alpha_map, alpha_ref, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad((fg * weights).sum() + alpha_map.sum(), inputs)
    grads_ref = torch.autograd.grad((fg_ref * weights).sum() + alpha_ref.sum(), inputs)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4 * float(want.abs().max()), rtol=1e-3)
