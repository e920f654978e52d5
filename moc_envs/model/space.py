"""The full SPACE model used for training: inference path + glimpse decoder + background."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from moc_envs.model.background import BackgroundModule
from moc_envs.model.config import ModelConfig
from moc_envs.model.decoder import GlimpseDecoder, composite
from moc_envs.model.encoder import CellLatents, SpaceEncoder
from moc_envs.model.geometry import crop_glimpses_grouped, latents_to_where

__all__ = ["SpaceOutput", "SpaceModel"]


@dataclass
class SpaceOutput:
    """Everything the losses need from one forward pass over B frames (N cells, K decoded)."""

    lat: CellLatents
    pres_prob: torch.Tensor  # (B, N)
    where_mean: torch.Tensor  # (B, N, 4) posterior-mean z_where
    topk_idx: torch.Tensor  # (B, K) decoded cells
    what_mean: torch.Tensor  # (B, K, D)
    what_std: torch.Tensor  # (B, K, D)
    fg: torch.Tensor  # (B, 3, S, S)
    alpha_map: torch.Tensor  # (B, 1, S, S)
    bg_log_lik: torch.Tensor  # (B, S, S)
    bg_kl: torch.Tensor  # (B,)
    bg_image: torch.Tensor  # (B, 3, S, S)
    fg_log_lik: torch.Tensor  # (B, S, S)


class SpaceModel(nn.Module):
    """SPACE foreground + background. ``encoder`` is the exported inference module."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SpaceEncoder(cfg)
        self.glimpse_decoder = GlimpseDecoder(cfg)
        self.background = BackgroundModule(cfg)

    def foreground_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the foreground optimiser (encoder + glimpse decoder)."""
        return [*self.encoder.parameters(), *self.glimpse_decoder.parameters()]

    def forward(self, x: torch.Tensor, sample: bool = True) -> SpaceOutput:
        """Run the model on x (B, 3, S, S) RGB in [0, 1].

        With ``sample`` the latents are reparameterised samples (z_pres a relaxed Bernoulli
        at temperature tau); without it, posterior means and probabilities are used.
        Only the K cells with the highest z_pres logit are cropped, encoded and decoded.
        """
        cfg = self.cfg
        lat = self.encoder.cells(x)
        pres_prob = torch.sigmoid(lat.pres_logit)
        where_mean = latents_to_where(lat.scale_mean, lat.shift_mean, cfg.grid)

        b = x.shape[0]
        k = cfg.top_k
        topk_idx = lat.pres_logit.detach().topk(k, dim=1).indices  # (B, K)

        def pick(t: torch.Tensor) -> torch.Tensor:
            return torch.gather(t, 1, topk_idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

        scale_m, scale_s = pick(lat.scale_mean), pick(lat.scale_std)
        shift_m, shift_s = pick(lat.shift_mean), pick(lat.shift_std)
        depth_m, depth_s = pick(lat.depth_mean), pick(lat.depth_std)
        logit_k = torch.gather(lat.pres_logit, 1, topk_idx)
        if sample:
            z_scale = scale_m + scale_s * torch.randn_like(scale_s)
            z_shift = shift_m + shift_s * torch.randn_like(shift_s)
            z_depth = depth_m + depth_s * torch.randn_like(depth_s)
            # Relaxed Bernoulli (binary Concrete) sample via logistic noise.
            u = torch.rand_like(logit_k).clamp(1e-6, 1 - 1e-6)
            z_pres = torch.sigmoid((logit_k + torch.log(u) - torch.log1p(-u)) / cfg.tau)
        else:
            z_scale, z_shift, z_depth = scale_m, shift_m, depth_m
            z_pres = torch.sigmoid(logit_k)
        # Cell positions of the picked cells: rebuild z_where with the right cell offsets.
        full_scale = torch.zeros_like(lat.scale_mean).scatter(1, topk_idx[..., None].expand(-1, -1, 2), z_scale)
        full_shift = torch.zeros_like(lat.shift_mean).scatter(1, topk_idx[..., None].expand(-1, -1, 2), z_shift)
        z_where = pick(latents_to_where(full_scale, full_shift, cfg.grid))  # (B, K, 4)

        glimpses = crop_glimpses_grouped(x, z_where.to(x.dtype), cfg.glimpse).flatten(0, 1)
        what_mean, what_std = self.encoder.glimpse_encoder(glimpses)
        z_what = what_mean + what_std * torch.randn_like(what_std) if sample else what_mean
        rgb, alpha = self.glimpse_decoder(z_what.to(x.dtype))
        g = cfg.glimpse
        fg, alpha_map = composite(
            rgb.float().view(b, k, 3, g, g),
            alpha.float().view(b, k, 1, g, g),
            z_where,
            z_pres,
            z_depth[..., 0],
            cfg.n_cells,
            cfg.img_size,
        )
        bg = self.background(x, sample=sample)
        sigma = cfg.fg_sigma
        xf = x.float()
        fg_log_lik = (xf - fg).square().sum(dim=1) * (-0.5 / sigma**2) - x.shape[1] * (
            math.log(sigma) + 0.5 * math.log(2 * math.pi)
        )
        return SpaceOutput(
            lat=lat,
            pres_prob=pres_prob,
            where_mean=where_mean,
            topk_idx=topk_idx,
            what_mean=what_mean.view(b, k, -1),
            what_std=what_std.view(b, k, -1),
            fg=fg,
            alpha_map=alpha_map,
            bg_log_lik=bg["log_lik"],
            bg_kl=bg["kl"],
            bg_image=bg["image"],
            fg_log_lik=fg_log_lik,
        )
