"""The z_what -> category classifier's fitting and scoring: a semi-supervised centroid model.

:func:`fit_classifier` labels a few samples per category and fits centroids to them (``kmeans``:
one per category, refined on every sample; ``prototypes``: each labelled sample), with a radius
beyond which a prediction is "unknown"; :func:`score_classifier` measures it on labelled samples. The option search
(:mod:`trainers.classify.options`) and the command that fits a detector's classifier
(:mod:`trainers.classify.classifier`) both build on these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moc_envs.perception.classifier import UNKNOWN, ZWhatClassifier, colour_features

__all__ = ["METHODS", "fit_classifier", "score_classifier"]

METHODS = ("kmeans", "prototypes")


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, K) between rows of a (N, D) and b (K, D), without an (N, K, D) array."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None))


def fit_classifier(
    z: np.ndarray,
    labels: np.ndarray,
    labels_per_class: int = 8,
    seed: int = 0,
    iterations: int = 20,
    radius_quantile: float = 0.99,
    radius_margin: float = 1.0,
    outlier_factor: float = 3.0,
    max_ratio: float = 0.9,
    method: str = "kmeans",
    sizes: np.ndarray | None = None,
    size_weight: float = 0.0,
    colours: np.ndarray | None = None,
    colour_weight: float = 0.0,
) -> ZWhatClassifier:
    """Fit a classifier on ``z`` (N, D) where ``labels`` (N,) holds a category or "" (no label).

    Only ``labels_per_class`` labelled samples per category are used as labels. ``method``:
    ``"kmeans"``, one centroid per category that every sample (labelled or not) refines, or
    ``"prototypes"``, each labelled sample is a centroid of its category (nearest labelled
    neighbour; better when a category has several looks). With ``sizes`` (N, 2) (width, height
    of the detector's boxes) and ``size_weight > 0`` their logs join the features, each
    weighted like ``size_weight`` z_what dimensions after standardising; likewise ``colours``
    (N, 3) (the objects' RGB, 0-255, :func:`moc_envs.perception.postprocess.refine_and_colour`) with
    ``colour_weight > 0``.
    """
    z = np.asarray(z, np.float64)
    labels = np.asarray(labels, dtype=object)
    if z.ndim != 2 or len(z) != len(labels):
        raise ValueError(f"z must be (N, D) with one label per row, got z {z.shape} and {len(labels)} labels")
    classes = sorted({str(c) for c in labels.tolist() if c})
    if not classes:
        raise ValueError("no labelled samples: every label is empty")
    if labels_per_class < 1:
        raise ValueError(f"labels_per_class must be >= 1, got {labels_per_class}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0.0 < max_ratio <= 1.0:
        raise ValueError(f"max_ratio must be in (0, 1], got {max_ratio}")
    size_dims = 0
    if size_weight > 0:
        if sizes is None or np.shape(sizes) != (len(z), 2):
            raise ValueError(f"size_weight > 0 needs sizes of shape ({len(z)}, 2), got {None if sizes is None else np.shape(sizes)}")
        z = np.hstack([z, np.log(np.clip(np.asarray(sizes, np.float64), 1.0, None))])
        size_dims = 2
    colour_dims = 0
    if colour_weight > 0:
        if colours is None or np.shape(colours) != (len(z), 3):
            raise ValueError(
                f"colour_weight > 0 needs colours of shape ({len(z)}, 3), got {None if colours is None else np.shape(colours)}"
            )
        z = np.hstack([z, colour_features(colours)])
        colour_dims = 3
    rng = np.random.default_rng(seed)
    mean = z.mean(0)
    scale = z.std(0) + 1e-6
    if colour_dims:
        scale[-3:] /= colour_weight
    if size_dims:
        scale[z.shape[1] - colour_dims - 2 : z.shape[1] - colour_dims] /= size_weight
    zs = (z - mean) / scale
    fixed = np.full(len(z), -1)
    for ci, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        fixed[rng.choice(idx, size=min(labels_per_class, len(idx)), replace=False)] = ci
    if method == "prototypes":
        cent = zs[fixed >= 0]
        cent_class = fixed[fixed >= 0]
        member = cent_class[_distances(zs, cent).argmin(1)]
        member[fixed >= 0] = fixed[fixed >= 0]
    else:
        cent = np.stack([zs[fixed == ci].mean(0) for ci in range(len(classes))])
        cent_class = np.arange(len(classes))
        member = fixed.copy()
        for _ in range(iterations):
            d = _distances(zs, cent)
            near = d.argmin(1)
            dn = d[np.arange(len(zs)), near]
            lab_d = d[fixed >= 0, fixed[fixed >= 0]]
            # Samples much farther than the labelled ones are junk (background, half objects).
            cutoff = outlier_factor * max(float(np.median(lab_d)), 1e-6)
            new = np.where(dn <= cutoff, near, -1)
            new[fixed >= 0] = fixed[fixed >= 0]
            if np.array_equal(new, member):
                break
            member = new
            cent = np.stack([zs[member == ci].mean(0) for ci in range(len(classes))])
    d = _distances(zs, cent)
    # The radius covers the samples nearest to the category, not only the refinement's members:
    # those stop at a few times the labelled samples' spread, which real objects often exceed.
    near_class = cent_class[d.argmin(1)]
    dn = d.min(1)
    radius_of = np.array(
        [
            radius_margin * np.quantile(dn[near_class == ci] if (near_class == ci).any() else d[fixed == ci].min(1), radius_quantile)
            for ci in range(len(classes))
        ]
    )
    if (radius_of <= 0).any():
        # A category whose only nearby sample sits on its centroid (one labelled sample, tiny
        # splits) has no spread to measure: it gets the widest radius of the others.
        positive = radius_of[radius_of > 0]
        radius_of = np.where(radius_of > 0, radius_of, positive.max() if len(positive) else 1.0)
    info = {
        "method": method,
        "labels_per_class": labels_per_class,
        "labelled": {c: int((fixed == ci).sum()) for ci, c in enumerate(classes)},
        "members": {c: int((member == ci).sum()) for ci, c in enumerate(classes)},
        "samples": int(len(z)),
        "seed": seed,
        "radius_quantile": radius_quantile,
        "radius_margin": radius_margin,
        "max_ratio": max_ratio,
        "size_weight": size_weight if size_dims else 0.0,
        "colour_weight": colour_weight if colour_dims else 0.0,
    }
    return ZWhatClassifier(
        classes, cent, cent_class, radius_of[cent_class], mean, scale, info,
        max_ratio=max_ratio, size_dims=size_dims, colour_dims=colour_dims,
    )  # fmt: skip


def score_classifier(
    clf: ZWhatClassifier, z: np.ndarray, labels: np.ndarray, sizes: np.ndarray | None = None, colours: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy per category on labelled samples ("unknown" counts as wrong) and the unknown rate."""
    labels = np.asarray(labels, dtype=object)
    keep = labels != ""
    pred = np.asarray(
        clf.predict(
            np.asarray(z)[keep],
            None if sizes is None else np.asarray(sizes)[keep],
            None if colours is None else np.asarray(colours)[keep],
        ),
        dtype=object,
    )
    labels = labels[keep]
    per = {
        str(c): {"samples": int((labels == c).sum()), "accuracy": float((pred[labels == c] == c).mean())}
        for c in sorted(set(labels.tolist()))
    }
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else None,
        "unknown_rate": float((pred == UNKNOWN).mean()) if len(labels) else None,
        "samples": int(len(labels)),
        "by_category": per,
    }

