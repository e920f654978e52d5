"""GENESIS-style SPACE background: K stick-breaking masks and component VAEs (training only).

Spec section 3. Ours, for speed on CPU: masks are decoded at 64x64 and component colours at
32x32, then up-sampled bilinearly to 128x128 (Atari backgrounds are flat colour regions); the
component encoder reads the image encoder's 16x16 feature map with the pooled mask instead of
re-encoding the full-resolution image once per component; the decoders use no GroupNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from moc_envs.model.config import ModelConfig
from moc_envs.model.encoder import conv_block

__all__ = ["BackgroundModule", "gaussian_kl"]

_HIDDEN = 128


def gaussian_kl(
    mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor
) -> torch.Tensor:
    """Elementwise KL(N(mean_q, std_q) || N(mean_p, std_p))."""
    var_ratio = (std_q / std_p) ** 2
    t1 = ((mean_q - mean_p) / std_p) ** 2
    return 0.5 * (var_ratio + t1 - 1.0 - torch.log(var_ratio))


def _decoder(z_dim: int, c0: int, base: int, chans: tuple[int, ...], c_out: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(z_dim, c0 * base * base), nn.CELU(), nn.Unflatten(1, (c0, base, base))]
    c_in = c0
    for c in chans:
        layers += [nn.Conv2d(c_in, 4 * c, 3, 1, 1), nn.PixelShuffle(2), nn.CELU()]
        c_in = c
    layers.append(nn.Conv2d(c_in, c_out, 1))
    return nn.Sequential(*layers)


class BackgroundModule(nn.Module):
    """Encode an image into K masks and K component colours with learned autoregressive priors."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        zd = cfg.bg_z_dim
        self.image_features = nn.Sequential(
            conv_block(3, 32, 4, 2, 1, 8),  # 64
            conv_block(32, 32, 4, 2, 1, 8),  # 32
            conv_block(32, 64, 4, 2, 1, 8),  # 16
        )
        self.image_head = nn.Sequential(
            conv_block(64, 64, 4, 2, 1, 8),  # 8
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 256),
            nn.CELU(),
        )
        self.mask_rnn = nn.LSTMCell(256 + zd, _HIDDEN)
        self.mask_post = nn.Linear(_HIDDEN, 2 * zd)
        self.mask_prior_rnn = nn.LSTMCell(zd, _HIDDEN)
        self.mask_prior = nn.Linear(_HIDDEN, 2 * zd)
        self.mask_decoder = _decoder(zd, 32, 8, (32, 16, 8), 1)  # 8 -> 64
        self.comp_encoder = nn.Sequential(
            conv_block(65, 64, 4, 2, 1, 8),  # 16 -> 8
            conv_block(64, 64, 4, 2, 1, 8),  # 4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 2 * zd),
        )
        self.comp_prior = nn.Sequential(nn.Linear(zd, _HIDDEN), nn.CELU(), nn.Linear(_HIDDEN, 2 * zd))
        self.comp_decoder = _decoder(zd, 32, 4, (32, 16, 8), 3)  # 4 -> 32

    @staticmethod
    def _split(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = h.float().chunk(2, dim=-1)
        return mean, F.softplus(raw) + 1e-4

    def forward(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """Background of images x (B, 3, S, S).

        Returns ``log_lik`` (B, S, S) = logsumexp_k [log N(x; comp_k, bg_sigma) + log mask_k]
        summed over channels, ``kl`` (B,) of the mask and component latents against their
        learned priors, ``image`` (B, 3, S, S) and ``masks`` (B, K, 1, S, S).
        """
        b, _, s, _ = x.shape
        k_total = self.cfg.bg_components
        zd = self.cfg.bg_z_dim
        fmap = self.image_features(x)  # (B, 64, 16, 16)
        feat = self.image_head(fmap)
        h = c = feat.new_zeros(b, _HIDDEN)
        hp = cp = feat.new_zeros(b, _HIDDEN)
        z_prev = feat.new_zeros(b, zd)
        zs, kl = [], feat.new_zeros(b)
        for _ in range(k_total):
            h, c = self.mask_rnn(torch.cat([feat, z_prev], dim=1), (h, c))
            mean_q, std_q = self._split(self.mask_post(h))
            hp, cp = self.mask_prior_rnn(z_prev, (hp, cp))
            mean_p, std_p = self._split(self.mask_prior(hp))
            z = mean_q + std_q * torch.randn_like(std_q) if sample else mean_q
            kl = kl + gaussian_kl(mean_q, std_q, mean_p, std_p).sum(-1)
            zs.append(z)
            z_prev = z
        z_mask = torch.stack(zs, dim=1)  # (B, K, zd)
        logits = self.mask_decoder(z_mask.flatten(0, 1).to(feat.dtype))
        logits = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)
        logits = logits.view(b, k_total, 1, s, s).float()
        # Stick breaking in log space: mask_k = sigmoid(l_k) * prod_{j<k} (1 - sigmoid(l_j)).
        log_masks, log_rest = [], torch.zeros_like(logits[:, 0])
        for k in range(k_total - 1):
            log_masks.append(log_rest + F.logsigmoid(logits[:, k]))
            log_rest = log_rest + F.logsigmoid(-logits[:, k])
        log_masks.append(log_rest)
        log_m = torch.stack(log_masks, dim=1)  # (B, K, 1, S, S)

        m_small = F.adaptive_avg_pool2d(log_m.exp().flatten(0, 1), fmap.shape[-1])
        comp_in = torch.cat([fmap.repeat_interleave(k_total, dim=0), m_small.to(fmap.dtype)], dim=1)
        mean_q, std_q = self._split(self.comp_encoder(comp_in))
        mean_p, std_p = self._split(self.comp_prior(z_mask.flatten(0, 1).to(feat.dtype)))
        z_comp = mean_q + std_q * torch.randn_like(std_q) if sample else mean_q
        kl = kl + gaussian_kl(mean_q, std_q, mean_p, std_p).sum(-1).view(b, k_total).sum(1)
        comp = torch.sigmoid(self.comp_decoder(z_comp.to(feat.dtype)))
        comp = F.interpolate(comp, size=(s, s), mode="bilinear", align_corners=False)
        comp = comp.view(b, k_total, 3, s, s).float()

        sigma = self.cfg.bg_sigma
        sq = (x.float().unsqueeze(1) - comp).square().sum(dim=2)  # (B, K, S, S)
        c = x.shape[1] * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
        log_lik = torch.logsumexp(log_m[:, :, 0] - sq * (0.5 / sigma**2), dim=1) - c
        image = (log_m.exp() * comp).sum(dim=1)
        return {"log_lik": log_lik, "kl": kl, "image": image, "masks": log_m.exp()}
