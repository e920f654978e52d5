"""Scores of what a user gets: category-aware P/R/F1, per category, and spurious singleton slots.

Given per-frame predictions (boxes and category names) and the truth of
:mod:`trainers.evaluate.held_out`:

- **F1** with category-aware one-to-one (Hungarian) matching: a prediction counts only when it
  names the truth object's category and meets the criterion; ``relative`` is the references'
  (``1 - centre distance / truth diagonal > 0.5``), ``ocatari`` OCAtari's strict one (centres
  closer than 5 px). Every prediction of a promised category counts, a box on the HUD too: it
  fills an observation slot.
- **Category accuracy**: of the class-agnostic matched pairs (relative criterion), the share
  whose category is right.
- **Spurious singleton slots**: the predictions run through the env's own
  :class:`~moc_envs.perception.tracking.SlotTracker` (restarted at each window), and for every
  category with a single observation slot (Pong's Player, SpaceInvaders' Player ...) the frames
  where that slot shows a box no truth object of its category matches. The share of frames with
  at least one is what silently corrupts observations and labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.perception.tracking import SlotTracker
from trainers.evaluate.detection_metrics import MatchCriterion, close_matrix, match_pairs

__all__ = ["FramePredictions", "score_objects", "frame_errors", "f1_of"]

FramePredictions = tuple[np.ndarray, Sequence[str]]
"""One frame's predictions: boxes (P, 4) x, y, w, h and their category names."""


def f1_of(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 of counts (1.0 where nothing was there to find or claim)."""
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _by_category(boxes: np.ndarray, cats: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(cats):
        out.setdefault(c, []).append(i)
    return {c: boxes[np.array(i)] for c, i in out.items()}


def _frame_counts(
    pred: FramePredictions, truth: FramePredictions, criterion: MatchCriterion
) -> dict[str, list[int]]:
    """Per category [tp, fp, fn] of one frame, category-aware."""
    p, g = _by_category(np.asarray(pred[0]).reshape(-1, 4), pred[1]), _by_category(np.asarray(truth[0]).reshape(-1, 4), truth[1])
    out: dict[str, list[int]] = {}
    for c in set(p) | set(g):
        pc, gc = p.get(c, np.zeros((0, 4))), g.get(c, np.zeros((0, 4)))
        r, _ = match_pairs(pc, gc, criterion)
        out[c] = [len(r), len(pc) - len(r), len(gc) - len(r)]
    return out


def frame_errors(pred: FramePredictions, truth: FramePredictions) -> int:
    """False positives plus misses of one frame (relative criterion, category-aware)."""
    return sum(fp + fn for _, fp, fn in _frame_counts(pred, truth, "relative").values())


def _singleton_spurious(
    spec: GameSpec, preds: Sequence[FramePredictions], truths: Sequence[FramePredictions], starts: Sequence[bool]
) -> tuple[int, dict[str, int], list[bool]]:
    singles = {c: r[0] for c, r in spec.slot_ranges.items() if len(r) == 1}
    tracker = SlotTracker(spec)
    frames_with = 0
    by_cat = dict.fromkeys(singles, 0)
    flags: list[bool] = []
    for (boxes, cats), (t_boxes, t_cats), start in zip(preds, truths, starts, strict=True):
        if start:
            tracker.reset()
        dets = [Detection(c, *map(float, b)) for b, c in zip(np.asarray(boxes).reshape(-1, 4), cats, strict=True)]
        tracker.update(dets)
        t_boxes = np.asarray(t_boxes).reshape(-1, 4)
        bad = False
        for c, slot in singles.items():
            if not tracker.present[slot]:
                continue
            mine = t_boxes[[i for i, tc in enumerate(t_cats) if tc == c]]
            if not len(mine) or not close_matrix(tracker.boxes[slot : slot + 1], mine, "relative")[1].any():
                by_cat[c] += 1
                bad = True
        frames_with += bad
        flags.append(bad)
    return frames_with, by_cat, flags


def score_objects(
    spec: GameSpec,
    preds: Sequence[FramePredictions],
    truths: Sequence[FramePredictions],
    window_starts: Sequence[bool],
) -> dict[str, Any]:
    """Every score of the module docstring over a run of frames (``window_starts`` restart the tracker)."""
    if not (len(preds) == len(truths) == len(window_starts)):
        raise ValueError(
            f"one prediction, truth and window flag per frame expected, got {len(preds)}, {len(truths)}, {len(window_starts)}"
        )
    keep = frozenset(spec.category_names)
    preds = [(np.asarray(b).reshape(-1, 4)[[c in keep for c in cats]] if len(cats) else np.zeros((0, 4)),
              [c for c in cats if c in keep]) for b, cats in preds]
    out: dict[str, Any] = {"frames": len(preds), "truth_objects": int(sum(len(t[1]) for t in truths))}
    per_cat: dict[str, list[int]] = {c: [0, 0, 0] for c in spec.category_names}
    for criterion, key in (("relative", ""), ("ocatari", "_5px")):
        tot = [0, 0, 0]
        for p, t in zip(preds, truths, strict=True):
            for c, counts in _frame_counts(p, t, criterion).items():
                tot = [a + b for a, b in zip(tot, counts, strict=True)]
                if criterion == "relative":
                    per_cat[c] = [a + b for a, b in zip(per_cat[c], counts, strict=True)]
        scores = f1_of(*tot)
        out.update({f"{k}{key}": v for k, v in scores.items()})
        if not key:
            out.update({"tp": tot[0], "fp": tot[1], "fn": tot[2]})
    right = matched = 0
    for (pb, pc), (tb, tc) in zip(preds, truths, strict=True):
        r, c = match_pairs(pb, np.asarray(tb).reshape(-1, 4), "relative")
        matched += len(r)
        right += sum(pc[i] == tc[j] for i, j in zip(r.tolist(), c.tolist(), strict=True))
    out["category_accuracy"] = right / matched if matched else float("nan")
    out["per_category"] = {
        c: {**f1_of(*v), "tp": v[0], "fp": v[1], "fn": v[2], "truth": v[0] + v[2]} for c, v in per_cat.items()
    }
    n_bad, by_cat, _ = _singleton_spurious(spec, preds, truths, window_starts)
    out["spurious_singleton_share"] = n_bad / len(preds) if preds else 0.0
    out["spurious_singleton_frames"] = {c: n for c, n in by_cat.items()}
    return out
