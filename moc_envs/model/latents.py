"""The per-cell posterior record every image encoder produces, SPACE's and the lean one alike.

It lives apart from both encoders so that each can import it without importing the other.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["CellLatents", "cell_latents"]


class CellLatents(NamedTuple):
    """Posterior parameters of every cell, shapes (B, G*G, ...)."""

    pres_logit: torch.Tensor  # (B, N) squashed logits
    depth_mean: torch.Tensor  # (B, N, 1)
    depth_std: torch.Tensor
    scale_mean: torch.Tensor  # (B, N, 2), pre-sigmoid
    scale_std: torch.Tensor
    shift_mean: torch.Tensor  # (B, N, 2), pre-tanh
    shift_std: torch.Tensor


def cell_latents(raw: torch.Tensor, pres_squash: float) -> CellLatents:
    """Posterior parameters of every cell from the 11 raw head channels (B, 11, G, G).

    Shared by every image encoder: channel 0 is z_pres, 1-2 z_depth, 3-6 z_scale, 7-10 z_shift.
    """
    out = raw.flatten(2).transpose(1, 2).float()  # (B, N, 11)
    return CellLatents(
        pres_logit=pres_squash * torch.tanh(out[..., 0]),
        depth_mean=out[..., 1:2],
        depth_std=F.softplus(out[..., 2:3]) + 1e-4,
        scale_mean=out[..., 3:5],
        scale_std=F.softplus(out[..., 5:7]) + 1e-4,
        shift_mean=out[..., 7:9],
        shift_std=F.softplus(out[..., 9:11]) + 1e-4,
    )
