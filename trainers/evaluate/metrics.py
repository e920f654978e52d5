"""Centre-distance precision / recall / F1 of detections against OCAtari ground truth.

Two matching criteria (spec section 7):

- ``ocatari``: Hungarian matching of box centres, a pair counts when the centres are closer
  than 5 frame pixels (OCAtari's own metric);
- ``relative``: the references' criterion ``max(0, 1 - centre distance / GT diagonal) > 0.5``,
  i.e. centres closer than half the ground-truth diagonal, also matched one-to-one (Hungarian).

Ground truth is the non-HUD ("moving") objects. A prediction that matches no moving object but
sits on a HUD object (a score digit) is a correct detection of something we do not score: it is
left out of the counts and reported as ``hud_predictions`` (``ignore_hud=False`` counts it as a
false positive instead). Unmatched predictions within the criterion of a matched object are
counted as ``duplicates`` (they are also false positives).

``moc-envs metrics --data data/Pong --run runs/pong_cpu`` (or ``--weights weights/Pong``)
evaluates a trained model on a split.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from moc_envs.threads import add_threads_argument, set_torch_threads
from moc_envs.weights.atomic import atomic_write_text

__all__ = [
    "Criterion",
    "Counts",
    "centre_close",
    "match_frame",
    "evaluate_boxes",
    "predict_boxes",
    "evaluate_encoder",
    "main",
]

Criterion = Literal["ocatari", "relative"]
OCATARI_MAX_DIST = 5.0


@dataclass
class Counts:
    """True positives, false positives, false negatives and side counts over many frames."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    duplicates: int = 0
    hud_predictions: int = 0

    @property
    def precision(self) -> float:
        """tp / (tp + fp); 1.0 when nothing was predicted and nothing was there."""
        d = self.tp + self.fp
        return self.tp / d if d else float(self.fn == 0)

    @property
    def recall(self) -> float:
        """tp / (tp + fn); 1.0 when there was nothing to find."""
        d = self.tp + self.fn
        return self.tp / d if d else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Counts and the three scores."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "duplicates": self.duplicates,
            "hud_predictions": self.hud_predictions,
        }


def _centres(b: np.ndarray) -> np.ndarray:
    return b[:, :2] + b[:, 2:4] / 2.0


def centre_close(pred: np.ndarray, gt: np.ndarray, criterion: Criterion) -> tuple[np.ndarray, np.ndarray]:
    """Centre distance matrix (P, G) of boxes (x, y, w, h) and the boolean 'close enough' matrix."""
    d = np.linalg.norm(_centres(pred)[:, None, :] - _centres(gt)[None, :, :], axis=-1)
    if criterion == "ocatari":
        return d, d < OCATARI_MAX_DIST
    if criterion == "relative":
        diag = np.hypot(gt[:, 2], gt[:, 3])[None, :]
        return d, np.maximum(0.0, 1.0 - d / np.maximum(diag, 1e-9)) > 0.5
    raise ValueError(f"criterion must be 'ocatari' or 'relative', got {criterion!r}")


def match_frame(
    pred: np.ndarray,
    gt: np.ndarray,
    criterion: Criterion = "ocatari",
    hud: np.ndarray | None = None,
    ignore_hud: bool = True,
) -> Counts:
    """Match one frame's predicted boxes (P, 4) to ground-truth boxes (G, 4), (x, y, w, h).

    ``hud`` (H, 4) holds the frame's HUD boxes, used only to set aside predictions on them.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    c = Counts()
    matched_pred = np.zeros(len(pred), bool)
    close = np.zeros((len(pred), len(gt)), bool)
    if len(pred) and len(gt):
        d, close = centre_close(pred, gt, criterion)
        cost = np.where(close, d, 1e6)
        rows, cols = linear_sum_assignment(cost)
        ok = close[rows, cols]
        matched_pred[rows[ok]] = True
        c.tp = int(ok.sum())
    c.fn = len(gt) - c.tp
    rest = ~matched_pred
    if hud is not None and ignore_hud and len(hud) and rest.any():
        hud = np.asarray(hud, dtype=np.float64).reshape(-1, 4)
        _, on_hud = centre_close(pred, hud, criterion)
        skip = rest & on_hud.any(1)
        c.hud_predictions = int(skip.sum())
        rest &= ~skip
    c.fp = int(rest.sum())
    if len(gt):
        c.duplicates = int((rest & close.any(1)).sum())
    return c


def evaluate_boxes(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    huds: Sequence[np.ndarray] | None = None,
    ignore_hud: bool = True,
) -> dict[str, Any]:
    """P/R/F1 under both criteria over frames; ``preds[i]``, ``gts[i]`` are (.., 4) boxes."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} prediction frames but {len(gts)} ground-truth frames")
    out: dict[str, Any] = {"frames": len(preds)}
    for crit in ("ocatari", "relative"):
        total = Counts()
        for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
            c = match_frame(p, g, crit, None if huds is None else huds[i], ignore_hud)
            total.tp += c.tp
            total.fp += c.fp
            total.fn += c.fn
            total.duplicates += c.duplicates
            total.hud_predictions += c.hud_predictions
        out[crit] = total.as_dict()
    n_pred = sum(len(p) for p in preds)
    n_gt = sum(len(g) for g in gts)
    out["count_accuracy"] = float(np.mean([len(p) == len(g) for p, g in zip(preds, gts, strict=True)])) if preds else 1.0
    out["predictions"] = n_pred
    out["objects"] = n_gt
    return out


def predict_boxes(encoder: Any, frames: np.ndarray, device: str = "cpu", batch: int = 64) -> list[np.ndarray]:
    """Boxes (x, y, w, h in 210x160 frame pixels) of every present cell, per 128x128 frame.

    ``encoder`` is a :class:`moc_envs.model.SpaceEncoder`; ``frames`` uint8 (M, 128, 128, 3).
    """
    import torch

    from moc_envs.model.geometry import where_to_boxes

    encoder.eval()
    out: list[np.ndarray] = []
    for lo in range(0, len(frames), batch):
        chunk = np.ascontiguousarray(frames[lo : lo + batch])
        x = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        x = x.contiguous(memory_format=torch.channels_last)
        b_idx, _, where, _ = encoder.infer(x)
        boxes = where_to_boxes(where).cpu().numpy()
        b_idx = b_idx.cpu().numpy()
        for i in range(len(chunk)):
            out.append(boxes[b_idx == i])
    return out


def evaluate_encoder(
    encoder: Any, data_root: str | Path, split: str = "test", device: str = "cpu", limit: int | None = None
) -> dict[str, Any]:
    """Run ``encoder`` on a dataset split and score it against its non-HUD ground truth."""
    from trainers.data.reader import load_ground_truth, load_split

    data = load_split(data_root, split)
    gt = load_ground_truth(data_root, split)
    s, t = data.frames.shape[:2]
    if limit is not None:
        s = min(s, limit)
    frames = data.frames[:s].reshape(s * t, *data.frames.shape[2:])
    preds = predict_boxes(encoder, frames, device)
    gts, huds = [], []
    for si in range(s):
        for ti in range(t):
            gts.append(gt.boxes(si, ti)[0])
            rows = gt.rows(si, ti)
            rows = rows[gt.hud[rows]]
            huds.append(np.stack([gt.x[rows], gt.y[rows], gt.w[rows], gt.h[rows]], axis=1))
    result = evaluate_boxes(preds, gts, huds)
    result["hud_counted_as_fp"] = {
        k: evaluate_boxes(preds, gts, huds, ignore_hud=False)[k] for k in ("ocatari", "relative")
    }
    result["split"] = split
    return result


def _load_encoder(args: argparse.Namespace) -> Any:
    if args.weights:
        from moc_envs.games import get_game
        from moc_envs.perception.space_detector import SpaceDetector

        det = SpaceDetector.from_pretrained(
            Path(args.weights), get_game(args.game), device=args.device, allow_unclassified=True
        )
        return det.encoder
    from trainers.detector.checkpoint import load_model_from_run

    return load_model_from_run(Path(args.run), device=args.device).encoder


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: evaluate a run's checkpoint or exported weights on a dataset split."""
    p = argparse.ArgumentParser(
        prog="moc-envs metrics",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset directory (trainers.data.dataset output)")
    p.add_argument("--run", help="training run directory holding checkpoint.pt")
    p.add_argument("--weights", help="exported weights directory (weights/<Game>)")
    p.add_argument("--game", default="Pong", help="game name (with --weights)")
    p.add_argument("--split", default="test", help="dataset split to score")
    p.add_argument("--device", default="cpu", help="torch device")
    add_threads_argument(p)
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    if bool(args.run) == bool(args.weights):
        p.error("give exactly one of --run or --weights")
    result = evaluate_encoder(_load_encoder(args), args.data, args.split, args.device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return result


if __name__ == "__main__":
    main()
