"""The SPACE glimpse decoder and foreground compositing (training only)."""

from __future__ import annotations

import torch
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
    """
    b, k = z_pres.shape
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
