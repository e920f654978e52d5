"""SPACE+MOC loss terms, each returned by name so that it can be logged and switched off.

- :func:`elbo_terms`: the negative ELBO split into the reconstruction term (foreground /
  background likelihood mixture) and every KL term against its (annealed) prior.
- :func:`motion_terms`: MOC's motion supervision on z_pres, z_where and the alpha map.
- :func:`continuity_loss`: MOC's object-continuity loss across the T frames of a stack.
- :func:`motion_distance`: v of the dynamic motion -> continuity schedule.
- :func:`total_loss`: the weighted sum
  ``-ELBO + (1 - lambda) * motion_weight * L_M + lambda * area_object_weight * L_OC``.

Every term is a sum over cells / pixels of one frame, averaged over frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moc_envs.model.background import gaussian_kl
from moc_envs.model.space import SpaceOutput
from trainers.detector.config import LossWeights

__all__ = [
    "bernoulli_kl",
    "elbo_terms",
    "motion_terms",
    "continuity_loss",
    "motion_distance",
    "total_loss",
]

_EPS = 1e-5


def bernoulli_kl(prob: torch.Tensor, prior: float) -> torch.Tensor:
    """Elementwise KL(Bernoulli(prob) || Bernoulli(prior))."""
    p = prob.clamp(_EPS, 1 - _EPS)
    q = min(max(prior, 1e-12), 1 - 1e-12)
    return p * (torch.log(p) - torch.log(torch.tensor(q))) + (1 - p) * (
        torch.log1p(-p) - torch.log1p(torch.tensor(-q))
    )


def elbo_terms(
    out: SpaceOutput, pres_prior: float, scale_prior_mean: float, scale_prior_std: float
) -> dict[str, torch.Tensor]:
    """The negative ELBO's terms: ``recon`` (-log p(x)), ``kl_pres``, ``kl_depth``,
    ``kl_where``, ``kl_what``, ``kl_bg``; each a scalar averaged over frames.

    The depth, where and what KLs of a cell are weighted by its z_pres probability (an
    absent cell's latents do not matter), as in SPACE.
    """
    alpha = out.alpha_map[:, 0].clamp(_EPS, 1 - _EPS)
    log_px = torch.logaddexp(out.fg_log_lik + torch.log(alpha), out.bg_log_lik + torch.log1p(-alpha))
    recon = -log_px.flatten(1).sum(1).mean()

    lat = out.lat
    prob = out.pres_prob
    kl_pres = bernoulli_kl(prob, pres_prior).sum(1).mean()
    std_normal = torch.ones_like(lat.depth_std)
    kl_depth = (gaussian_kl(lat.depth_mean, lat.depth_std, torch.zeros_like(std_normal), std_normal).sum(-1) * prob)
    kl_scale = gaussian_kl(
        lat.scale_mean,
        lat.scale_std,
        torch.full_like(lat.scale_mean, scale_prior_mean),
        torch.full_like(lat.scale_std, scale_prior_std),
    ).sum(-1)
    kl_shift = gaussian_kl(
        lat.shift_mean, lat.shift_std, torch.zeros_like(lat.shift_mean), torch.ones_like(lat.shift_std)
    ).sum(-1)
    kl_where = (kl_scale + kl_shift) * prob
    prob_k = torch.gather(prob, 1, out.topk_idx)
    kl_what = gaussian_kl(
        out.what_mean, out.what_std, torch.zeros_like(out.what_mean), torch.ones_like(out.what_std)
    ).sum(-1) * prob_k
    return {
        "recon": recon,
        "kl_pres": kl_pres,
        "kl_depth": kl_depth.sum(1).mean(),
        "kl_where": kl_where.sum(1).mean(),
        "kl_what": kl_what.sum(1).mean(),
        "kl_bg": out.bg_kl.mean(),
    }


def motion_terms(
    out: SpaceOutput,
    motion_pres: torch.Tensor,
    motion_where: torch.Tensor,
    motion_mask: torch.Tensor,
    pres_loss: str = "bce",
) -> dict[str, torch.Tensor]:
    """MOC's motion losses ``motion_pres``, ``motion_where``, ``motion_alpha``.

    ``pres_loss="mse"`` is MOC's sum of squared errors of the z_pres probabilities. Its gradient
    on a logit carries a factor p(1 - p): once the KL and reconstruction terms have pushed
    every cell's probability near 0 (which a short, fast schedule does in a few steps) the motion
    signal vanishes and training stalls with no object found. **Ours**, the default ``"bce"``:
    binary cross-entropy on the logits, whose gradient p - target does not vanish.

    Targets: motion_pres (B, N) in {0, 1}, motion_where (B, N, 4) z_where of the motion box
    of a cell (zeros elsewhere), motion_mask (B, S, S) in [0, 1]. L_where covers the cells
    with a motion object and the cells the model marks present (prob > 0.5) without one,
    where the target is zeros: spurious boxes are penalised.
    """
    prob = out.pres_prob
    if pres_loss == "bce":
        l_pres = F.binary_cross_entropy_with_logits(
            out.lat.pres_logit, motion_pres, reduction="none"
        ).sum(1).mean()
    elif pres_loss == "mse":
        l_pres = ((prob - motion_pres) ** 2).sum(1).mean()
    else:
        raise ValueError(f"pres_loss must be 'bce' or 'mse', got {pres_loss!r}")
    where_mask = torch.maximum(motion_pres, (prob.detach() > 0.5).to(prob.dtype))
    l_where = (((out.where_mean - motion_where) ** 2).sum(-1) * where_mask).sum(1).mean()
    l_alpha = ((out.alpha_map[:, 0] - motion_mask) ** 2).flatten(1).sum(1).mean()
    return {"motion_pres": l_pres, "motion_where": l_where, "motion_alpha": l_alpha}


def continuity_loss(out: SpaceOutput, seq_len: int, grid: int, beta: float = 4.0) -> torch.Tensor:
    """MOC's object-continuity loss over stacks of ``seq_len`` consecutive frames.

    Frames are ordered stack by stack. For each decoded cell present (prob > 0.5) in frame t,
    the present decoded cells of frame t+1 in its 3x3 neighbourhood are its candidates: the
    loss adds the sum of their z_what cosine similarities (contrastive) and subtracts
    ``beta + 1`` times the largest one (the continuing object). Averaged over frame pairs.
    """
    b, k, _ = out.what_mean.shape
    if b % seq_len:
        raise ValueError(f"batch of {b} frames is not a whole number of stacks of {seq_len}")
    s = b // seq_len
    what = torch.nn.functional.normalize(out.what_mean, dim=-1).view(s, seq_len, k, -1)
    idx = out.topk_idx.view(s, seq_len, k)
    present = (torch.gather(out.pres_prob, 1, out.topk_idx) > 0.5).view(s, seq_len, k)
    row, col = idx // grid, idx % grid
    a, n = slice(0, seq_len - 1), slice(1, seq_len)
    sim = torch.einsum("stid,stjd->stij", what[:, a], what[:, n])  # (S, T-1, K, K)
    near = ((row[:, a, :, None] - row[:, n, None, :]).abs() <= 1) & (
        (col[:, a, :, None] - col[:, n, None, :]).abs() <= 1
    )
    valid = near & present[:, a, :, None] & present[:, n, None, :]
    sum_sim = (sim * valid).sum(-1)
    max_sim = sim.masked_fill(~valid, -2.0).amax(-1)
    has = valid.any(-1)
    per_cell = torch.where(has, sum_sim - (beta + 1.0) * max_sim, torch.zeros_like(sum_sim))
    return per_cell.sum(-1).mean()


@torch.no_grad()
def motion_distance(out: SpaceOutput, motion_pres: torch.Tensor, motion_where: torch.Tensor) -> float:
    """How far the predicted objects still are from the motion objects (v before scaling).

    Mean over motion objects of the L1 distance from its z_where to the nearest predicted
    (prob > 0.5) z_where (2.0 when a frame has no prediction), plus the mean over frames of
    the relative over-count max(0, n_pred - n_motion) / max(n_motion, 1).
    """
    pred = out.pres_prob > 0.5
    tgt = motion_pres > 0.5
    dist = torch.cdist(motion_where.float(), out.where_mean.float(), p=1)  # (B, N, N)
    dist = dist.masked_fill(~pred[:, None, :], float("inf")).amin(-1).clamp(max=2.0)
    n_tgt = tgt.sum()
    d = (dist * tgt).sum() / n_tgt if n_tgt > 0 else dist.new_zeros(())
    n_pred = pred.sum(1).float()
    n_mot = tgt.sum(1).float()
    over = ((n_pred - n_mot).clamp_min(0) / n_mot.clamp_min(1)).mean()
    return float(d + over)


def total_loss(
    terms: dict[str, torch.Tensor], weights: LossWeights, lam: float
) -> torch.Tensor:
    """Weighted sum of the named terms; lam moves weight from motion to continuity."""
    total = terms["recon"] * weights.recon
    for name in ("kl_pres", "kl_depth", "kl_where", "kl_what", "kl_bg"):
        total = total + getattr(weights, name) * terms[name]
    if weights.motion and "motion_pres" in terms:
        l_m = (
            weights.motion_pres * terms["motion_pres"]
            + weights.motion_alpha * terms["motion_alpha"]
            + weights.motion_where * terms["motion_where"]
        )
        total = total + (1.0 - lam) * weights.motion * l_m
    if weights.continuity and "continuity" in terms:
        total = total + lam * weights.continuity * terms["continuity"]
    return total
