"""The lean image encoder: the SPACE cell posteriors for a fraction of the compute.

SPACE's image encoder (:class:`moc_envs.model.encoder.ImageEncoder`) spends about 300M
multiply-adds per 128x128 frame, most of them in 128- and 256-channel 3x3 convolutions at
16x16. Atari objects are small, flat-coloured sprites, so far less suffices:

- a stride-4 "patchify" stem (one 4x4 convolution with stride 4) goes straight to 32x32,
  where a plain stride-2 stem would spend most of its time at 64x64;
- depthwise-separable residual blocks (a 3x3 depthwise then a 1x1 pointwise convolution)
  at 32x32 and, after a 2x2 stride-2 convolution, at the 16x16 cell grid;
- no normalisation layers (nothing to fold at inference) and ReLU activations;
- the same 1x1 heads (z_pres, z_depth, z_scale, z_shift: 11 channels) as SPACE's encoder,
  so :class:`~moc_envs.model.latents.CellLatents` and everything after it are unchanged.

About 8M multiply-adds per frame at the default widths. It is trained by distilling a trained
SPACE+MOC encoder's posteriors (``moc-envs distill``).

:class:`LeanGlimpseEncoder` does the same for the glimpse encoder (SPACE's: four convolutions
with group norm, about 1.4M multiply-adds and a dozen kernel launches per object): one hidden
layer on the glimpse's pixels, distilled to reproduce the teacher's z_what, so that the
teacher's z_what classifier keeps working on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moc_envs.model.config import ModelConfig
from moc_envs.model.latents import CellLatents, cell_latents

__all__ = ["LEAN_WIDTHS", "LEAN_GLIMPSE_HIDDEN", "SeparableBlock", "LeanImageEncoder", "LeanGlimpseEncoder"]

LEAN_WIDTHS = (32, 64)
"""Channels at 32x32 and at the 16x16 cell grid."""
LEAN_GLIMPSE_HIDDEN = 256
"""Hidden units of the lean glimpse encoder."""


class SeparableBlock(nn.Module):
    """Residual depthwise-separable block: x + pointwise(relu(depthwise(x))), then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to (B, C, H, W)."""
        return self.act(x + self.pointwise(self.act(self.depthwise(x))))


class LeanImageEncoder(nn.Module):
    """(B, 3, 128, 128) RGB in [0, 1] -> the 11 raw head channels at the 16x16 cell grid."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2 = LEAN_WIDTHS
        self.body = nn.Sequential(
            nn.Conv2d(3, w1, 4, 4),  # 128 -> 32: one pixel patch per position
            nn.ReLU(),
            SeparableBlock(w1),
            nn.Conv2d(w1, w2, 2, 2),  # 32 -> 16: the cell grid
            nn.ReLU(),
            SeparableBlock(w2),
            SeparableBlock(w2),
        )
        self.heads = nn.Conv2d(w2, 11, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The 11 head channels (B, 11, G, G) before any squashing."""
        return self.heads(self.body(x))

    def forward(self, x: torch.Tensor) -> CellLatents:
        """Encode images into the posterior parameters of every cell (as SPACE's encoder does)."""
        return cell_latents(self.raw(x), self.cfg.pres_squash)


class LeanGlimpseEncoder(nn.Module):
    """Glimpse (3, g, g) -> z_what mean and std (z_what_dim each), one hidden layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.z_dim = cfg.z_what_dim
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * cfg.glimpse * cfg.glimpse, LEAN_GLIMPSE_HIDDEN),
            nn.ReLU(),
            nn.Linear(LEAN_GLIMPSE_HIDDEN, 2 * cfg.z_what_dim),
        )

    def forward(self, glimpses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode (M, 3, g, g) glimpses; return (mean, std), each (M, z_what_dim)."""
        h = self.net(glimpses).float()
        return h[:, : self.z_dim], F.softplus(h[:, self.z_dim :]) + 1e-4
