"""The SPACE glimpse decoder and foreground compositing (training only)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from moc_envs.model.config import ModelConfig
from moc_envs.model.geometry import paste_glimpses

__all__ = ["GlimpseDecoder", "composite"]


def _up_block(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    # Sub-pixel up-sampling: a conv makes 4x the channels, PixelShuffle folds them into 2x size.
    return nn.Sequential(
        nn.Conv2d(c_in, 4 * c_out, 3, 1, 1),
        nn.PixelShuffle(2),
        nn.CELU(),
        nn.GroupNorm(groups, c_out),
    )


class GlimpseDecoder(nn.Module):
    """z_what (M, D) -> appearance (M, 3, g, g) in [0, 1] and alpha (M, 1, g, g) in [0, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        chans = (128, 64, 32, 16) if cfg.glimpse == 16 else (128, 128, 64, 32, 16)
        layers: list[nn.Module] = [nn.Conv2d(cfg.z_what_dim, 256, 1), nn.CELU(), nn.GroupNorm(16, 256)]
        c_in = 256
        for c in chans:
            layers.append(_up_block(c_in, c, max(1, c // 16)))
            c_in = c
        layers.append(nn.Conv2d(c_in, 4, 1))
        self.net = nn.Sequential(*layers)
        # Start with translucent, grey glimpses rather than random ones.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z_what: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode z_what into appearance and alpha glimpses."""
        out = torch.sigmoid(self.net(z_what[:, :, None, None]))
        return out[:, :3], out[:, 3:]


def composite(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    z_where: torch.Tensor,
    z_pres: torch.Tensor,
    z_depth: torch.Tensor,
    n_cells: int,
    out_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste K decoded glimpses per frame and blend them into a foreground and an alpha map.

    Shapes: rgb (B, K, 3, g, g), alpha (B, K, 1, g, g), z_where (B, K, 4), z_pres and z_depth
    (B, K). The per-pixel weights are a softmax of ``alpha_hat * 100 * sigmoid(-depth)`` over
    cells, as in SPACE; the ``n_cells - K`` cells that were not decoded take part in the softmax
    with zero importance, so that the top-K blend equals the all-cell blend when those cells
    carry no alpha. Returns fg (B, 3, S, S) and alpha_map (B, 1, S, S).

    A pasted glimpse is zero outside its box, so when every box of the batch is smaller than the
    canvas the blend is computed on a window around each box only (:func:`_composite_windows`,
    the same values; a game of 41 object slots decodes 82 glimpses a frame, and pasting each on
    the whole canvas made this function most of a training step).
    """
    b, k = z_pres.shape
    window = _window_size(z_where, rgb.shape[-1], out_size)
    if window < out_size:
        return _composite_windows(rgb, alpha, z_where, z_pres, z_depth, n_cells, out_size, window)
    glimpse = torch.cat([rgb, alpha], dim=2).flatten(0, 1)  # (B*K, 4, g, g)
    pasted = paste_glimpses(glimpse, z_where.flatten(0, 1), out_size)
    pasted = pasted.view(b, k, 4, out_size, out_size)
    alpha_hat = pasted[:, :, 3:] * z_pres[:, :, None, None, None]
    importance = alpha_hat * 100.0 * torch.sigmoid(-z_depth)[:, :, None, None, None]
    # Softmax with (n_cells - K) extra zero logits, computed stably.
    top = importance.amax(dim=1, keepdim=True).clamp_min(0.0)
    e = torch.exp(importance - top)
    denom = e.sum(dim=1, keepdim=True) + (n_cells - k) * torch.exp(-top)
    weight = e / denom
    fg = (weight * pasted[:, :, :3] * alpha_hat).sum(dim=1)
    alpha_map = (weight * alpha_hat).sum(dim=1)
    return fg, alpha_map


def _window_size(z_where: torch.Tensor, g: int, out_size: int) -> int:
    """Side in canvas pixels of a window that holds every pasted glimpse's non-zero pixels.

    A glimpse of g texels, sampled bilinearly with zero padding, is non-zero within
    (1 + 1/g) of its box's half-size of its centre; two pixels more cover the rounding of the
    window's origin.
    """
    if z_where.numel() == 0:
        return 1
    half = z_where[..., :2].detach().clamp_min(1e-4).amax() * (1.0 + 1.0 / g)
    return int(math.ceil(float(half) * out_size)) + 2


def _composite_windows(
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    z_where: torch.Tensor,
    z_pres: torch.Tensor,
    z_depth: torch.Tensor,
    n_cells: int,
    out_size: int,
    window: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`composite` on a ``window`` x ``window`` patch around each box.

    Each glimpse is sampled at the canvas pixels of its patch with the pasting's own mapping
    (u = (x - tx) / sx at pixel centres), so its values there equal the full paste's, and it is
    zero elsewhere. The softmax over cells then needs, per canvas pixel, the largest importance
    (a detached shift: the softmax does not depend on it), the sum of exp(importance - top) over
    the patches that cover it, and n_cells x exp(-top) for the cells whose importance there is
    zero (every cell not covering it, and the covering ones' zero pixels, which are subtracted
    back). Sums over patches are scatter-adds into the canvas.
    """
    b, k = z_pres.shape
    s = out_size
    g = rgb.shape[-1]
    sx, sy, tx, ty = z_where.float().unbind(-1)  # (B, K)
    sx, sy = sx.clamp_min(1e-4), sy.clamp_min(1e-4)
    # Patch origins: the first pixel whose centre may fall inside the glimpse's support.
    reach_x = sx.detach() * (1.0 + 1.0 / g)
    reach_y = sy.detach() * (1.0 + 1.0 / g)
    ox = torch.floor((tx.detach() + 1.0 - reach_x) * s / 2.0 - 0.5).long()
    oy = torch.floor((ty.detach() + 1.0 - reach_y) * s / 2.0 - 0.5).long()
    step = torch.arange(window, device=z_where.device)
    px = ox[..., None] + step  # (B, K, W) canvas columns
    py = oy[..., None] + step  # (B, K, W) canvas rows
    # Normalised pixel centres -> glimpse coordinates, as paste_glimpses' inverse mapping.
    u = ((2.0 * px.to(sx.dtype) + 1.0) / s - 1.0 - tx[..., None]) / sx[..., None]
    v = ((2.0 * py.to(sy.dtype) + 1.0) / s - 1.0 - ty[..., None]) / sy[..., None]
    grid = torch.stack(torch.broadcast_tensors(u[..., None, :], v[..., :, None]), dim=-1)  # (B, K, W, W, 2)
    glimpse = torch.cat([rgb, alpha], dim=2).flatten(0, 1)  # (B*K, 4, g, g)
    patch = F.grid_sample(
        glimpse, grid.flatten(0, 1).to(glimpse.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    ).view(b, k, 4, window, window)
    inside = ((px >= 0) & (px < s))[..., None, :] & ((py >= 0) & (py < s))[..., :, None]  # (B, K, W, W)
    # Flat canvas index of every patch pixel; pixels off the canvas go to one extra bin, dropped.
    frame = torch.arange(b, device=z_where.device)[:, None, None, None]
    index = torch.where(inside, frame * s * s + py[..., :, None] * s + px[..., None, :], b * s * s).flatten()
    alpha_hat = patch[:, :, 3] * z_pres[:, :, None, None]
    importance = alpha_hat * 100.0 * torch.sigmoid(-z_depth)[:, :, None, None]
    flat_imp = importance.flatten()
    top = torch.zeros(b * s * s + 1, dtype=flat_imp.dtype, device=flat_imp.device)
    top = top.scatter_reduce(0, index, flat_imp.detach(), reduce="amax", include_self=True)
    top_at = top[index]
    e = torch.exp(flat_imp - top_at)

    def canvas_sum(values: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros((b * s * s + 1,) + values.shape[1:])
        return out.index_add(0, index, values)[:-1]

    empty = torch.exp(-top[:-1])
    denom = canvas_sum(e - torch.exp(-top_at)) + n_cells * empty  # (B*S*S,)
    weighted = (e * alpha_hat.flatten())[:, None]
    colour = patch[:, :, :3].permute(0, 1, 3, 4, 2).reshape(-1, 3)
    fg = canvas_sum(weighted * colour) / denom[:, None]
    alpha_map = canvas_sum(weighted[:, 0]) / denom
    fg = fg.view(b, s, s, 3).permute(0, 3, 1, 2)
    return fg, alpha_map.view(b, 1, s, s)
