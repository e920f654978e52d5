"""The ``course`` readout: a scrolling course's object slots (Skiing's ``object_y_0..6``), from the frame.

Skiing keeps the y of the seven lowest objects of the course (trees, moguls, flag pairs) in RAM
87..93, measured with RAM as the teacher:

- one slot per object, a flag pair one object; slot 6 is the lowest (newest) object, slot 5 the
  one above it, and so on up. When the course reaches the next object's place, the array shifts:
  slot 0 is dropped (whether still drawn or not) and the new object enters slot 6 below the
  playfield's last drawn row, a few bytes from 0, undrawn until it scrolls into view;
- ``byte = offset - top row`` (one byte a row, no wrap); an object whose top has scrolled past
  the playfield's first row holds a clamped byte (``clamp``) while its lower part is still drawn;
  one already gone holds a larger, stale value (nothing to read);
- the gap from the lowest object to the next one depends on the lowest object's kind (a tree, a
  flag pair, a mogul each have their own), so whether slot 6 is still undrawn below the lowest
  drawn object shows in the frame: it is when that object lies ``gap`` or more bytes up.

The readout needs no boxes: it finds the course objects in the frame itself (the detector misses
some). The pixels of the course colours (``colours``, exact RGB) inside the playfield (``rows``,
``cols``, inclusive) are grouped into 8-connected blobs; blobs of one colour within ``merge`` pixels
of each other, or with their top rows within one row (the two flags of a pair), are one object.
Each object's byte comes from its top row; an object cut by the playfield's left or right edge
(the sprite wraps under the border) shows only some columns, so its top is its bottom row less
the rows that the fitted ``edge_rows`` table gives (one cut by the first row reads the clamp) for its colour, side and visible width (none
there: its label is left out, but it still counts in the order). Objects are then ordered from
the bottom and given slots 6, 5, ... (one lower when slot 6 is undrawn); a slot with no object
drawn, or an object whose byte cannot be read, is left out.

Everything (colours, playfield, offset, clamp, sprite heights, gaps, edge table) is fitted from
play with RAM as the teacher (:mod:`trainers.readouts.course.fit_course`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from moc_envs.games import GameSpec
from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH, Detection
from moc_envs.readouts.base import (
    Readout,
    check_byte,
    check_keys,
    check_labels,
    check_number,
    rgb_codes,
)

__all__ = ["CourseObject", "CourseReadout", "find_course_objects"]

_KEYS = ("labels", "colours", "heights", "gaps", "rows", "cols", "offset", "clamp", "merge", "edge_rows")
_CONNECT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class CourseObject:
    """One course object found in a frame: its drawn extent (inclusive) and colour index."""

    top: int
    bottom: int
    left: int
    right: int
    colour: int


def _blobs(colour_of: np.ndarray, n_colours: int) -> list[list[int]]:
    """``[top, bottom, left, right, colour]`` of each 8-connected blob of course pixels, coloured
    by its most common course colour (``colour_of``: (H, W) the index of each pixel's course
    colour, -1 for none; the lowest index wins a tie)."""
    lab, _ = ndimage.label(colour_of >= 0, structure=_CONNECT)
    out: list[list[int]] = []
    for i, sl in enumerate(ndimage.find_objects(lab)):
        if sl is None:
            continue
        ys, xs = sl
        inside = colour_of[ys, xs][lab[ys, xs] == i + 1]
        colour = int(np.bincount(inside, minlength=n_colours).argmax())
        out.append([ys.start, ys.stop - 1, xs.start, xs.stop - 1, colour])
    return out


def _merge(blobs: list[list[int]], gap: int) -> list[list[int]]:
    """Join blobs of one colour within ``gap`` pixels of each other, or with tops within a row."""
    blobs = sorted(blobs)
    joined = True
    while joined:
        joined = False
        for i in range(len(blobs)):
            for j in range(i + 1, len(blobs)):
                a, b = blobs[i], blobs[j]
                if a[4] != b[4]:
                    continue
                pair = abs(a[0] - b[0]) <= 1
                near = b[0] <= a[1] + gap and a[0] <= b[1] + gap and b[2] <= a[3] + gap and a[2] <= b[3] + gap
                if pair or near:
                    blobs[i] = [min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]), a[4]]
                    del blobs[j]
                    joined = True
                    break
            if joined:
                break
    return blobs


def find_course_objects(
    frame: np.ndarray, colours: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], merge: int
) -> list[CourseObject]:
    """The course objects drawn in ``frame`` (module docstring), lowest first.

    ``colours``: (K, 3) exact RGB course colours; ``rows``/``cols``: the playfield (inclusive).
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    (r0, r1), (c0, c1) = rows, cols
    codes = rgb_codes(frame[r0 : r1 + 1, c0 : c1 + 1])
    colour_of = np.full(codes.shape, -1, np.int64)
    wanted = rgb_codes(np.asarray(colours, np.uint8))
    for k, code in enumerate(wanted.tolist()):
        colour_of[codes == code] = k
    found = _merge(_blobs(colour_of, len(wanted)), merge)
    objects = [CourseObject(t + r0, b + r0, lft + c0, rgt + c0, c) for t, b, lft, rgt, c in found]
    return sorted(objects, key=lambda o: (-o.top, o.left))


def _colour_list(value: object) -> list[tuple[int, int, int]]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"readout 'course': colours must be a non-empty list of [r, g, b], got {value!r}")
    out = []
    for c in value:
        if not isinstance(c, list | tuple) or len(c) != 3:
            raise ValueError(f"readout 'course': each colour must be [r, g, b], got {c!r}")
        out.append(tuple(check_byte("colour", v) for v in c))
    if len(set(out)) != len(out):
        raise ValueError(f"readout 'course': a colour is listed twice in {value!r}")
    return out  # type: ignore[return-value]


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"readout 'course': {name} must be an integer {low}..{high}, got {value!r}")
    return value


def _ints(name: str, value: object, n: int, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or len(value) != n:
        raise ValueError(f"readout 'course': {name} must be a list of {n} integers, got {value!r}")
    return tuple(_int(name, v, low, high) for v in value)


class CourseReadout(Readout):
    """A course's object slots, bottom slot newest, read from the frame (module docstring)."""

    kind: ClassVar[str] = "course"

    def __init__(
        self,
        spec: GameSpec,
        labels: Sequence[str],
        colours: Sequence[Sequence[int]],
        heights: Sequence[int],
        gaps: Sequence[int],
        rows: Sequence[int],
        cols: Sequence[int],
        offset: float,
        clamp: int,
        merge: int = 3,
        edge_rows: Sequence[Sequence[int]] = (),
    ) -> None:
        """``labels``: slot 0 (top) .. slot n-1 (bottom); per colour its sprite ``heights`` and the
        ``gaps`` to the next object; ``edge_rows``: ``[colour, side (0 left, 1 right), visible
        width, rows from top to bottom]`` rows (module docstring)."""
        self.labels = check_labels(spec, list(labels), self.kind)
        colour_list = _colour_list(list(colours))
        self.colours = np.array(colour_list, dtype=np.int16)
        k = len(colour_list)
        self.heights = _ints("heights", heights, k, 1, FRAME_HEIGHT)
        self.gaps = _ints("gaps", gaps, k, 1, 255)
        r = _ints("rows", rows, 2, 0, FRAME_HEIGHT - 1)
        c = _ints("cols", cols, 2, 0, FRAME_WIDTH - 1)
        if r[0] >= r[1] or c[0] >= c[1]:
            raise ValueError(f"readout 'course': rows and cols must be [first, last] with first < last, got {r}, {c}")
        self.rows, self.cols = (r[0], r[1]), (c[0], c[1])
        self.offset = check_number("offset", offset)
        self.clamp = check_byte("clamp", clamp)
        self.merge = _int("merge", merge, 0, 16)
        table: dict[tuple[int, int, int], int] = {}
        if not isinstance(edge_rows, list | tuple):
            raise ValueError(f"readout 'course': edge_rows must be a list, got {edge_rows!r}")
        for row in edge_rows:
            colour, side, width, n = _ints("edge_rows row", row, 4, 0, FRAME_HEIGHT)
            if colour >= k or side > 1:
                raise ValueError(f"readout 'course': edge_rows row {list(row)} names colour >= {k} or side > 1")
            if (colour, side, width) in table:
                raise ValueError(f"readout 'course': edge_rows names {(colour, side, width)} twice")
            table[(colour, side, width)] = n
        self.edge_rows = table

    def objects(self, frame: np.ndarray) -> list[CourseObject]:
        """The course objects drawn in ``frame``, lowest first."""
        return find_course_objects(frame, self.colours, self.rows, self.cols, self.merge)

    def top_of(self, o: CourseObject) -> tuple[int | None, int]:
        """``(top row to read the byte from or None, top row to order by)`` of one object; an
        edge-cut object's top comes from its bottom row and the edge table."""
        side = 0 if o.left <= self.cols[0] else 1 if o.right >= self.cols[1] else -1
        if side < 0 or o.top <= self.rows[0]:  # cut by the first row: the clamped byte, edge or not
            return o.top, o.top
        guess = o.bottom - self.heights[o.colour] + 1 if o.bottom < self.rows[1] else o.top
        rows = self.edge_rows.get((o.colour, side, o.right - o.left + 1))
        if rows is None or o.bottom >= self.rows[1]:
            return None, min(guess, o.top)
        top = o.bottom - rows
        return top, top

    def byte_of_top(self, top: int) -> int | None:
        """The byte of an object whose sprite starts at row ``top`` (clamped at the playfield's
        first row); None outside 0..255."""
        value = self.clamp if top <= self.rows[0] else round(self.offset - top)
        return int(value) if 0 <= value <= 255 else None

    def order(self, found: Sequence[CourseObject]) -> list[int]:
        """The slot of each object of ``found`` (lowest first, as :meth:`objects` gives them):
        the bottom slot for the lowest, one less when slot 6 lies undrawn below it; negative
        for objects above slot 0."""
        if not found:
            return []
        lowest = self.byte_of_top(self.top_of(found[0])[1])
        below = 1 if lowest is not None and lowest >= self.gaps[found[0].colour] else 0
        return [len(self.labels) - 1 - k - below for k in range(len(found))]

    def assign(self, found: Sequence[CourseObject]) -> dict[int, int]:
        """``{slot: byte}`` for the objects ``found`` (lowest first) whose byte can be read."""
        out: dict[int, int] = {}
        for o, slot in zip(found, self.order(found), strict=True):
            top = self.top_of(o)[0] if slot >= 0 else None
            value = None if top is None else self.byte_of_top(top)
            if value is not None:
                out[slot] = value
        return out

    def slots(self, frame: np.ndarray) -> dict[int, int]:
        """``{slot: byte}`` for the slots the frame shows and reads."""
        return self.assign(self.objects(frame))

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """Each slot's byte where the frame shows its object (boxes are not used)."""
        if frame is None:
            return {}
        return {self.labels[slot]: value for slot, value in self.slots(frame).items()}

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {
            "kind": self.kind, "labels": list(self.labels), "colours": self.colours.tolist(),
            "heights": list(self.heights), "gaps": list(self.gaps), "rows": list(self.rows),
            "cols": list(self.cols), "offset": self.offset, "clamp": self.clamp, "merge": self.merge,
            "edge_rows": [[c, s, w, n] for (c, s, w), n in sorted(self.edge_rows.items())],
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> CourseReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, _KEYS)
        return cls(spec, **{k: row[k] for k in _KEYS})
