"""The ``lane`` readout: one byte per lane (a horizontal band of the screen) of what crosses it.

Two ways to read a lane, by whether the readout has a facing classifier:

- Formations (a classifier): Seaquest's enemies come in formations of up to three sprites 16 px
  apart in each of four lanes; the lane's byte (``enemy_obstacle_x_i``) is where the formation's
  first place starts, whether or not a sprite is in it, so the leftmost box alone does not give
  it: a lone shark crossing to the right sits in the formation's last place, one crossing to the
  left in its first. The readout reads which way the lane's sprites face (a
  :class:`~moc_envs.readouts.direction.SpriteClassifier` with the classes 0 = facing left,
  1 = facing right, its probabilities averaged over the lane's boxes) and takes the leading box,
  the leftmost when they face left and the rightmost when they face right:
  ``byte = (x + offsets[facing]) mod wrap``. Needs the frame.
- One object a lane (no classifier): Seaquest's diver or enemy torpedo of each lane. The lane's
  leftmost box gives ``byte = (x + offsets[0] + category_offsets[category]) mod wrap`` (a torpedo
  is drawn 3 px right of its byte). Two rules drop boxes that are no such object: ``hidden_by``
  (a box on the spot of a shown box of those categories: the detector's second guess at a shark)
  and ``requires`` (a box of a category counts only while the lane shows one of the named
  categories: a torpedo only beside a submarine, so an explosion's debris is not one).

In both, a box cut by the left border (starting at or before ``clip[0]`` and narrower than
``clip[1]``) is read from its right edge, and one starting left of the border (nothing is drawn
there: a detection of the wrap-around's debris) is not read. A lane with no box is left out.
Every number, and which of the rules help, is fitted from play (:mod:`trainers.readouts.fit_lane`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import Readout, check_keys, check_labels, check_number
from moc_envs.readouts.direction import SpriteClassifier, lit_window

__all__ = ["COINCIDE", "LaneReadout"]

COINCIDE = (2.0, 3.0)
"""Boxes whose top-left corners are this close (x, y pixels) are on the same spot (``hidden_by``)."""


def _pair(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"readout 'lane': {name} must be a pair of numbers, got {value!r}")
    return check_number(name, value[0]), check_number(name, value[1])


def _categories(name: str, value: object, known: Mapping[str, range], empty: bool = False) -> tuple[str, ...]:
    cats = tuple(value) if isinstance(value, list | tuple) else None
    if cats is None or (not cats and not empty) or not all(isinstance(c, str) and c in known for c in cats):
        raise ValueError(f"readout 'lane': {name} must be a list of some of {sorted(known)}, got {value!r}")
    return cats


class LaneReadout(Readout):
    """One label per lane: the byte of the formation or object crossing it (module docstring)."""

    kind: ClassVar[str] = "lane"

    def __init__(
        self,
        spec: GameSpec,
        labels: Sequence[str],
        regions: Sequence[Sequence[float]],
        categories: Sequence[str],
        classifier: SpriteClassifier | None,
        offsets: Sequence[float],
        clip: Sequence[float],
        wrap: int = 256,
        category_offsets: Mapping[str, float] | None = None,
        hidden_by: Sequence[str] = (),
        requires: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``labels[i]`` reads the boxes of ``categories`` centred in ``regions[i]`` = [y lo, y hi);
        ``offsets``: [facing left, facing right] with a classifier, [offset] without."""
        self.labels = check_labels(spec, list(labels), self.kind)
        if not isinstance(regions, list | tuple) or len(regions) != len(self.labels):
            raise ValueError(f"readout 'lane': regions must hold one [lo, hi] per label ({len(self.labels)}), got {regions!r}")
        self.regions = tuple(_pair("region", r) for r in regions)
        if any(lo >= hi for lo, hi in self.regions):
            raise ValueError(f"readout 'lane': each region needs lo < hi, got {list(self.regions)}")
        known = spec.slot_ranges
        self.categories = _categories("categories", categories, known)
        if classifier is not None and (not isinstance(classifier, SpriteClassifier) or classifier.values != (0, 1)):
            raise ValueError("readout 'lane': classifier must be a SpriteClassifier with values [0, 1] (left, right), or none")
        if isinstance(wrap, bool) or not isinstance(wrap, int) or not 1 <= wrap <= 256:
            raise ValueError(f"readout 'lane': wrap must be an integer 1..256, got {wrap!r}")
        n = 2 if classifier is not None else 1
        if not isinstance(offsets, list | tuple) or len(offsets) != n:
            raise ValueError(f"readout 'lane': offsets must hold {n} number(s) ({'left, right' if n == 2 else 'one'}), got {offsets!r}")
        self.classifier = classifier
        self.offsets = tuple(check_number("offset", o) for o in offsets)
        self.clip = _pair("clip", clip)
        self.wrap = wrap
        cat_off = dict(category_offsets) if isinstance(category_offsets, Mapping) else {}
        if not isinstance(category_offsets, Mapping | None) or not set(cat_off) <= set(self.categories):
            raise ValueError(f"readout 'lane': category_offsets must map some of {list(self.categories)} to numbers, got {category_offsets!r}")
        self.category_offsets = {c: check_number("category offset", v) for c, v in cat_off.items()}
        self.hidden_by = _categories("hidden_by", hidden_by, known, empty=True)
        req = requires or {}
        if not isinstance(req, Mapping) or not set(req) <= set(self.categories):
            raise ValueError(f"readout 'lane': requires must map some of {list(self.categories)} to categories, got {requires!r}")
        self.requires = {c: _categories("requires", v, known) for c, v in req.items()}
        self._known = known

    def _shown(self, objects: Sequence[Detection], cats: Sequence[str]) -> list[Detection]:
        return [d for d in objects if d.category in cats and d.slot in self._known[d.category]]

    def lane_boxes(self, objects: Sequence[Detection], lane: int) -> list[Detection]:
        """The shown boxes the lane ``lane`` is read from, left to right: of the readout's
        categories, centred in the lane, starting at or right of the clip border, and kept by
        the ``hidden_by`` and ``requires`` rules."""
        lo, hi = self.regions[lane]

        def in_lane(d: Detection) -> bool:
            return lo <= d.center[1] < hi

        boxes = [d for d in self._shown(objects, self.categories) if in_lane(d) and d.x >= self.clip[0] - 0.5]
        if self.hidden_by:
            cover = self._shown(objects, self.hidden_by)
            dx, dy = COINCIDE
            boxes = [
                d for d in boxes
                if not any(c is not d and abs(c.x - d.x) <= dx and abs(c.y - d.y) <= dy for c in cover)
            ]  # fmt: skip
        for cat, needed in self.requires.items():
            if not any(in_lane(d) for d in self._shown(objects, needed)):
                boxes = [d for d in boxes if d.category != cat]
        return sorted(boxes, key=lambda d: d.x)

    def facing(self, frame: np.ndarray, boxes: Sequence[Detection]) -> int:
        """0 when the lane's sprites face left, 1 right (their mean probabilities)."""
        if self.classifier is None:
            raise ValueError("readout 'lane': a lane without a classifier reads no facing")
        p = np.mean([self.classifier.probabilities(lit_window(frame, b, self.classifier.size)) for b in boxes], axis=0)
        return int(np.argmax(p))

    def start(self, box: Detection) -> float:
        """Where ``box``'s sprite starts (frame x), read from its right edge when the border cuts it."""
        border, nominal = self.clip
        if box.x <= border + 0.5 and box.w < nominal - 0.5:
            return box.x + box.w - nominal
        return box.x

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """Each lane's byte; lanes with no box (and, for formations, every lane without a frame) left out."""
        if self.classifier is not None and frame is None:
            return {}
        out: dict[str, int] = {}
        for lane, label in enumerate(self.labels):
            boxes = self.lane_boxes(objects, lane)
            if not boxes:
                continue
            if self.classifier is not None:
                assert frame is not None
                side = self.facing(frame, boxes)
                lead, offset = (boxes[-1] if side == 1 else boxes[0]), self.offsets[side]
            else:
                lead, offset = boxes[0], self.offsets[0]
            offset += self.category_offsets.get(lead.category, 0.0)
            out[label] = int(round(self.start(lead) + offset)) % self.wrap
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {
            "kind": self.kind, "labels": list(self.labels), "regions": [list(r) for r in self.regions],
            "categories": list(self.categories),
            "classifier": self.classifier.to_json() if self.classifier is not None else None,
            "offsets": list(self.offsets), "clip": list(self.clip), "wrap": self.wrap,
            "category_offsets": dict(self.category_offsets), "hidden_by": list(self.hidden_by),
            "requires": {c: list(v) for c, v in self.requires.items()},
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> LaneReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(
            row, ("labels", "regions", "categories", "classifier", "offsets", "clip", "wrap"),
            ("category_offsets", "hidden_by", "requires"),
        )  # fmt: skip
        clf = row["classifier"]
        if clf is not None and not isinstance(clf, Mapping):
            raise ValueError(f"readout 'lane': classifier must be a JSON object or null, got {type(clf).__name__}")
        return cls(
            spec, row["labels"], row["regions"], row["categories"],
            SpriteClassifier.from_json(clf) if clf is not None else None,
            row["offsets"], row["clip"], row["wrap"], row.get("category_offsets"), row.get("hidden_by", ()),
            row.get("requires"),
        )  # fmt: skip
