"""The ``bits`` readout: RAM bytes whose bits each show as a patch of the frame (Breakout's brick wall).

Each label's byte is ``base`` plus the bits whose patch is lit. A bit is read from one or more
probe pixels, each a ``[bit, y, x, [r, g, b]]`` row: the pixel ``(y, x)`` of the RGB frame is lit
when its colour differs from the probe's background colour ``[r, g, b]``. A bit is set when every
probe of it that no object covers is lit (several probes per bit, spread over its patch, keep a
ball that passes over a gone brick from lighting it: the ball covers one of them, not all). The
step's detections of the row's ``categories`` (the game's moving objects; not the boxes a detector
may put on the wall itself, which show the wall) cover the probes inside their box grown by
``margin`` pixels, and a covered probe is not looked at; a bit whose probes are all covered cannot
be read, and then neither can its byte (left out, never guessed). ``base`` holds
the bits the frame never shows (constant in the fitting play), so a byte with a bit that varies
but shows nowhere is not a readout of this kind at all.

Probes, backgrounds and bases are fitted from play with the RAM as the teacher
(:mod:`trainers.readouts.fit_bits`): no pixel position is written by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.errors import FrameFormatError
from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import Readout, check_byte, check_keys, check_labels

__all__ = ["BitsReadout", "Probe"]

Probe = tuple[int, int, int, tuple[int, int, int]]
"""``(bit, y, x, background)``: the pixel ``(y, x)`` shows ``bit`` lit when its colour is not
``background``."""

MAX_MARGIN = 16
"""The largest margin (pixels) a row may grow object boxes by."""


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _probe(label: str, row: object) -> Probe:
    """One probe row ``[bit, y, x, [r, g, b]]``, checked."""
    if not isinstance(row, list | tuple) or len(row) != 4:
        raise ValueError(f"readout 'bits', {label}: a probe must be [bit, y, x, [r, g, b]], got {row!r}")
    bit = _int(f"{label}: probe bit", row[0], 0, 7)
    y = _int(f"{label}: probe y", row[1], 0, 209)
    x = _int(f"{label}: probe x", row[2], 0, 159)
    colour = row[3]
    if not isinstance(colour, list | tuple) or len(colour) != 3:
        raise ValueError(f"readout 'bits', {label}: a probe's background must be [r, g, b], got {colour!r}")
    rgb = tuple(_int(f"{label}: background channel", c, 0, 255) for c in colour)
    return (bit, y, x, (rgb[0], rgb[1], rgb[2]))


class BitsReadout(Readout):
    """Bytes read bit by bit from probe pixels (module docstring)."""

    kind: ClassVar[str] = "bits"

    def __init__(
        self,
        spec: GameSpec,
        labels: Sequence[str],
        bases: Sequence[int],
        probes: Sequence[Sequence[Probe]],
        categories: Sequence[str],
        margin: int = 1,
    ) -> None:
        """``labels``: RAM labels of ``spec``; per label its ``base`` (bits never drawn) and its
        probes (at least one; a bit may have several, never one also in ``base``); ``margin``:
        pixels each object box grows by when checking which probes it covers."""
        self.labels = check_labels(spec, labels, self.kind)
        n = len(self.labels)
        if not isinstance(bases, list | tuple) or len(bases) != n:
            raise ValueError(f"readout 'bits': one base per label ({n}) expected, got {bases!r}")
        if not isinstance(probes, list | tuple) or len(probes) != n:
            raise ValueError(f"readout 'bits': one probe list per label ({n}) expected, got {probes!r:.200}")
        self.margin = _int("readout 'bits': margin", margin, 0, MAX_MARGIN)
        known = set(spec.slot_ranges)
        if not isinstance(categories, list | tuple) or not all(isinstance(c, str) and c in known for c in categories):
            raise ValueError(f"readout 'bits': categories must be a list of some of {sorted(known)}, got {categories!r}")
        if len(set(categories)) != len(categories):
            raise ValueError(f"readout 'bits': a category is named twice in {list(categories)}")
        self.categories = tuple(categories)
        self.bases = tuple(check_byte(f"readout 'bits', {lab}: base", b) for lab, b in zip(self.labels, bases, strict=True))
        rows: list[tuple[Probe, ...]] = []
        for lab, base, plist in zip(self.labels, self.bases, probes, strict=True):
            if not isinstance(plist, list | tuple) or not plist:
                raise ValueError(f"readout 'bits', {lab}: probes must be a non-empty list, got {plist!r}")
            checked = tuple(_probe(lab, p) for p in plist)
            if len({(p[0], p[1], p[2]) for p in checked}) != len(checked):
                raise ValueError(f"readout 'bits', {lab}: a probe (bit, y, x) is listed twice")
            both = sorted({p[0] for p in checked if base >> p[0] & 1})
            if both:
                raise ValueError(f"readout 'bits', {lab}: bits {both} are both in base {base} and probed; expected one or the other")
            rows.append(tuple(sorted(checked)))
        self.probes = tuple(rows)
        # Flat arrays for a vectorised read: probes sorted by (byte, bit), one group per (byte, bit).
        flat = [(i, p) for i, plist in enumerate(self.probes) for p in plist]
        self._y = np.array([p[1] for _, p in flat], dtype=np.intp)
        self._x = np.array([p[2] for _, p in flat], dtype=np.intp)
        self._bg = np.array([p[3] for _, p in flat], dtype=np.uint8).reshape(-1, 3)
        keys = [(i, p[0]) for i, p in flat]
        starts = [k for k in range(len(keys)) if k == 0 or keys[k] != keys[k - 1]]
        self._starts = np.array(starts, dtype=np.intp)
        self._group_byte = np.array([keys[k][0] for k in starts], dtype=np.intp)
        self._group_weight = np.array([1 << keys[k][1] for k in starts], dtype=np.int64)

    def covered(self, objects: Sequence[Detection]) -> np.ndarray:
        """(P,) bool: the probes (flat, in :attr:`probes` order) inside a grown box of one of
        :attr:`categories`."""
        out = np.zeros(len(self._y), dtype=bool)
        m = self.margin
        for d in objects:
            if d.category not in self.categories:
                continue
            # Pixel (x, y) spans [x, x + 1): it meets the box when it overlaps the grown interval.
            out |= (self._x + 1 > d.x - m) & (self._x < d.x + d.w + m) & (self._y + 1 > d.y - m) & (self._y < d.y + d.h + m)
        return out

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """Every byte whose bits all show (module docstring); nothing without a frame."""
        if frame is None:
            return {}
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (210, 160, 3):
            raise FrameFormatError(f"readout 'bits' reads uint8 RGB frames of shape (210, 160, 3), got {frame.dtype} {frame.shape}")
        lit = np.any(frame[self._y, self._x] != self._bg, axis=1)
        covered = self.covered(objects)
        # A covered probe is neutral for the AND (it says nothing); all covered: the bit is unread.
        bit_on = np.logical_and.reduceat(lit | covered, self._starts)
        unread = np.logical_and.reduceat(covered, self._starts)
        n = len(self.labels)
        values = np.array(self.bases, dtype=np.int64) + np.bincount(
            self._group_byte, weights=bit_on * self._group_weight, minlength=n
        ).astype(np.int64)
        bad = np.bincount(self._group_byte, weights=unread, minlength=n) > 0
        return {lab: int(values[i]) for i, lab in enumerate(self.labels) if not bad[i]}

    def to_json(self) -> dict[str, Any]:
        """The JSON row: labels, their bases and probe lists, the hiding categories and margin."""
        return {
            "kind": self.kind,
            "labels": list(self.labels),
            "bases": list(self.bases),
            "probes": [[[b, y, x, list(bg)] for b, y, x, bg in plist] for plist in self.probes],
            "categories": list(self.categories),
            "margin": self.margin,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> BitsReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "bases", "probes", "categories", "margin"))
        if row.get("kind") != cls.kind:
            raise ValueError(f"readout kind must be {cls.kind!r}, got {row.get('kind')!r}")
        probes = row["probes"]
        if not isinstance(probes, list):
            raise ValueError(f"readout 'bits': probes must be a list (one per label), got {type(probes).__name__}")
        return cls(spec, row["labels"], row["bases"], probes, row["categories"], row["margin"])
