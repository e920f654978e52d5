"""The ``direction`` readout: which way a sprite faces or a shot flies, as the game's byte.

Two cues, one per readout:

- ``"sprite"``: the sprite of the category's tracked box, seen through a fixed window centred on
  the box (the pixels unlike the surrounding background, so a colour change does not matter),
  goes through a small softmax classifier (:class:`SpriteClassifier`) whose classes are the
  byte's values (Seaquest's submarine: 0 facing right, 8 left; MsPacman: the mouth's side). A
  read below ``min_confidence`` (MsPacman's closed mouth) is no read.
- ``"side"``: which side of another category's box (the reference) the box lies on (Seaquest's
  torpedo leaves the submarine on the side it faces), each side mapped to a byte. With a
  classifier too, a step without the box reads the reference's own sprite instead (Seaquest's
  torpedo byte follows the submarine's heading between shots).

With ``hold`` a step without a read gives the last value read since the episode started (the
byte keeps the heading of a shot gone, or of a sprite drawn with its mouth shut); without a read
since then the label is left out. With ``respawn`` = [gap, steps], once the watched box (the
reference's for ``"side"``, the category's for ``"sprite"``) shows again after ``gap`` or more
steps away (a life lost), the label keeps its last value for ``steps`` steps: Seaquest's torpedo
byte stays as it was while the new submarine waits at the surface, whichever way it is drawn. Weights and tables are fitted from play with RAM as the
teacher (:mod:`trainers.readouts.fit_direction`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import (
    Readout,
    check_byte,
    check_keys,
    check_labels,
    check_number,
    in_colours,
)

__all__ = ["BORDER_SHARE", "DirectionReadout", "SpriteClassifier", "lit_window", "slot_box"]

BORDER_SHARE = 0.1
"""A colour on this share of a window's border or more is background (:func:`lit_window`)."""

CUES = ("sprite", "side")
"""The cues a direction readout reads (module docstring)."""


def lit_window(frame: np.ndarray, box: Detection, size: tuple[int, int]) -> np.ndarray:
    """(h * w,) float32: the ``size`` = (h, w) window of ``frame`` centred on ``box``, 1 where a
    pixel has the sprite's colour.

    The sprite's colour is the commonest colour inside the box that is not the background's: a
    colour covering :data:`BORDER_SHARE` or more of the window's border is background (open
    water, a maze's corridor and walls), so neither a band of the surface nor a wall beside the
    sprite is taken for it, and a sprite that changes colour is read alike. Outside the frame
    is never lit.
    """
    h, w = size
    fh, fw = frame.shape[:2]
    cx, cy = box.center
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    win = np.full((h, w), -1, dtype=np.int64)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, fw), min(y0 + h, fh)
    if fx1 > fx0 and fy1 > fy0:
        rgb = frame[fy0:fy1, fx0:fx1].astype(np.int64)
        win[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    border = np.concatenate([win[0], win[-1], win[1:-1, 0], win[1:-1, -1]])
    colours, counts = np.unique(border, return_counts=True)
    background = set(colours[counts >= BORDER_SHARE * len(border)].tolist()) | {-1}
    bx0, by0 = max(int(round(box.x)) - x0, 0), max(int(round(box.y)) - y0, 0)
    bx1, by1 = min(int(round(box.x + box.w)) - x0, w), min(int(round(box.y + box.h)) - y0, h)
    inner = win[by0:by1, bx0:bx1].ravel()
    inner = inner[~in_colours(inner, list(background))]
    if len(inner) == 0:
        return np.zeros(h * w, dtype=np.float32)
    colours, counts = np.unique(inner, return_counts=True)
    return (win == colours[int(np.argmax(counts))]).astype(np.float32).ravel()


def slot_box(objects: Sequence[Detection], rows: range) -> Detection | None:
    """The tracked box in the first of ``rows`` that holds one (None: none shown)."""
    shown = [d for d in objects if d.slot in rows]
    return min(shown, key=lambda d: d.slot) if shown else None


class SpriteClassifier:
    """A softmax classifier of a sprite's :func:`lit_window`: ``weights`` (classes, h * w + 1),
    the last column the bias; class ``i`` means byte ``values[i]``."""

    def __init__(self, size: Sequence[int], values: Sequence[int], weights: Sequence[Sequence[float]]) -> None:
        """Check shapes and numbers (ValueError on anything malformed)."""
        if not isinstance(size, list | tuple) or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64 for v in size):
            raise ValueError(f"window must be [h, w], each an integer 1..64, got {size!r}")
        if not isinstance(values, list | tuple) or len(values) < 2:
            raise ValueError(f"values must list at least two bytes, got {values!r}")
        self.values = tuple(check_byte("value", v) for v in values)
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"values must differ, got {list(self.values)}")
        self.size = (int(size[0]), int(size[1]))
        dim = self.size[0] * self.size[1] + 1
        if not isinstance(weights, list | tuple | np.ndarray) or len(weights) != len(self.values):
            raise ValueError(f"weights must hold one row per value ({len(self.values)}), got {type(weights).__name__}")
        rows = []
        for row in weights:
            if not isinstance(row, list | tuple | np.ndarray) or len(row) != dim:
                raise ValueError(f"each weights row must hold {dim} numbers (window pixels and a bias)")
            rows.append([check_number("weight", float(v) if isinstance(v, np.floating) else v) for v in row])
        self.weights = np.array(rows, dtype=np.float64)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(classes,) softmax probabilities of one :func:`lit_window`."""
        z = self.weights[:, :-1] @ features + self.weights[:, -1]
        z = np.exp(z - z.max())
        return z / z.sum()

    def classify(self, frame: np.ndarray, box: Detection) -> tuple[int, float]:
        """The byte the sprite in ``box`` shows, and the classifier's confidence in it."""
        p = self.probabilities(lit_window(frame, box, self.size))
        i = int(np.argmax(p))
        return self.values[i], float(p[i])

    def to_json(self) -> dict[str, Any]:
        """JSON: window, values, weights (lists)."""
        return {"window": list(self.size), "values": list(self.values), "weights": self.weights.tolist()}

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> SpriteClassifier:
        """Rebuild from :meth:`to_json` (ValueError on anything malformed)."""
        check_keys(row, ("window", "values", "weights"))
        return cls(row["window"], row["values"], row["weights"])


class DirectionReadout(Readout):
    """One label: a heading read from a sprite or from which side of another box it lies
    (module docstring)."""

    kind: ClassVar[str] = "direction"

    def __init__(
        self,
        spec: GameSpec,
        label: str,
        category: str,
        cue: str,
        classifier: SpriteClassifier | None = None,
        min_confidence: float = 0.0,
        reference: str | None = None,
        sides: Sequence[int] | None = None,
        hold: bool = False,
        respawn: Sequence[int] | None = None,
    ) -> None:
        """``category``: the slot category whose box is read; ``cue``: ``"sprite"`` (needs
        ``classifier``, reads only at ``min_confidence`` or above) or ``"side"`` (needs
        ``reference``, a slot category, and ``sides`` = [byte when the box lies left of the
        reference's centre, byte when right]; an optional ``classifier`` then reads the
        reference's sprite when the box is not shown); ``hold``: repeat the last read on steps
        without one; ``respawn``: [gap, steps] (module docstring)."""
        self.labels = check_labels(spec, [label], self.kind)
        ranges = spec.slot_ranges
        if not isinstance(category, str) or category not in ranges:
            raise ValueError(f"readout 'direction': category must be one of {sorted(ranges)}, got {category!r}")
        if cue not in CUES:
            raise ValueError(f"readout 'direction': cue must be one of {list(CUES)}, got {cue!r}")
        if not isinstance(hold, bool):
            raise ValueError(f"readout 'direction': hold must be true or false, got {hold!r}")
        self.min_confidence = check_number("min_confidence", min_confidence)
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in 0..1, got {self.min_confidence}")
        if cue == "sprite":
            if not isinstance(classifier, SpriteClassifier) or reference is not None or sides is not None:
                raise ValueError("readout 'direction': cue 'sprite' takes a classifier and no reference or sides")
        else:
            if classifier is not None and not isinstance(classifier, SpriteClassifier):
                raise ValueError(f"readout 'direction': classifier must be a SpriteClassifier, got {type(classifier).__name__}")
            if not isinstance(reference, str) or reference not in ranges:
                raise ValueError(
                    f"readout 'direction': cue 'side' takes a reference among {sorted(ranges)}, got {reference!r}"
                )
            if not isinstance(sides, list | tuple) or len(sides) != 2:
                raise ValueError(f"readout 'direction': sides must be [byte left, byte right], got {sides!r}")
            sides = tuple(check_byte("side", v) for v in sides)
        if respawn is not None:
            if (
                not isinstance(respawn, list | tuple) or len(respawn) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100_000 for v in respawn)
            ):  # fmt: skip
                raise ValueError(f"readout 'direction': respawn must be [gap, steps], two integers 1..100000, got {respawn!r}")
            respawn = (int(respawn[0]), int(respawn[1]))
        self.respawn = respawn
        self.label, self.category, self.cue = label, category, cue
        self.classifier, self.reference, self.sides, self.hold = classifier, reference, sides, hold
        self._rows = ranges[category]
        self._ref_rows = ranges[reference] if reference is not None else None
        self._watch_rows = self._ref_rows if self._ref_rows is not None else self._rows
        self._last: int | None = None
        self._seen, self._away, self._frozen = False, 0, 0

    def reset(self) -> None:
        """Episode start: forget the last value read and the watched box's history."""
        self._last = None
        self._seen, self._away, self._frozen = False, 0, 0

    def _respawned(self, objects: Sequence[Detection]) -> bool:
        """Whether this step is within ``respawn``'s steps of the watched box showing again."""
        if self.respawn is None:
            return False
        if slot_box(objects, self._watch_rows) is None:
            self._away += 1
        else:
            if self._seen and self._away >= self.respawn[0]:
                self._frozen = self.respawn[1]
            self._seen, self._away = True, 0
        if self._frozen > 0:
            self._frozen -= 1
            return True
        return False

    def cue_value(self, objects: Sequence[Detection], frame: np.ndarray | None) -> int | None:
        """The byte this step's cue shows, or None (box absent, no frame, or an unsure read)."""
        box = slot_box(objects, self._rows)
        if self.cue == "sprite":
            return self._sprite(box, frame)
        assert self._ref_rows is not None and self.sides is not None
        ref = slot_box(objects, self._ref_rows)
        if ref is None:
            return None
        if box is None:
            return self._sprite(ref, frame)
        if box.center[0] == ref.center[0]:
            return None
        return self.sides[1] if box.center[0] > ref.center[0] else self.sides[0]

    def _sprite(self, box: Detection | None, frame: np.ndarray | None) -> int | None:
        if box is None or frame is None or self.classifier is None:
            return None
        value, confidence = self.classifier.classify(frame, box)
        return value if confidence >= self.min_confidence else None

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The label from this step's cue, else (``hold``) the last one read since reset; the last
        one while a ``respawn`` holds it."""
        if self._respawned(objects):
            return {self.label: self._last} if self._last is not None else {}
        value = self.cue_value(objects, frame)
        if value is None and self.hold:
            value = self._last
        elif value is not None:
            self._last = value
        return {self.label: value} if value is not None else {}

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        row: dict[str, Any] = {
            "kind": self.kind, "labels": [self.label], "category": self.category, "cue": self.cue,
            "hold": self.hold, "min_confidence": self.min_confidence,
        }  # fmt: skip
        if self.classifier is not None:
            row["classifier"] = self.classifier.to_json()
        if self.reference is not None:
            row["reference"] = self.reference
            row["sides"] = list(self.sides or ())
        if self.respawn is not None:
            row["respawn"] = list(self.respawn)
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> DirectionReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "category", "cue", "hold", "min_confidence"), ("classifier", "reference", "sides", "respawn"))
        labels = check_labels(spec, row["labels"], cls.kind)
        if len(labels) != 1:
            raise ValueError(f"readout 'direction' gives one label, got {list(labels)}")
        for key in ("category", "cue"):
            if not isinstance(row[key], str):
                raise ValueError(f"readout 'direction': {key} must be a string, got {row[key]!r}")
        clf = row.get("classifier")
        if clf is not None and not isinstance(clf, Mapping):
            raise ValueError(f"readout 'direction': classifier must be a JSON object, got {type(clf).__name__}")
        return cls(
            spec, labels[0], row["category"], row["cue"],
            classifier=SpriteClassifier.from_json(clf) if clf is not None else None,
            min_confidence=row["min_confidence"], reference=row.get("reference"), sides=row.get("sides"),
            hold=row["hold"], respawn=row.get("respawn"),
        )  # fmt: skip
