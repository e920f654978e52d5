"""Quality of the z_what latents: few-shot ridge accuracy and KMeans AMI / ARI (spec section 7).

Each prediction's z_what gets the category of the ground-truth box it overlaps most (IoU > 0;
predictions that overlap nothing are left out). Then:

- few-shot accuracy: a ridge classifier trained on ``n`` labelled samples per category
  (n = 1, 4, 16, 64), tested on every other sample; mean and std over ``repeats`` random draws.
  A category with at most ``n`` samples contributes all but one of them to training.
- KMeans with k = number of categories on all samples, scored against the categories with the
  adjusted mutual information (AMI) and the adjusted Rand index (ARI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainers.evaluate.detection_metrics import iou_matrix

__all__ = ["FEW_SHOT_SIZES", "label_by_iou", "few_shot_accuracy", "cluster_scores", "latent_report"]

FEW_SHOT_SIZES = (1, 4, 16, 64)


def label_by_iou(
    boxes: Sequence[np.ndarray], gt: Sequence[np.ndarray], gt_cats: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Per frame, the category (str) of each prediction's best-IoU ground-truth box, "" if none."""
    out: list[np.ndarray] = []
    for b, g, c in zip(boxes, gt, gt_cats, strict=True):
        lab = np.full(len(np.asarray(b).reshape(-1, 4)), "", dtype=object)
        if len(lab) and len(c):
            iou = iou_matrix(b, g)
            best = iou.argmax(axis=1)
            ok = iou[np.arange(len(lab)), best] > 0
            lab[ok] = np.asarray(c, dtype=object)[best[ok]]
        out.append(lab)
    return out


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def few_shot_accuracy(
    z: np.ndarray,
    labels: np.ndarray,
    sizes: Sequence[int] = FEW_SHOT_SIZES,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Ridge accuracy with ``n`` labelled samples per category, for each n in ``sizes``."""
    from sklearn.linear_model import RidgeClassifier

    z = _standardise(np.asarray(z, np.float64))
    labels = np.asarray(labels, dtype=object)
    classes = sorted(set(labels.tolist()))
    out: dict[str, dict[str, float]] = {}
    if len(classes) < 2:
        return out
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    for n in sizes:
        accs = []
        for _ in range(repeats):
            train = []
            for idx in by_class.values():
                k = min(n, max(len(idx) - 1, 1))
                train.append(rng.choice(idx, size=k, replace=False))
            tr = np.concatenate(train)
            te = np.setdiff1d(np.arange(len(labels)), tr)
            if not len(te):
                continue
            clf = RidgeClassifier(alpha=1.0).fit(z[tr], labels[tr].astype(str))
            accs.append(float((clf.predict(z[te]) == labels[te].astype(str)).mean()))
        if accs:
            out[str(n)] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "repeats": len(accs)}
    return out


def cluster_scores(z: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """KMeans (k = number of categories) AMI and ARI against the categories."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    labels = np.asarray(labels, dtype=object).astype(str)
    k = len(set(labels.tolist()))
    if k < 2 or len(labels) <= k:
        return {}
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(_standardise(np.asarray(z, np.float64)))
    return {"ami": float(adjusted_mutual_info_score(labels, pred)), "ari": float(adjusted_rand_score(labels, pred)), "k": k}


def latent_report(
    z_what: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    gt: Sequence[np.ndarray],
    gt_cats: Sequence[np.ndarray],
    seed: int = 0,
    max_samples: int = 20000,
) -> dict[str, Any]:
    """Few-shot and clustering scores of the z_what of all predictions that overlap an object."""
    labels = np.concatenate(label_by_iou(boxes, gt, gt_cats) or [np.zeros(0, object)])
    dims = [np.asarray(z).reshape(len(np.asarray(b).reshape(-1, 4)), -1).shape[1] for z, b in zip(z_what, boxes, strict=True) if len(z)]
    z = np.concatenate([np.asarray(v).reshape(-1, dims[0]) for v in z_what]) if dims else np.zeros((0, 1))
    keep = labels != ""
    z, labels = z[keep], labels[keep]
    if len(labels) > max_samples:
        sel = np.random.default_rng(seed).choice(len(labels), max_samples, replace=False)
        z, labels = z[sel], labels[sel]
    counts = {str(c): int((labels == c).sum()) for c in sorted(set(labels.tolist()))}
    return {
        "samples": int(len(labels)),
        "samples_by_category": counts,
        "few_shot_ridge": few_shot_accuracy(z, labels, seed=seed),
        "kmeans": cluster_scores(z, labels, seed=seed),
    }
