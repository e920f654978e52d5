"""Box-level detection metrics: AP over IoU thresholds, P/R/F1, duplicates, counting.

Everything works on per-frame arrays of boxes ``(x, y, w, h)`` in 210x160 frame pixels,
top-left corner, as :mod:`trainers.evaluate.metrics` does (and agrees with its counts; a test checks).

Definitions (spec section 7, plus ours where marked):

- **AP** at an IoU threshold: predictions of all frames sorted by score (descending), each
  greedily matched to the unmatched ground-truth box of its frame with the highest IoU at or
  above the threshold; precision/recall along that ranking, 11-point interpolated
  (mean over recall levels 0, 0.1, ..., 1 of the best precision at that recall or more).
  Reported for the 9 thresholds 0.1..0.9 and their mean.
- **P/R/F1** under a one-to-one (Hungarian) matching with three criteria: ``iou`` (IoU >= 0.5),
  ``relative`` (``max(0, 1 - centre distance / GT diagonal) > 0.5``, the references'
  criterion) and ``ocatari`` (centres closer than 5 px, OCAtari's own metric).
- **Ignored boxes** (ours): objects that are in the frame but not scored, such as HUD digits,
  or still objects when only moving ones are scored. A prediction that matches no scored object
  but sits on an ignored one (under the same criterion) is neither a true nor a false positive;
  for AP it is dropped from the ranking, for counting it is not counted.
- **Duplicate rate** (ours): each prediction is assigned to the nearest object (scored or
  ignored) whose ``relative`` criterion it meets; the duplicate rate is the fraction of scored objects that
  were assigned two predictions or more. ``extra_per_object`` is the number of assigned
  predictions beyond the first, per scored object.
- **Counting accuracy**: the fraction of frames whose number of (not ignored) predictions equals
  the number of scored objects.
- **Per-category recall** under the ``relative`` criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from trainers.evaluate.metrics import Counts, centre_close

__all__ = [
    "AP_IOU_THRESHOLDS",
    "MatchCriterion",
    "FrameSet",
    "iou_matrix",
    "close_matrix",
    "match_pairs",
    "average_precision",
    "duplicate_stats",
    "detection_report",
]

AP_IOU_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
"""IoU thresholds of the AP table: 0.1, 0.2, ..., 0.9."""

MatchCriterion = Literal["iou", "relative", "ocatari"]
CRITERIA: tuple[MatchCriterion, ...] = ("relative", "ocatari", "iou")


@dataclass
class FrameSet:
    """Predictions and ground truth of many frames, one list entry per frame.

    ``boxes[i]`` (P, 4) and ``scores[i]`` (P,) are frame i's predictions; ``gt[i]`` (G, 4) and
    ``gt_cats[i]`` (G,) its scored objects; ``ignore[i]`` (H, 4) its unscored objects.
    """

    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    gt: list[np.ndarray]
    gt_cats: list[np.ndarray]
    ignore: list[np.ndarray]

    def __post_init__(self) -> None:
        n = len(self.boxes)
        sizes = {len(self.scores), len(self.gt), len(self.gt_cats), len(self.ignore)}
        if sizes != {n}:
            raise ValueError(
                f"FrameSet lists must have one entry per frame; got {n} box, {len(self.scores)} "
                f"score, {len(self.gt)} gt, {len(self.gt_cats)} category, {len(self.ignore)} ignore entries"
            )

    def __len__(self) -> int:
        return len(self.boxes)


def _as_boxes(b: np.ndarray) -> np.ndarray:
    return np.asarray(b, dtype=np.float64).reshape(-1, 4)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes: a (P, 4), b (G, 4) as (x, y, w, h) -> (P, G)."""
    a, b = _as_boxes(a), _as_boxes(b)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def close_matrix(
    pred: np.ndarray, gt: np.ndarray, criterion: MatchCriterion, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Matching cost (P, G) (lower is better) and the boolean 'is a match' matrix."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    if criterion == "iou":
        iou = iou_matrix(pred, gt)
        return 1.0 - iou, iou >= iou_threshold
    if criterion in ("ocatari", "relative"):
        return centre_close(pred, gt, criterion)
    raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")


def match_pairs(
    pred: np.ndarray, gt: np.ndarray, criterion: MatchCriterion = "relative"
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one Hungarian matching of one frame; returns matched (pred_idx, gt_idx)."""
    pred, gt = _as_boxes(pred), _as_boxes(gt)
    if not len(pred) or not len(gt):
        return np.zeros(0, int), np.zeros(0, int)
    cost, ok = close_matrix(pred, gt, criterion)
    rows, cols = linear_sum_assignment(np.where(ok, cost, 1e6))
    keep = ok[rows, cols]
    return rows[keep], cols[keep]


def _on_ignored(pred: np.ndarray, ignore: np.ndarray, criterion: MatchCriterion) -> np.ndarray:
    """Which predictions sit on an ignored box (P,) bool."""
    ignore = _as_boxes(ignore)
    if not len(pred) or not len(ignore):
        return np.zeros(len(pred), bool)
    return close_matrix(pred, ignore, criterion)[1].any(axis=1)


def _interp11(precision: np.ndarray, recall: np.ndarray) -> float:
    ap = 0.0
    for r in np.linspace(0.0, 1.0, 11):
        above = precision[recall >= r - 1e-12]
        ap += float(above.max()) if above.size else 0.0
    return ap / 11.0


def average_precision(
    fs: FrameSet, iou_thresholds: Sequence[float] = AP_IOU_THRESHOLDS
) -> dict[str, Any]:
    """11-point AP per IoU threshold and their mean (see the module docstring)."""
    n_gt = sum(len(g) for g in fs.gt)
    frame_of = np.concatenate([np.full(len(b), i) for i, b in enumerate(fs.boxes)] or [np.zeros(0)]).astype(int)
    scores = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in fs.scores] or [np.zeros(0)])
    local = np.concatenate([np.arange(len(b)) for b in fs.boxes] or [np.zeros(0)]).astype(int)
    order = np.argsort(-scores, kind="stable")
    ious = [iou_matrix(b, g) for b, g in zip(fs.boxes, fs.gt, strict=True)]
    ign = [iou_matrix(b, h) for b, h in zip(fs.boxes, fs.ignore, strict=True)]
    per: dict[str, float] = {}
    for thr in iou_thresholds:
        used = [np.zeros(len(g), bool) for g in fs.gt]
        tp, fp = [], []
        for k in order:
            f, j = frame_of[k], local[k]
            row = np.where(used[f], -1.0, ious[f][j]) if len(fs.gt[f]) else np.zeros(0)
            if row.size and row.max() >= thr:
                used[f][int(row.argmax())] = True
                tp.append(1)
                fp.append(0)
            elif ign[f].shape[1] and ign[f][j].max() >= thr:
                continue  # a box on an unscored object: not in the ranking
            else:
                tp.append(0)
                fp.append(1)
        if n_gt == 0:
            per[f"{thr:.1f}"] = float(not tp or not any(fp))
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / n_gt if len(ctp) else np.zeros(0)
        precision = ctp / np.maximum(ctp + cfp, 1) if len(ctp) else np.zeros(0)
        per[f"{thr:.1f}"] = _interp11(precision, recall)
    return {"per_iou": per, "mean": float(np.mean(list(per.values()))) if per else 0.0}


def duplicate_stats(fs: FrameSet) -> dict[str, float | int]:
    """Duplicate rate and extra predictions per object (``relative`` criterion)."""
    objects = dup = extra = 0
    for b, g, h in zip(fs.boxes, fs.gt, fs.ignore, strict=True):
        g = _as_boxes(g)
        objects += len(g)
        if not len(b) or not len(g):
            continue
        # Ignored objects take part in the assignment, so that a box on a still object next
        # to a moving one is not counted as the moving one's duplicate.
        cost, ok = close_matrix(b, np.vstack([g, _as_boxes(h)]), "relative")
        cost = np.where(ok, cost, np.inf)
        has = ok.any(axis=1)
        owner = cost.argmin(axis=1)[has]
        per_obj = np.bincount(owner, minlength=len(ok[0]))[: len(g)]
        dup += int((per_obj >= 2).sum())
        extra += int(np.clip(per_obj - 1, 0, None).sum())
    return {
        "duplicate_rate": dup / objects if objects else 0.0,
        "extra_per_object": extra / objects if objects else 0.0,
        "objects_with_duplicates": dup,
        "objects": objects,
    }


def _prf(fs: FrameSet, criterion: MatchCriterion) -> tuple[Counts, dict[str, list[int]]]:
    c = Counts()
    per_cat: dict[str, list[int]] = {}
    for b, g, cats, h in zip(fs.boxes, fs.gt, fs.gt_cats, fs.ignore, strict=True):
        b = _as_boxes(b)
        pi, gi = match_pairs(b, g, criterion)
        c.tp += len(pi)
        c.fn += len(_as_boxes(g)) - len(pi)
        rest = np.ones(len(b), bool)
        rest[pi] = False
        skip = rest & _on_ignored(b, h, criterion)
        c.hud_predictions += int(skip.sum())
        c.fp += int((rest & ~skip).sum())
        hit = np.zeros(len(cats), bool)
        hit[gi] = True
        for cat, ok in zip(np.asarray(cats).tolist(), hit.tolist(), strict=True):
            cur = per_cat.setdefault(str(cat), [0, 0])
            cur[0] += 1
            cur[1] += int(ok)
    return c, per_cat


def _counting(fs: FrameSet) -> float:
    if not len(fs):
        return 1.0
    right = 0
    for b, g, h in zip(fs.boxes, fs.gt, fs.ignore, strict=True):
        b = _as_boxes(b)
        # Predictions on an unscored object are set aside, as in P/R (relative criterion).
        pi, _ = match_pairs(b, g, "relative")
        rest = np.ones(len(b), bool)
        rest[pi] = False
        n = len(b) - int((rest & _on_ignored(b, h, "relative")).sum())
        right += int(n == len(_as_boxes(g)))
    return right / len(fs)


def detection_report(fs: FrameSet) -> dict[str, Any]:
    """All box metrics of one frame set: AP, P/R/F1 per criterion, duplicates, counting, recall per category."""
    out: dict[str, Any] = {"frames": len(fs), "objects": sum(len(_as_boxes(g)) for g in fs.gt)}
    out["predictions"] = sum(len(_as_boxes(b)) for b in fs.boxes)
    out["ap"] = average_precision(fs)
    per_cat: dict[str, list[int]] = {}
    for crit in CRITERIA:
        c, pc = _prf(fs, crit)
        d = c.as_dict()
        d["ignored_predictions"] = d.pop("hud_predictions")
        d.pop("duplicates")
        out[crit] = d
        if crit == "relative":
            per_cat = pc
    out["duplicates"] = duplicate_stats(fs)
    out["count_accuracy"] = _counting(fs)
    out["recall_by_category"] = {
        cat: {"objects": n, "recall": hit / n if n else 1.0} for cat, (n, hit) in sorted(per_cat.items())
    }
    return out
