"""One box per object: suppress the duplicates that neighbouring grid cells produce.

SPACE predicts at most one object per grid cell, but an object on a cell border is often
claimed by two neighbouring cells (spec section 7: the references keep both). We keep the
highest-scoring box and drop a lower-scoring box that is a duplicate of a kept one: either
their IoU reaches ``iou_threshold``, or their centres are closer than ``centre_fraction`` times
the half-diagonal of the smaller box (two boxes on the same small object, such as the ball,
barely overlap when one is shifted by a pixel or two, but their centres nearly coincide).
Distinct objects that touch keep their boxes: their centres are about a box apart.

SPACE's boxes are loose: the glimpse holds the object with a margin (a 4x15 Pong paddle gets
about 10x21), so IoU with the true box is poor even when the centre is right.
:func:`refine_boxes` tightens each box from the frame's pixels: in the box (grown by a margin)
the most common colour on the crop's border is the background, the most common other colour
in the box's central half is the object's, and the box becomes the bounding box of the
connected region of that colour that covers most of the central half. A wall or a neighbour
of another colour stays out; when the central half holds only background the box is kept.

A cell can also claim a box far larger than any object of the game (a stretch of empty snow in
Skiing). :func:`size_mask` drops boxes beyond a per-game ``max_box`` (``config.json``), which the
exporter derives from the training data's motion boxes, not from labels; it runs first, so that
an oversized box never suppresses a real one.
Numpy and OpenCV; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SuppressionConfig", "DEFAULT_SUPPRESSION", "suppress_duplicates", "size_mask", "refine_boxes"]


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


def size_mask(boxes: np.ndarray, max_box: tuple[float, float] | None) -> np.ndarray:
    """Boolean (N,): the boxes (N, 4) (x, y, w, h) no wider than ``max_box[0]`` and no taller than ``max_box[1]``.

    ``max_box=None`` keeps every box.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if max_box is None:
        return np.ones(len(boxes), dtype=bool)
    max_w, max_h = max_box
    return (boxes[:, 2] <= max_w) & (boxes[:, 3] <= max_h)


def _packed(rgb: np.ndarray) -> np.ndarray:
    """One int32 per pixel (R << 16 | G << 8 | B), so colours compare as numbers."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def refine_boxes(frame: np.ndarray, boxes: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """Boxes (N, 4) (x, y, w, h) of one frame (H, W, 3) uint8 tightened to their objects' pixels.

    See the module docstring; ``margin`` is the share of the box's width/height added on each
    side before looking for the object (the loose box may cut the object). Returns new boxes.
    """
    import cv2

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3), got shape {frame.shape}")
    out = boxes.copy()
    fh, fw = frame.shape[:2]
    for i, (x, y, w, h) in enumerate(boxes):
        x0, y0 = int(max(0.0, np.floor(x - margin * w))), int(max(0.0, np.floor(y - margin * h)))
        x1, y1 = int(min(fw, np.ceil(x + w + margin * w))), int(min(fh, np.ceil(y + h + margin * h)))
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        crop = _packed(frame[y0:y1, x0:x1])
        border = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
        values, counts = np.unique(border, return_counts=True)
        background = values[counts.argmax()]
        # The central half of the predicted box, in crop coordinates (at least one pixel).
        cx0 = int(np.clip(np.floor(x + w / 4) - x0, 0, x1 - x0 - 1))
        cy0 = int(np.clip(np.floor(y + h / 4) - y0, 0, y1 - y0 - 1))
        cx1 = int(np.clip(np.ceil(x + 3 * w / 4) - x0, cx0 + 1, x1 - x0))
        cy1 = int(np.clip(np.ceil(y + 3 * h / 4) - y0, cy0 + 1, y1 - y0))
        centre = crop[cy0:cy1, cx0:cx1]
        inner = centre[centre != background]
        if not inner.size:
            continue
        values, counts = np.unique(inner, return_counts=True)
        mask = (crop == values[counts.argmax()]).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        votes = np.bincount(labels[cy0:cy1, cx0:cx1].ravel(), minlength=n)
        votes[0] = 0
        k = int(votes.argmax())
        if votes[k] == 0:
            continue
        left, top, width, height = (float(v) for v in stats[k, :4])
        out[i] = (x0 + left, y0 + top, width, height)
    return out
