"""The z_what -> category classifier shipped beside a detector, and its verified loading.

:class:`ZWhatClassifier` is a nearest-centroid classifier on standardised z_what: one or more
centroids per OCAtari category (fitted by ``python -m trainers.classifier``), each with a
radius. A z_what is ``"unknown"`` when it is farther than its nearest centroid's radius (the
detector found something that looks like no category it was shown) or when it is ambiguous:
its distance to the nearest centroid is more than ``max_ratio`` times its distance to the
nearest centroid of another category (it sits between two categories). A classifier may also
read the size of the detector's box (``size_dims == 2``: log width and height of the model's
box, the z_where scale, appended to z_what before standardising).

On disk (``weights/<Game>/``): ``classifier.joblib`` holds plain arrays and strings (no custom
classes), and ``classifier.json`` is its manifest with the file's SHA-256. The joblib file is
unpickled only after its hash matches the manifest (pickles can run code), otherwise
:class:`moc_envs.errors.CorruptWeightsError` is raised. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.errors import CorruptWeightsError, MissingWeightsError

__all__ = [
    "UNKNOWN",
    "CLASSIFIER_FILE",
    "MANIFEST_FILE",
    "CLASSIFIER_FORMAT",
    "ZWhatClassifier",
    "sha256_file",
    "save_classifier",
    "load_classifier",
    "has_classifier",
]

UNKNOWN = "unknown"
"""Category of a detection the classifier is unsure of."""
CLASSIFIER_FILE = "classifier.joblib"
MANIFEST_FILE = "classifier.json"
CLASSIFIER_FORMAT = "moc_envs.classifier/1"


@dataclass
class ZWhatClassifier:
    """Nearest-centroid classifier on standardised z_what with an "unknown" radius and ambiguity ratio."""

    classes: tuple[str, ...]
    """Category names (OCAtari's), indexed by ``centroid_class``."""
    centroids: np.ndarray
    """(K, D) centroids in standardised z_what space."""
    centroid_class: np.ndarray
    """(K,) index into ``classes`` of each centroid."""
    radius: np.ndarray
    """(K,) largest accepted distance to each centroid; farther is unknown."""
    mean: np.ndarray
    """(D,) z_what mean used to standardise."""
    scale: np.ndarray
    """(D,) z_what standard deviation used to standardise."""
    info: dict[str, Any] = field(default_factory=dict)
    """Fit details (labels per class, accuracies), kept in the manifest."""
    max_ratio: float = 1.0
    """Unknown when nearest distance > ``max_ratio`` x the nearest other category's distance (1.0: off)."""
    size_dims: int = 0
    """2 when the features end with the log width and height of the detector's box, else 0."""

    def __post_init__(self) -> None:
        self.centroids = np.asarray(self.centroids, np.float32)
        self.centroid_class = np.asarray(self.centroid_class, np.int64)
        self.radius = np.asarray(self.radius, np.float32)
        self.mean = np.asarray(self.mean, np.float32)
        self.scale = np.asarray(self.scale, np.float32)
        self.classes = tuple(str(c) for c in self.classes)
        k, d = self.centroids.shape if self.centroids.ndim == 2 else (-1, -1)
        if (
            k < 1
            or self.centroid_class.shape != (k,)
            or self.radius.shape != (k,)
            or self.mean.shape != (d,)
            or self.scale.shape != (d,)
        ):
            raise ValueError(
                f"inconsistent classifier arrays: centroids {self.centroids.shape}, centroid_class "
                f"{self.centroid_class.shape}, radius {self.radius.shape}, mean {self.mean.shape}, "
                f"scale {self.scale.shape}"
            )
        if self.centroid_class.min() < 0 or self.centroid_class.max() >= len(self.classes):
            raise ValueError(f"centroid_class must index {len(self.classes)} classes")
        self.size_dims = int(self.size_dims)
        if self.size_dims not in (0, 2) or d <= self.size_dims:
            raise ValueError(f"size_dims must be 0 or 2 (and less than the {d} features), got {self.size_dims}")
        self.max_ratio = float(self.max_ratio)
        if not 0.0 < self.max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")

    @property
    def z_what_dim(self) -> int:
        """Size of the z_what this classifier expects."""
        return int(self.centroids.shape[1]) - self.size_dims

    @property
    def uses_sizes(self) -> bool:
        """Whether :meth:`predict` needs the boxes' sizes."""
        return self.size_dims > 0

    def features(self, z_what: np.ndarray, sizes: np.ndarray | None = None) -> np.ndarray:
        """The unstandardised feature rows: z_what (M, D), then log box width and height when used."""
        z = np.asarray(z_what, np.float32)
        if z.size == 0:
            z = np.zeros((0, self.z_what_dim), np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_what_dim:
            raise ValueError(f"z_what must be (M, {self.z_what_dim}) with {self.z_what_dim} columns, got shape {z.shape}")
        if not self.uses_sizes:
            return z
        if sizes is None:
            raise ValueError("this classifier also reads the boxes' sizes: pass sizes (M, 2) as (width, height)")
        wh = np.asarray(sizes, np.float32)
        if wh.size == 0:
            wh = wh.reshape(0, 2)
        if wh.shape != (len(z), 2):
            raise ValueError(f"sizes must be ({len(z)}, 2) as (width, height), got shape {np.shape(sizes)}")
        return np.hstack([z, np.log(np.clip(wh, 1.0, None))])

    def predict_index(self, z_what: np.ndarray, sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Class index per row of ``z_what`` (M, D), -1 for unknown, and the distance (M,).

        ``sizes`` (M, 2): width and height of the detector's boxes, needed when :attr:`uses_sizes`.
        """
        z = self.features(z_what, sizes)
        zs = (z - self.mean) / self.scale
        d = np.linalg.norm(zs[:, None, :] - self.centroids[None], axis=-1)
        near = d.argmin(axis=1) if len(z) else np.zeros(0, np.int64)
        dist = d[np.arange(len(z)), near] if len(z) else np.zeros(0, np.float32)
        idx = self.centroid_class[near]
        ok = dist <= self.radius[near]
        if self.max_ratio < 1.0 and len(z):
            # Distance to the nearest centroid of any other category: a sample about as close
            # to two categories is between them, and naming either would be a guess.
            other = np.where(self.centroid_class[None, :] == idx[:, None], np.inf, d).min(axis=1)
            ok &= dist <= self.max_ratio * other
        idx = np.where(ok, idx, -1)
        return idx, dist

    def predict(self, z_what: np.ndarray, sizes: np.ndarray | None = None) -> list[str]:
        """Category name per row of ``z_what`` (M, D); ``"unknown"`` when unsure (``sizes`` as in :meth:`predict_index`)."""
        idx, _ = self.predict_index(z_what, sizes)
        return [self.classes[i] if i >= 0 else UNKNOWN for i in idx.tolist()]

    def arrays(self) -> dict[str, Any]:
        """Plain-data form (numpy arrays, list of str) that is pickled."""
        return {
            "classes": list(self.classes),
            "centroids": self.centroids,
            "centroid_class": self.centroid_class,
            "radius": self.radius,
            "mean": self.mean,
            "scale": self.scale,
            "max_ratio": self.max_ratio,
            "size_dims": self.size_dims,
        }


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_classifier(clf: ZWhatClassifier, folder: str | Path, game: str) -> Path:
    """Write ``classifier.joblib`` and its manifest ``classifier.json`` atomically; return the manifest path."""
    import joblib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CLASSIFIER_FILE}.tmp{os.getpid()}"
    joblib.dump(clf.arrays(), tmp)
    manifest = {
        "format": CLASSIFIER_FORMAT,
        "game": game,
        "file": CLASSIFIER_FILE,
        "sha256": sha256_file(tmp),
        "classes": list(clf.classes),
        "z_what_dim": clf.z_what_dim,
        "centroids": int(clf.centroids.shape[0]),
        "max_ratio": clf.max_ratio,
        "size_dims": clf.size_dims,
        "info": clf.info,
    }
    tmp_m = folder / f".{MANIFEST_FILE}.tmp{os.getpid()}"
    tmp_m.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, folder / CLASSIFIER_FILE)
    os.replace(tmp_m, folder / MANIFEST_FILE)
    return folder / MANIFEST_FILE


def has_classifier(folder: str | Path) -> bool:
    """Whether ``folder`` holds a classifier (its joblib file or its manifest)."""
    folder = Path(folder)
    return (folder / CLASSIFIER_FILE).is_file() or (folder / MANIFEST_FILE).is_file()


def load_classifier(folder: str | Path, game: str | None = None) -> ZWhatClassifier:
    """Load the classifier of ``folder`` after checking its SHA-256 against the manifest.

    Raises MissingWeightsError when a file is absent and CorruptWeightsError when the manifest
    is unreadable, names another game, or its hash does not match the joblib file.
    """
    import joblib

    folder = Path(folder)
    m_path, c_path = folder / MANIFEST_FILE, folder / CLASSIFIER_FILE
    if not c_path.is_file():
        raise MissingWeightsError(f"classifier file {c_path} is missing")
    if not m_path.is_file():
        raise CorruptWeightsError(
            f"{c_path} has no manifest {m_path.name} beside it; refusing to unpickle an unverified file"
        )
    try:
        manifest = json.loads(m_path.read_text())
        expected = str(manifest["sha256"])
        fmt = manifest.get("format")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CorruptWeightsError(f"{m_path} is not a valid classifier manifest: {err}") from err
    if fmt != CLASSIFIER_FORMAT:
        raise CorruptWeightsError(f"{m_path} has format {fmt!r}, expected {CLASSIFIER_FORMAT!r}")
    if game is not None and manifest.get("game") != game:
        raise CorruptWeightsError(f"{m_path} holds a classifier for game {manifest.get('game')!r}, not {game!r}")
    actual = sha256_file(c_path)
    if actual != expected:
        raise CorruptWeightsError(
            f"{c_path} does not match its manifest: SHA-256 is {actual}, manifest says {expected}; "
            "refusing to unpickle it (re-fit with `python -m trainers.classifier`)"
        )
    try:
        data = joblib.load(c_path)
        return ZWhatClassifier(
            classes=tuple(data["classes"]),
            centroids=data["centroids"],
            centroid_class=data["centroid_class"],
            radius=data["radius"],
            mean=data["mean"],
            scale=data["scale"],
            info=dict(manifest.get("info") or {}),
            max_ratio=float(data.get("max_ratio", 1.0)),
            size_dims=int(data.get("size_dims", 0)),
        )
    except (KeyError, TypeError, ValueError, EOFError) as err:
        raise CorruptWeightsError(f"{c_path} does not hold a z_what classifier: {err}") from err
