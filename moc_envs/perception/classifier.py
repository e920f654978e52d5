"""The z_what -> category classifier shipped beside a detector, and its safe loading.

:class:`ZWhatClassifier` is a nearest-centroid classifier on standardised z_what: one or more
centroids per OCAtari category (fitted by ``moc-envs classifier``), each with a
radius. A z_what is ``"unknown"`` when it is farther than its nearest centroid's radius (the
detector found something that looks like no category it was shown) or when it is ambiguous:
its distance to the nearest centroid is more than ``max_ratio`` times its distance to the
nearest centroid of another category (it sits between two categories). A classifier may also
read the size of the detector's box (``size_dims == 2``: log width and height of the model's
box, the z_where scale, appended to z_what before standardising) and the object's colour
(``colour_dims == 3``: its RGB in [0, 1] as :func:`moc_envs.perception.postprocess.refine_and_colour` finds
it, appended after the sizes): categories that share a shape but not a colour (Tennis' players).

A classifier may also carry **extents** (``moc-envs extents``, :mod:`trainers.classify.extents`):
per category, the range of box widths and heights its objects take, and of centre x or y on an
axis the game fixes (SpaceInvaders' cannon never leaves its row), fitted from the detector's own
correctly named boxes on random play. A detection outside its category's extents is
``"unknown"``: a 49 x 5 box over Seaquest's oxygen bar is no submarine, whatever its z_what.
Categories it **withholds** are never named (their boxes were right less than a quarter of the time
in that play: an empty slot says less than a wrong one). Its **HUD regions** are rectangles where the game draws its scores, bars and lives (OCAtari's HUD
objects in the same play); a detection centred in one is ``"unknown"`` unless its category was
seen there (the region lists it as exempt).

On disk (``<root>/<Game>/``): ``classifier.safetensors`` holds the arrays and
``classifier.json`` the rest (format tag, game, classes, ``max_ratio``, ``size_dims``,
``colour_dims``, fit details). Loading reads safetensors and JSON only, through the folder's verified manifest
(:mod:`moc_envs.weights.manifest`): nothing is ever unpickled. A folder that still holds only the
legacy pickled ``classifier.joblib`` is refused with the command that re-fits it. No torch here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.games import get_game
from moc_envs.weights.atomic import atomic_path, atomic_write_text
from moc_envs.weights.manifest import VerifiedFolder, safetensors_metadata, verify_folder
from moc_envs.weights.safe_read import finite_for_json

__all__ = [
    "UNKNOWN",
    "CLASSIFIER_FILE",
    "CLASSIFIER_JSON",
    "LEGACY_CLASSIFIER_FILE",
    "CLASSIFIER_FORMAT",
    "ZWhatClassifier",
    "colour_features",
    "save_classifier",
    "load_classifier",
    "read_classifier",
    "has_classifier",
    "refit_command",
    "EXTENT_KEYS",
    "check_extents",
    "check_hud_regions",
]

UNKNOWN = "unknown"
"""Category of a detection the classifier is unsure of."""
CLASSIFIER_FILE = "classifier.safetensors"
"""The classifier's arrays."""
CLASSIFIER_JSON = "classifier.json"
"""The classifier's format tag, game, classes, settings and fit details."""
LEGACY_CLASSIFIER_FILE = "classifier.joblib"
"""The pickled classifier of format 1: never loaded (pickles can run code)."""
CLASSIFIER_FORMAT = "moc_envs.classifier/2"
EXTENT_KEYS = ("w", "h", "cx", "cy")
"""What an extent bounds: box width and height, centre x and y (frame pixels)."""
Extents = dict[str, dict[str, tuple[float | None, float | None]]]


def check_extents(extents: object, classes: tuple[str, ...]) -> Extents:
    """Validated extents: ``{category: {key: [low or None, high or None]}}`` with keys of
    :data:`EXTENT_KEYS`, categories among ``classes``, finite bounds, low <= high (None: unbounded)."""
    if not isinstance(extents, dict):
        raise TypeError(f"extents must be an object of category -> bounds, got {type(extents).__name__}")
    out: Extents = {}
    for cat, bounds in extents.items():
        if cat not in classes:
            raise ValueError(f"extents name category {cat!r}, which is not one of the classes {list(classes)}")
        if not isinstance(bounds, dict) or not set(bounds) <= set(EXTENT_KEYS):
            raise ValueError(f"extents of {cat!r} must be an object with keys among {list(EXTENT_KEYS)}, got {_short(bounds)}")
        row: dict[str, tuple[float | None, float | None]] = {}
        for key, pair in bounds.items():
            ok = isinstance(pair, list | tuple) and len(pair) == 2 and all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)) for v in pair
            )
            if not ok or (pair[0] is not None and pair[1] is not None and pair[0] > pair[1]):
                raise ValueError(f"extents[{cat!r}][{key!r}] must be [low, high] with finite numbers or null and low <= high, got {_short(pair)}")
            row[key] = (None if pair[0] is None else float(pair[0]), None if pair[1] is None else float(pair[1]))
        out[str(cat)] = row
    return out


_ARRAYS = ("centroids", "centroid_class", "radius", "mean", "scale")

_FEW_NAMES = 8
"""Up to this many boxes :meth:`ZWhatClassifier.within_extents` tests them one by one (cheaper
than its array path there)."""


def check_hud_regions(regions: object, classes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Validated HUD regions: ``[{"box": [x0, y0, x1, y1], "exempt": [category, ...]}, ...]``."""
    if not isinstance(regions, list):
        raise TypeError(f"hud_regions must be a list, got {type(regions).__name__}")
    out = []
    for r in regions:
        box = r.get("box") if isinstance(r, dict) else None
        exempt = r.get("exempt", []) if isinstance(r, dict) else None
        ok = (
            isinstance(box, list) and len(box) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in box)
            and box[0] <= box[2] and box[1] <= box[3]
            and isinstance(exempt, list) and all(isinstance(c, str) and c in classes for c in exempt)
        )  # fmt: skip
        if not ok:
            raise ValueError(
                f"each HUD region must be {{'box': [x0, y0, x1, y1] finite with x0 <= x1 and y0 <= y1, "
                f"'exempt': [categories among {list(classes)}]}}, got {_short(r)}"
            )
        out.append({"box": [float(v) for v in box], "exempt": list(exempt)})
    return out

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
    """Fit details (labels per class, accuracies), kept in ``classifier.json``."""
    max_ratio: float = 1.0
    """Unknown when nearest distance > ``max_ratio`` x the nearest other category's distance (1.0: off)."""
    size_dims: int = 0
    """2 when the features hold the log width and height of the detector's box after z_what, else 0."""
    colour_dims: int = 0
    """3 when the features end with the object's RGB colour in [0, 1], else 0."""
    extents: Extents = field(default_factory=dict)
    """Per category, bounds of its boxes' width, height and centre (module docstring); {}: none."""
    hud_regions: list[dict[str, Any]] = field(default_factory=list)
    """Rectangles of the HUD where only their exempt categories are named (module docstring)."""
    withheld: tuple[str, ...] = ()
    """Categories never named: their boxes were mostly wrong in the extents' fit (module docstring)."""

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
        self.size_dims, self.colour_dims = int(self.size_dims), int(self.colour_dims)
        if self.size_dims not in (0, 2) or self.colour_dims not in (0, 3) or d <= self.size_dims + self.colour_dims:
            raise ValueError(
                f"size_dims must be 0 or 2 and colour_dims 0 or 3 (together less than the {d} features), "
                f"got {self.size_dims} and {self.colour_dims}"
            )
        self.extents = check_extents(self.extents, self.classes)
        self.hud_regions = check_hud_regions(self.hud_regions, self.classes)
        if not isinstance(self.withheld, list | tuple) or not all(c in self.classes for c in self.withheld):
            raise ValueError(f"withheld must list categories among {list(self.classes)}, got {_short(self.withheld)}")
        self.withheld = tuple(self.withheld)
        self.max_ratio = float(self.max_ratio)
        if not 0.0 < self.max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        for name in ("centroids", "radius", "mean", "scale"):
            bad = int(np.size(getattr(self, name)) - np.isfinite(getattr(self, name)).sum())
            if bad:
                raise ValueError(f"{name} must be finite, got {bad} NaN or infinite value(s)")
        # A zero scale divides by zero and a zero radius accepts nothing: every detection would
        # silently come out "unknown" and fill no slot.
        for name in ("scale", "radius"):
            low = getattr(self, name).min()
            if low <= 0:
                raise ValueError(f"{name} must be > 0 everywhere, got a minimum of {float(low)}")

    @property
    def z_what_dim(self) -> int:
        """Size of the z_what this classifier expects."""
        return int(self.centroids.shape[1]) - self.size_dims - self.colour_dims

    @property
    def uses_sizes(self) -> bool:
        """Whether :meth:`predict` needs the boxes' sizes."""
        return self.size_dims > 0

    @property
    def uses_colours(self) -> bool:
        """Whether :meth:`predict` needs the objects' colours."""
        return self.colour_dims > 0

    def features(
        self, z_what: np.ndarray, sizes: np.ndarray | None = None, colours: np.ndarray | None = None
    ) -> np.ndarray:
        """The unstandardised feature rows: z_what (M, D), then log box width and height, then the
        RGB colour in [0, 1], each when used."""
        z = np.asarray(z_what, np.float32)
        if z.size == 0:
            z = np.zeros((0, self.z_what_dim), np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_what_dim:
            raise ValueError(f"z_what must be (M, {self.z_what_dim}) with {self.z_what_dim} columns, got shape {z.shape}")
        parts = [z]
        if self.uses_sizes:
            if sizes is None:
                raise ValueError("this classifier also reads the boxes' sizes: pass sizes (M, 2) as (width, height)")
            wh = np.asarray(sizes, np.float32)
            if wh.size == 0:
                wh = wh.reshape(0, 2)
            if wh.shape != (len(z), 2):
                raise ValueError(f"sizes must be ({len(z)}, 2) as (width, height), got shape {np.shape(sizes)}")
            parts.append(np.log(np.clip(wh, 1.0, None)))
        if self.uses_colours:
            if colours is None:
                raise ValueError("this classifier also reads the objects' colours: pass colours (M, 3) as RGB 0-255")
            rgb = np.asarray(colours)
            if rgb.size == 0:
                rgb = rgb.reshape(0, 3)
            if rgb.shape != (len(z), 3):
                raise ValueError(f"colours must be ({len(z)}, 3) as RGB 0-255, got shape {np.shape(colours)}")
            parts.append(colour_features(rgb))
        return np.hstack(parts) if len(parts) > 1 else z

    def predict_index(
        self, z_what: np.ndarray, sizes: np.ndarray | None = None, colours: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class index per row of ``z_what`` (M, D), -1 for unknown, and the distance (M,).

        ``sizes`` (M, 2): width and height of the detector's boxes, needed when :attr:`uses_sizes`;
        ``colours`` (M, 3): the objects' RGB colours (0-255), needed when :attr:`uses_colours`.
        """
        z = self.features(z_what, sizes, colours)
        zs = (z - self.mean) / self.scale
        d = centroid_distances(zs, self.centroids, self.centroid_class)
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

    def predict(
        self, z_what: np.ndarray, sizes: np.ndarray | None = None, colours: np.ndarray | None = None
    ) -> list[str]:
        """Category name per row of ``z_what`` (M, D); ``"unknown"`` when unsure (``sizes`` and
        ``colours`` as in :meth:`predict_index`)."""
        idx, _ = self.predict_index(z_what, sizes, colours)
        return [self.classes[i] if i >= 0 else UNKNOWN for i in idx.tolist()]

    def within_extents(self, names: list[str], boxes: np.ndarray) -> list[str]:
        """``names`` with ``"unknown"`` where a box (x, y, w, h) lies outside its category's extents, is
        centred in a HUD region that does not exempt its category, or names a withheld category."""
        if not self.extents and not self.hud_regions and not self.withheld:
            return names
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(names):
            raise ValueError(f"one box per name expected, got {len(boxes)} boxes for {len(names)} names")
        if len(names) > _FEW_NAMES:
            return self._within_extents_array(names, boxes)
        out = list(names)
        for i, (name, (x, y, w, h)) in enumerate(zip(names, boxes.tolist(), strict=True)):
            if name in self.withheld:
                out[i] = UNKNOWN
                continue
            values = {"w": w, "h": h, "cx": x + w / 2, "cy": y + h / 2}
            for r in self.hud_regions:
                x0, y0, x1, y1 = r["box"]
                if name not in r["exempt"] and x0 <= values["cx"] <= x1 and y0 <= values["cy"] <= y1:
                    out[i] = UNKNOWN
            for key, (lo, hi) in self.extents.get(name, {}).items():
                if (lo is not None and values[key] < lo) or (hi is not None and values[key] > hi):
                    out[i] = UNKNOWN
                    break
        return out

    def _within_extents_array(self, names: list[str], boxes: np.ndarray) -> list[str]:
        """:meth:`within_extents` for many boxes: each test on all boxes at once (the same float
        expressions and comparisons, read against each box's own name as the loop does). Names
        become small integer codes first: comparing object arrays of strings cost more than the tests."""
        known = {c: i for i, c in enumerate(dict.fromkeys([*self.classes, *self.extents, *self.withheld]))}
        code = np.array([known.get(n, -1) for n in names], np.int64)

        def among(categories: Any) -> np.ndarray:
            table = np.zeros(len(known) + 1, bool)  # the last entry: a name outside ``known`` (code -1)
            table[[known[c] for c in categories if c in known]] = True
            return table[code]

        x, y, w, h = boxes.T
        values = {"w": w, "h": h, "cx": x + w / 2, "cy": y + h / 2}
        out = among(self.withheld)
        for r in self.hud_regions:
            x0, y0, x1, y1 = r["box"]
            inside = (x0 <= values["cx"]) & (values["cx"] <= x1) & (y0 <= values["cy"]) & (values["cy"] <= y1)
            out |= inside & ~among(r["exempt"])
        for category, limits in self.extents.items():
            mine = code == known[category]
            for key, (lo, hi) in limits.items():
                if lo is not None:
                    out |= mine & (values[key] < lo)
                if hi is not None:
                    out |= mine & (values[key] > hi)
        return [UNKNOWN if bad else n for n, bad in zip(names, out.tolist(), strict=True)]

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays stored in ``classifier.safetensors``."""
        return {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}


_FEW_PAIRS = 256
"""Up to this many (row, centroid) pairs the full distance table is the cheaper way."""


def centroid_distances(zs: np.ndarray, centroids: np.ndarray, centroid_class: np.ndarray) -> np.ndarray:
    """Distances (M, K) float32 of standardised rows ``zs`` (M, F) to ``centroids`` (K, F):
    ``np.linalg.norm(zs[:, None] - centroids[None], axis=-1)`` wherever a nearest-centroid
    decision can read it, +inf elsewhere.

    The full table subtracts and sums M x K x F values: with SpaceInvaders' 37 objects and 80
    centroids it was the classifier's whole cost, the largest stage of a detect() (issue 30).
    Here squared distances come from one float64 product first, and the exact float32 norms are
    computed only for the pairs within a relative 1e-3 of their row's nearest centroid of the
    same category, a margin a thousand times the float32 sums' rounding: every category's
    nearest centroid and its ties are exact (the same float32 operations as the full table),
    so every argmin and every minimum over categories gives what the full table gives (tests
    compare the two).
    """
    m, k = len(zs), len(centroids)
    if m * k <= _FEW_PAIRS:
        return np.linalg.norm(zs[:, None, :] - centroids[None], axis=-1)
    a, c = zs.astype(np.float64), centroids.astype(np.float64)
    a2 = np.einsum("mf,mf->m", a, a)
    approx = a2[:, None] + np.einsum("kf,kf->k", c, c)[None] - 2.0 * (a @ c.T)
    if not np.isfinite(approx).all():
        return np.linalg.norm(zs[:, None, :] - centroids[None], axis=-1)
    from moc_envs.kernels.nearest import near_pairs

    group = np.asarray(centroid_class, np.int64)  # class indices 0 <= c < classes
    rows, cols = near_pairs(approx, group, int(group.max()) + 1, a2, 1e-3, 1e-6)
    out = np.full((m, k), np.inf, np.float32)
    out[rows, cols] = np.linalg.norm(zs[rows] - centroids[cols], axis=-1)
    return out


def colour_features(colours: np.ndarray) -> np.ndarray:
    """RGB colours (M, 3), 0-255, as the classifier's colour features: floats in [0, 1]."""
    rgb = np.asarray(colours, np.float32)
    if rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f"colours must be (M, 3) as RGB 0-255, got shape {rgb.shape}")
    return rgb / 255.0


def refit_command(folder: str | Path, game: str) -> str:
    """The command that fits (or re-fits) the classifier of weights folder ``folder``."""
    return f"moc-envs classifier --game {game} --weights {folder} --data data/{game}"


def save_classifier(clf: ZWhatClassifier, folder: str | Path, game: str) -> Path:
    """Write ``classifier.safetensors`` and ``classifier.json`` atomically; return the JSON's path.

    The folder's ``manifest.json`` is the caller's to refresh
    (:func:`moc_envs.weights.manifest.write_manifest`), once every file it writes is in place.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    with atomic_path(folder / CLASSIFIER_FILE) as tmp:
        save_file(clf.arrays(), str(tmp), metadata={"format": CLASSIFIER_FORMAT, "game": game})
    meta = {
        "format": CLASSIFIER_FORMAT,
        "game": game,
        "file": CLASSIFIER_FILE,
        "classes": list(clf.classes),
        "z_what_dim": clf.z_what_dim,
        "centroids": int(clf.centroids.shape[0]),
        "max_ratio": clf.max_ratio,
        "size_dims": clf.size_dims,
        "colour_dims": clf.colour_dims,
        "extents": {c: {k: list(v) for k, v in b.items()} for c, b in clf.extents.items()},
        "hud_regions": clf.hud_regions,
        "withheld": list(clf.withheld),
        # A rate over no samples is NaN, which strict JSON (and read_classifier) refuses.
        "info": finite_for_json(clf.info),
    }
    return atomic_write_text(folder / CLASSIFIER_JSON, json.dumps(meta, indent=2, allow_nan=False) + "\n")


def has_classifier(folder: str | Path) -> bool:
    """Whether ``folder`` holds a classifier in any format (the legacy pickle included).

    :func:`load_classifier` refuses the legacy one with the command that re-fits it.
    """
    folder = Path(folder)
    return any(os.path.lexists(folder / n) for n in (CLASSIFIER_FILE, CLASSIFIER_JSON, LEGACY_CLASSIFIER_FILE))


def _short(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile file can hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _legacy_error(folder: Path, game: str | None) -> CorruptWeightsError:
    name = game or "<Game>"
    return CorruptWeightsError(
        f"{folder / LEGACY_CLASSIFIER_FILE} is a legacy pickled classifier (format "
        f"moc_envs.classifier/1); pickles can run code, so it is never loaded. Re-fit it in the "
        f"safe format ({CLASSIFIER_FILE} + {CLASSIFIER_JSON}) with:\n  {refit_command(folder, name)}"
        f"\nthen delete {LEGACY_CLASSIFIER_FILE} (a folder without manifest.json needs one first: "
        f"re-export it, or record the files you trust with moc-envs manifest {folder} "
        f"--game {name})"
    )


def load_classifier(folder: str | Path, game: str | None = None) -> ZWhatClassifier:
    """Load the classifier of weights folder ``folder`` after verifying the folder's manifest.

    Raises MissingWeightsError when the folder has no classifier and CorruptWeightsError when it
    only has the legacy pickle, when the manifest does not check out, or when the classifier
    is malformed, names another game or cannot fill any slot of ``game``.
    """
    folder = Path(folder)
    # lexists: a FIFO or symlink in its place is refused by the manifest check, not called missing.
    if not os.path.lexists(folder / CLASSIFIER_FILE):
        if os.path.lexists(folder / LEGACY_CLASSIFIER_FILE):
            raise _legacy_error(folder, game)
        raise MissingWeightsError(
            f"classifier file {folder / CLASSIFIER_FILE} is missing; fit one with:\n  "
            f"{refit_command(folder, game or '<Game>')}"
        )
    return read_classifier(verify_folder(folder, game), game)


def read_classifier(files: VerifiedFolder, game: str | None = None) -> ZWhatClassifier:
    """The classifier of a verified weights folder (both files must be listed in its manifest).

    ``game``: the game it must be for; its categories must fill at least one observation slot.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    folder = files.folder
    j_path, a_path = folder / CLASSIFIER_JSON, folder / CLASSIFIER_FILE
    if not files.listed(CLASSIFIER_JSON) and files.listed(LEGACY_CLASSIFIER_FILE):
        raise _legacy_error(folder, game)
    meta = files.read_json(CLASSIFIER_JSON)
    if not isinstance(meta, dict):
        raise CorruptWeightsError(f"{j_path} must hold a JSON object, got {type(meta).__name__}")
    fmt = meta.get("format")
    if fmt == "moc_envs.classifier/1":
        raise _legacy_error(folder, game)
    if fmt != CLASSIFIER_FORMAT:
        raise CorruptWeightsError(f"{j_path} has format {fmt!r}, expected {CLASSIFIER_FORMAT!r}")
    if game is not None and meta.get("game") != game:
        raise CorruptWeightsError(f"{j_path} holds a classifier for game {meta.get('game')!r}, not {game!r}")
    blob = files.read_bytes(CLASSIFIER_FILE)
    tags = safetensors_metadata(blob, a_path)
    if tags.get("format") != CLASSIFIER_FORMAT or tags.get("game") != meta.get("game"):
        raise CorruptWeightsError(
            f"{a_path} is tagged format {tags.get('format')!r}, game {tags.get('game')!r}; "
            f"{j_path} says format {CLASSIFIER_FORMAT!r}, game {meta.get('game')!r}"
        )
    try:
        arrays = load(blob)
    except (SafetensorError, ValueError) as err:
        raise CorruptWeightsError(f"{a_path} is not a readable safetensors file: {err}") from err
    missing = [n for n in _ARRAYS if n not in arrays]
    if missing or set(arrays) - set(_ARRAYS):
        raise CorruptWeightsError(
            f"{a_path} must hold exactly the arrays {', '.join(_ARRAYS)}, got {', '.join(sorted(arrays))}"
        )
    try:
        classes = meta["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise TypeError(f"classes must be a list of strings, got {_short(classes)}")
        settings = {k: meta.get(k, d) for k, d in (("max_ratio", 1.0), ("size_dims", 0), ("colour_dims", 0))}
        for key, value in settings.items():
            kind, allowed = ("a number", int | float) if key == "max_ratio" else ("an integer", int)
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise TypeError(f"{key} must be {kind} in {j_path.name}, got {_short(value)}")
        info = meta.get("info") or {}
        if not isinstance(info, dict):
            raise TypeError(f"info must be a JSON object in {j_path.name}, got {type(info).__name__}")
        clf = ZWhatClassifier(
            extents=meta.get("extents") or {},
            hud_regions=meta.get("hud_regions") or [],
            withheld=meta.get("withheld") or [],
            classes=tuple(classes),
            info=dict(info),
            max_ratio=float(settings["max_ratio"]),
            size_dims=settings["size_dims"],
            colour_dims=settings["colour_dims"],
            **{n: arrays[n] for n in _ARRAYS},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptWeightsError(f"{folder} does not hold a valid z_what classifier: {err}") from err
    if game is not None:
        spec = get_game(game)
        if not set(clf.classes) & set(spec.category_names):
            raise CorruptWeightsError(
                f"{j_path}: the classifier's categories ({', '.join(clf.classes)}) fill no observation "
                f"slot of {spec.name} (its categories: {', '.join(spec.category_names)}); every "
                f"detection would be dropped. Re-fit it with:\n  {refit_command(folder, spec.name)}"
            )
    return clf
