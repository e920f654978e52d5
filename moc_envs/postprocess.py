"""One box per object: suppress the duplicates that neighbouring grid cells produce.

SPACE predicts at most one object per grid cell, but an object on a cell border is often
claimed by two neighbouring cells (spec section 7: the references keep both). We keep the
highest-scoring box and drop a lower-scoring box that is a duplicate of a kept one: either
their IoU reaches ``iou_threshold``, or their centres are closer than ``centre_fraction`` times
the half-diagonal of the smaller box (two boxes on the same small object, such as the ball,
barely overlap when one is shifted by a pixel or two, but their centres nearly coincide).
Distinct objects that touch keep their boxes: their centres are about a box apart.
Numpy only; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SuppressionConfig", "DEFAULT_SUPPRESSION", "suppress_duplicates"]


@dataclass(frozen=True)
class SuppressionConfig:
    """Thresholds of duplicate suppression (see the module docstring)."""

    iou_threshold: float = 0.5
    """Boxes with at least this IoU are one object."""
    centre_fraction: float = 0.5
    """Boxes whose centres are closer than this fraction of the smaller half-diagonal are one object."""

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.centre_fraction < 0.0:
            raise ValueError(f"centre_fraction must be >= 0, got {self.centre_fraction}")


DEFAULT_SUPPRESSION = SuppressionConfig()
"""The thresholds the env's detector uses."""


def suppress_duplicates(
    boxes: np.ndarray, scores: np.ndarray, config: SuppressionConfig | None = None
) -> np.ndarray:
    """Indices of the boxes to keep, highest score first.

    ``boxes`` (N, 4) are (x, y, w, h); ``scores`` (N,). Greedy: walk the boxes by descending
    score and keep each one that is not a duplicate of a box already kept.
    """
    cfg = config or SuppressionConfig()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"got {len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) < 2:
        return np.arange(len(boxes))
    x1, y1, w, h = boxes.T
    x2, y2 = x1 + w, y1 + h
    area = w * h
    cx, cy = x1 + w / 2, y1 + h / 2
    half_diag = np.hypot(w, h) / 2
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.asarray(keep)
            iw = np.clip(np.minimum(x2[i], x2[k]) - np.maximum(x1[i], x1[k]), 0, None)
            ih = np.clip(np.minimum(y2[i], y2[k]) - np.maximum(y1[i], y1[k]), 0, None)
            inter = iw * ih
            iou = inter / np.maximum(area[i] + area[k] - inter, 1e-12)
            dist = np.hypot(cx[i] - cx[k], cy[i] - cy[k])
            near = dist < cfg.centre_fraction * np.minimum(half_diag[i], half_diag[k])
            if (iou >= cfg.iou_threshold).any() or near.any():
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=int)
