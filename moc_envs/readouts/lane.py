"""The ``lane`` readout: one byte per lane for a formation of sprites that crosses it together.

Seaquest's enemies come in formations of up to three sprites 16 px apart in each of four lanes;
the lane's byte (``enemy_obstacle_x_i``) is where the formation's first place starts, whether or
not a sprite is in it, so the leftmost box alone does not give it: a lone shark crossing to the
right sits in the formation's last place, one crossing to the left in its first. The readout
reads which way the lane's sprites face (a :class:`~moc_envs.readouts.direction.SpriteClassifier`
with the classes 0 = facing left, 1 = facing right, its probabilities averaged over the lane's
boxes) and takes the leading box, the leftmost when they face left and the rightmost when they
face right: ``byte = (x + offsets[facing]) mod wrap``. A box cut by the left border (starting at
or before ``clip[0]`` and narrower than ``clip[1]``) is read from its right edge; one starting
left of the border (nothing is drawn there: a detection of the wrap-around's debris) is not read.
A lane with no box is left out. Offsets, clip and classifier are fitted from play (:mod:`trainers.readouts.fit_lane`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import Readout, check_keys, check_labels, check_number
from moc_envs.readouts.direction import SpriteClassifier, lit_window

__all__ = ["LaneReadout"]


def _pair(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"readout 'lane': {name} must be a pair of numbers, got {value!r}")
    return check_number(name, value[0]), check_number(name, value[1])


class LaneReadout(Readout):
    """One label per lane: the byte of the formation crossing it (module docstring)."""

    kind: ClassVar[str] = "lane"

    def __init__(
        self,
        spec: GameSpec,
        labels: Sequence[str],
        regions: Sequence[Sequence[float]],
        categories: Sequence[str],
        classifier: SpriteClassifier,
        offsets: Sequence[float],
        clip: Sequence[float],
        wrap: int = 256,
    ) -> None:
        """``labels[i]`` reads the boxes of ``categories`` centred in ``regions[i]`` = [y lo, y hi)."""
        self.labels = check_labels(spec, list(labels), self.kind)
        if not isinstance(regions, list | tuple) or len(regions) != len(self.labels):
            raise ValueError(f"readout 'lane': regions must hold one [lo, hi] per label ({len(self.labels)}), got {regions!r}")
        self.regions = tuple(_pair("region", r) for r in regions)
        if any(lo >= hi for lo, hi in self.regions):
            raise ValueError(f"readout 'lane': each region needs lo < hi, got {list(self.regions)}")
        known = spec.slot_ranges
        cats = tuple(categories) if isinstance(categories, list | tuple) else ()
        if not cats or not all(isinstance(c, str) and c in known for c in cats):
            raise ValueError(f"readout 'lane': categories must be some of {sorted(known)}, got {categories!r}")
        if not isinstance(classifier, SpriteClassifier) or classifier.values != (0, 1):
            raise ValueError("readout 'lane': classifier must be a SpriteClassifier with values [0, 1] (left, right)")
        if isinstance(wrap, bool) or not isinstance(wrap, int) or not 1 <= wrap <= 256:
            raise ValueError(f"readout 'lane': wrap must be an integer 1..256, got {wrap!r}")
        self.categories = cats
        self.classifier = classifier
        self.offsets = _pair("offsets", offsets)
        self.clip = _pair("clip", clip)
        self.wrap = wrap
        self._slots = {c: known[c] for c in cats}

    def lane_boxes(self, objects: Sequence[Detection], lane: int) -> list[Detection]:
        """The shown boxes of the readout's categories centred in lane ``lane`` and starting at
        or right of the clip border, left to right."""
        lo, hi = self.regions[lane]
        boxes = [
            d for d in objects
            if d.category in self._slots and d.slot in self._slots[d.category] and lo <= d.center[1] < hi
            and d.x >= self.clip[0] - 0.5
        ]  # fmt: skip
        return sorted(boxes, key=lambda d: d.x)

    def facing(self, frame: np.ndarray, boxes: Sequence[Detection]) -> int:
        """0 when the lane's sprites face left, 1 right (their mean probabilities)."""
        p = np.mean([self.classifier.probabilities(lit_window(frame, b, self.classifier.size)) for b in boxes], axis=0)
        return int(np.argmax(p))

    def start(self, box: Detection) -> float:
        """Where ``box``'s sprite starts (frame x), read from its right edge when the border cuts it."""
        border, nominal = self.clip
        if box.x <= border + 0.5 and box.w < nominal - 0.5:
            return box.x + box.w - nominal
        return box.x

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """Each lane's byte from its leading box; lanes with no box, or no frame, left out."""
        if frame is None:
            return {}
        out: dict[str, int] = {}
        for lane, label in enumerate(self.labels):
            boxes = self.lane_boxes(objects, lane)
            if not boxes:
                continue
            side = self.facing(frame, boxes)
            lead = boxes[-1] if side == 1 else boxes[0]
            out[label] = int(round(self.start(lead) + self.offsets[side])) % self.wrap
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {
            "kind": self.kind, "labels": list(self.labels), "regions": [list(r) for r in self.regions],
            "categories": list(self.categories), "classifier": self.classifier.to_json(),
            "offsets": list(self.offsets), "clip": list(self.clip), "wrap": self.wrap,
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> LaneReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "regions", "categories", "classifier", "offsets", "clip", "wrap"))
        clf = row["classifier"]
        if not isinstance(clf, Mapping):
            raise ValueError(f"readout 'lane': classifier must be a JSON object, got {type(clf).__name__}")
        return cls(
            spec, row["labels"], row["regions"], row["categories"], SpriteClassifier.from_json(clf),
            row["offsets"], row["clip"], row["wrap"],
        )  # fmt: skip
