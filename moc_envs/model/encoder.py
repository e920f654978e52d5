"""The SPACE inference path: image encoder, z_pres/z_depth/z_where heads, glimpse encoder.

This is all the env needs at run time (spec section 2); it carries no decoder and no
background, so the exported weights stay small.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from moc_envs.model.config import ModelConfig
from moc_envs.model.geometry import crop_present_glimpses, latents_to_where
from moc_envs.model.latents import CellLatents, cell_latents

__all__ = [
    "CellLatents",
    "cell_latents",
    "ImageEncoder",
    "GlimpseEncoder",
    "SpaceEncoder",
    "conv_block",
    "make_image_encoder",
    "make_glimpse_encoder",
]


def conv_block(c_in: int, c_out: int, k: int, s: int, p: int, groups: int) -> nn.Sequential:
    """Conv -> CELU -> GroupNorm, the SPACE building block."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, p), nn.CELU(), nn.GroupNorm(groups, c_out))


class ImageEncoder(nn.Module):
    """Backbone + lateral branch + 1x1 heads: (B, 3, 128, 128) -> per-cell posteriors."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = nn.Sequential(
            conv_block(3, 16, 4, 2, 1, 4),
            conv_block(16, 32, 4, 2, 1, 8),
            conv_block(32, 64, 4, 2, 1, 8),
            conv_block(64, 128, 3, 1, 1, 16),
            conv_block(128, 256, 3, 1, 1, 32),
            conv_block(256, 128, 1, 1, 0, 16),
        )
        self.lateral = nn.Sequential(
            conv_block(128, 128, 3, 1, 1, 16),
            conv_block(128, 128, 3, 1, 1, 16),
        )
        self.merge = conv_block(256, 128, 3, 1, 1, 16)
        # One 1x1 conv for every head: pres 1, depth 2, scale 4, shift 4 channels.
        self.heads = nn.Conv2d(128, 11, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The 11 head channels (B, 11, G, G) before any squashing."""
        feat = self.backbone(x)
        feat = self.merge(torch.cat([feat, self.lateral(feat)], dim=1))
        return self.heads(feat)

    def forward(self, x: torch.Tensor) -> CellLatents:
        """Encode images into the posterior parameters of every cell."""
        return cell_latents(self.raw(x), self.cfg.pres_squash)


def make_image_encoder(cfg: ModelConfig) -> nn.Module:
    """The image encoder ``cfg.image_encoder`` names: ``"space"`` (SPACE's) or ``"lean"``."""
    if cfg.image_encoder == "lean":
        from moc_envs.model.lean import LeanImageEncoder

        return LeanImageEncoder(cfg)
    return ImageEncoder(cfg)


class GlimpseEncoder(nn.Module):
    """Glimpse (3, g, g) -> z_what mean and std (z_what_dim each)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.glimpse == 32:
            layers = [
                conv_block(3, 16, 3, 1, 1, 4),
                conv_block(16, 32, 4, 2, 1, 8),  # 16
                conv_block(32, 32, 3, 1, 1, 8),
                conv_block(32, 64, 4, 2, 1, 8),  # 8
                conv_block(64, 128, 4, 2, 1, 16),  # 4
                conv_block(128, 256, 4, 1, 0, 32),  # 1
            ]
        else:
            layers = [
                conv_block(3, 16, 3, 1, 1, 4),
                conv_block(16, 32, 4, 2, 1, 8),  # 8
                conv_block(32, 64, 4, 2, 1, 8),  # 4
                conv_block(64, 256, 4, 1, 0, 32),  # 1
            ]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(256, 2 * cfg.z_what_dim)
        self.z_dim = cfg.z_what_dim

    def forward(self, glimpses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode (M, 3, g, g) glimpses; return (mean, std), each (M, z_what_dim)."""
        h = self.out(self.net(glimpses).flatten(1)).float()
        return h[:, : self.z_dim], F.softplus(h[:, self.z_dim :]) + 1e-4


def make_glimpse_encoder(cfg: ModelConfig) -> nn.Module:
    """The glimpse encoder ``cfg.glimpse_encoder`` names: ``"space"`` (SPACE's) or ``"lean"``."""
    if cfg.glimpse_encoder == "lean":
        from moc_envs.model.lean import LeanGlimpseEncoder

        return LeanGlimpseEncoder(cfg)
    return GlimpseEncoder(cfg)


class SpaceEncoder(nn.Module):
    """The inference module the env loads: image encoder (SPACE's or lean) + glimpse encoder."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_encoder = make_image_encoder(cfg)
        self.glimpse_encoder = make_glimpse_encoder(cfg)

    def cells(self, x: torch.Tensor) -> CellLatents:
        """Per-cell posteriors of images x (B, 3, 128, 128) RGB in [0, 1]."""
        return cell_latents(self.image_encoder.raw(x), self.cfg.pres_squash)

    def mean_where(self, lat: CellLatents) -> torch.Tensor:
        """Posterior-mean z_where (B, N, 4) of every cell."""
        return latents_to_where(lat.scale_mean, lat.shift_mean, self.cfg.grid)

    @torch.no_grad()
    def infer(
        self,
        x: torch.Tensor,
        threshold: float = 0.5,
        image_raw: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior means of the present cells of a batch.

        ``image_raw`` replaces ``self.image_encoder.raw`` (a frozen graph of it, see
        :mod:`moc_envs.model.runtime`).

        Returns ``(frame_index, pres_prob, z_where, z_what)`` over the M cells whose z_pres
        probability exceeds ``threshold``: shapes (M,), (M,), (M, 4), (M, z_what_dim).
        """
        # Only the means and z_pres: the standard deviations are for training.
        raw = (image_raw or self.image_encoder.raw)(x).flatten(2).transpose(1, 2).float()  # (B, N, 11)
        prob = torch.sigmoid(self.cfg.pres_squash * torch.tanh(raw[..., 0]))
        where = latents_to_where(raw[..., 3:5], raw[..., 7:9], self.cfg.grid)
        b_idx, c_idx = torch.nonzero(prob > threshold, as_tuple=True)
        sel_where = where[b_idx, c_idx]
        if b_idx.numel():
            glimpses = crop_present_glimpses(x, b_idx, sel_where.to(x.dtype), self.cfg.glimpse)
            z_what, _ = self.glimpse_encoder(glimpses)
        else:
            z_what = where.new_zeros((0, self.cfg.z_what_dim))
        return b_idx, prob[b_idx, c_idx], sel_where, z_what
