"""The SPACE glimpse decoder and foreground compositing (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moc_envs.model.config import ModelConfig

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

    A pasted glimpse is zero outside its box, so each glimpse is pasted on a window around its
    box only, the windows sized by powers of two (:data:`WINDOWS`) and the whole canvas for a
    box larger than the largest; the softmax is then gathered per canvas pixel with
    scatter-adds. The values are those of pasting every glimpse on the whole canvas (to float
    rounding); a game of 41 object slots decodes 82 glimpses a frame, and pasting them all on
    the whole canvas made this function most of a training step.
    """
    b, k = z_pres.shape
    s, g = out_size, rgb.shape[-1]
    device = z_where.device
    sx, sy, tx, ty = z_where.float().unbind(-1)
    sx, sy = sx.clamp_min(1e-4), sy.clamp_min(1e-4)
    # Bilinear sampling with zero padding reaches (1 + 1/g) box half-sizes from the centre; the
    # window's origin is rounded down to a pixel, hence two pixels more.
    reach_x, reach_y = sx.detach() * (1.0 + 1.0 / g), sy.detach() * (1.0 + 1.0 / g)
    need = (torch.maximum(reach_x, reach_y) * s).ceil().long() + 2  # (B, K)
    glimpse = torch.cat([rgb, alpha], dim=2).flatten(0, 1)  # (B*K, 4, g, g)
    weight = torch.sigmoid(-z_depth).flatten()  # (B*K,)
    pres = z_pres.flatten()
    frame_of = torch.arange(b, device=device).repeat_interleave(k)
    parts: list[tuple[torch.Tensor, ...]] = []  # per window pixel: canvas index, alpha_hat, rgb, glimpse
    flat_need = need.flatten()
    lower = 0
    for window in (*WINDOWS, None):
        upper = window if window is not None and window < s else None
        chosen = flat_need > lower if upper is None else (flat_need > lower) & (flat_need <= upper)
        rows = torch.nonzero(chosen).flatten()
        lower = upper or 0
        if len(rows):
            parts.append(
                _paste_windows(
                    glimpse, rows, (sx.flatten(), sy.flatten(), tx.flatten(), ty.flatten()),
                    (reach_x.flatten(), reach_y.flatten()), frame_of, pres, s, upper, b * s * s,
                )
            )  # fmt: skip
        if upper is None:
            break
    index = torch.cat([p[0] for p in parts])
    alpha_hat = torch.cat([p[1] for p in parts])
    colour = torch.cat([p[2] for p in parts])
    owner = torch.cat([p[3] for p in parts])
    importance = alpha_hat * 100.0 * weight[owner]
    bins = b * s * s + 1  # the last bin takes the window pixels off the canvas
    # The softmax does not depend on the shift, so it is taken without gradient; with the
    # undecoded cells' zero logits, it is at least 0.
    top = torch.zeros(bins, dtype=importance.dtype, device=device)
    top = top.scatter_reduce(0, index, importance.detach(), reduce="amax", include_self=True)
    top_at = top[index]
    e = torch.exp(importance - top_at)

    def canvas_sum(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros((bins,) + values.shape[1:]).index_add(0, index, values)[:-1]

    # Every cell whose importance at a pixel is zero adds exp(-top) there: all n_cells of them,
    # less the window pixels that carry a value (their own term replaces it).
    denom = canvas_sum(e - torch.exp(-top_at)) + n_cells * torch.exp(-top[:-1])
    weighted = e * alpha_hat
    fg = canvas_sum(weighted[:, None] * colour) / denom[:, None]
    alpha_map = canvas_sum(weighted) / denom
    return fg.view(b, s, s, 3).permute(0, 3, 1, 2), alpha_map.view(b, 1, s, s)


WINDOWS = (8, 16, 32, 64)
"""Side in pixels of the windows glimpses are pasted on, by the size their box needs."""


def _paste_windows(
    glimpse: torch.Tensor,
    rows: torch.Tensor,
    where: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    reach: tuple[torch.Tensor, torch.Tensor],
    frame: torch.Tensor,
    pres: torch.Tensor,
    s: int,
    window: int | None,
    off: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Glimpses ``rows`` of (B*K, 4, g, g) pasted on a ``window`` x ``window`` patch each (the
    whole canvas when None). Per patch pixel: its flat canvas index (``off``, one bin past the
    B canvases, when off its canvas), alpha x z_pres, RGB (P, 3) and the glimpse's row.

    ``where``: sx, sy, tx, ty (B*K,) (scales at least 1e-4); ``reach``: each box's support
    half-size in x and y. Each glimpse is sampled at its patch's pixel centres with the
    pasting's own mapping (u = (x - tx) / sx in the [-1, 1] frame), so the values equal the
    whole-canvas paste's.
    """
    sx, sy, tx, ty = (t[rows] for t in where)
    m = len(rows)
    side = s if window is None else window
    step = torch.arange(side, device=glimpse.device)
    if window is None:
        px = py = step.expand(m, side)
    else:
        px = torch.floor((tx.detach() + 1.0 - reach[0][rows]) * s / 2.0 - 0.5).long()[:, None] + step
        py = torch.floor((ty.detach() + 1.0 - reach[1][rows]) * s / 2.0 - 0.5).long()[:, None] + step
    u = ((2.0 * px.to(sx.dtype) + 1.0) / s - 1.0 - tx[:, None]) / sx[:, None]
    v = ((2.0 * py.to(sy.dtype) + 1.0) / s - 1.0 - ty[:, None]) / sy[:, None]
    grid = torch.stack(torch.broadcast_tensors(u[:, None, :], v[:, :, None]), dim=-1)  # (M, W, W, 2)
    src = glimpse[rows]
    patch = F.grid_sample(src, grid.to(src.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = ((px >= 0) & (px < s))[:, None, :] & ((py >= 0) & (py < s))[:, :, None]
    index = torch.where(inside, frame[rows, None, None] * s * s + py[:, :, None] * s + px[:, None, :], off)
    alpha_hat = patch[:, 3] * pres[rows, None, None]
    colour = patch[:, :3].permute(0, 2, 3, 1).reshape(-1, 3)
    return index.flatten(), alpha_hat.flatten(), colour, rows.repeat_interleave(side * side)
