"""The ``formation`` readout: labels of a grid of enemies that moves as one (SpaceInvaders' invaders).

The game keeps the formation as an anchor and a grid of live cells, not as one object per enemy.
From the step's tracked boxes of the formation's categories (``categories``) and its frame:

- ``x_label``: ``byte = min box x + x_offset``. The game re-anchors the grid on its leftmost
  live column when a column is shot away (measured: the byte always sits on that column), so
  the leftmost box gives it whichever columns are gone.
- ``y_label``: the byte is not a linear function of the formation's height (SpaceInvaders'
  RAM 24 reads 82, 80, 82, 17 as the formation steps down), so it is read off a table of
  ``y_levels``: ``(top-row y of the grid, byte)`` pairs seen in play. A formation whose top
  row is shot away still shows its level: the highest box sits a whole number of row pitches
  below it (within ``y_tolerance``). A level not in the table is left out, never guessed.
- ``count_label``: the live cells. The grid's cells (``grid`` columns x rows, ``pitch`` apart,
  each ``cell`` pixels, the first at the leftmost box's x and the level's y) are looked at in
  the frame: a cell with at least ``min_pixels`` pixels of the formation's colour (``color``,
  within ``color_tolerance`` summed over RGB) holds an enemy, unless its lit pixels, cropped
  tight, form one of the ``dying`` patterns (the explosion the game draws for a few steps
  after the byte has already counted the enemy out). Counting the frame, not the boxes,
  keeps enemies the detector misses in a given frame. Needs the frame (left out without).

Every number is fitted from play with RAM as the teacher (:mod:`trainers.readouts.fit_formation`).
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
    colour_mask,
)

__all__ = ["FormationReadout", "cell_windows", "pattern_key"]

MARGIN = 2
"""Pixels each cell window reaches beyond the cell on every side: a sprite drawn a pixel off
its row or column (the max of two frames across a move) still falls in its cell."""


def pattern_key(lit: np.ndarray) -> str:
    """A lit-pixel mask cropped tight to its lit pixels, as ``"HxW:hex"`` (its packed bits);
    ``""`` for a mask with no lit pixel. Where in the cell the sprite sits does not matter."""
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if len(rows) == 0:
        return ""
    tight = lit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return f"{tight.shape[0]}x{tight.shape[1]}:{np.packbits(tight.ravel()).tobytes().hex()}"


def _pattern_pixels(key: str) -> int:
    """How many lit pixels a :func:`pattern_key` holds (ValueError for a malformed key)."""
    try:
        size, bits = key.split(":")
        rows, cols = (int(v) for v in size.split("x"))
        packed = bytes.fromhex(bits)
    except ValueError as err:
        raise ValueError(f"readout 'formation': a dying pattern must be 'HxW:hex', got {key!r}") from err
    if rows < 1 or cols < 1 or len(packed) != (rows * cols + 7) // 8:
        raise ValueError(f"readout 'formation': a dying pattern must be 'HxW:hex' of H*W bits, got {key!r}")
    return int(np.unpackbits(np.frombuffer(packed, np.uint8))[: rows * cols].sum())


def cell_windows(
    x0: float, y0: float, grid: tuple[int, int], pitch: tuple[float, float], cell: tuple[float, float], shape: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, left, right)`` frame slices of the grid's cells (with :data:`MARGIN`),
    clipped to a frame of ``shape`` (rows, columns); cells wholly outside are left out."""
    out = []
    h, w = shape
    for r in range(grid[1]):
        for c in range(grid[0]):
            left = int(round(x0 + pitch[0] * c)) - MARGIN
            top = int(round(y0 + pitch[1] * r)) - MARGIN
            right, bottom = left + int(round(cell[0])) + 2 * MARGIN, top + int(round(cell[1])) + 2 * MARGIN
            t, b, le, ri = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
            if b > t and ri > le:
                out.append((t, b, le, ri))
    return out


def _pair(name: str, value: object, integer: bool = False) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"readout 'formation': {name} must be a pair of numbers, got {value!r}")
    a, b = check_number(f"{name}[0]", value[0]), check_number(f"{name}[1]", value[1])
    if a <= 0 or b <= 0 or (integer and (a != int(a) or b != int(b))):
        raise ValueError(f"readout 'formation': {name} must be positive{' whole' if integer else ''} numbers, got {value!r}")
    return a, b


class FormationReadout(Readout):
    """A formation's anchor x, level and live count (module docstring)."""

    kind: ClassVar[str] = "formation"

    def __init__(
        self,
        spec: GameSpec,
        categories: Sequence[str],
        *,
        x_label: str | None = None,
        x_offset: float = 0.0,
        y_label: str | None = None,
        y_levels: Sequence[Sequence[float]] = (),
        y_tolerance: float = 3.0,
        count_label: str | None = None,
        grid: Sequence[int] = (1, 1),
        pitch: Sequence[float] = (1.0, 1.0),
        cell: Sequence[float] = (1.0, 1.0),
        color: Sequence[int] = (0, 0, 0),
        color_tolerance: float = 10.0,
        min_pixels: int = 1,
        dying: Sequence[str] = (),
    ) -> None:
        """See the module docstring for each parameter; at least one label must be named."""
        labels = [lab for lab in (x_label, y_label, count_label) if lab is not None]
        self.labels = check_labels(spec, labels, self.kind)
        cats = tuple(categories)
        known = set(spec.slot_ranges)
        if not cats or not set(cats) <= known:
            raise ValueError(f"readout 'formation': categories must be some of {sorted(known)}, got {list(cats)}")
        self.categories = cats
        self._slots = {c: spec.slot_ranges[c] for c in cats}
        self.x_label, self.y_label, self.count_label = x_label, y_label, count_label
        self.x_offset = check_number("x_offset", x_offset)
        levels = []
        for row in y_levels:
            if not isinstance(row, list | tuple) or len(row) != 2:
                raise ValueError(f"readout 'formation': y_levels must be [y, byte] pairs, got {row!r}")
            levels.append((check_number("y_levels y", row[0]), check_byte("y_levels byte", row[1])))
        if y_label is not None and not levels:
            raise ValueError("readout 'formation': y_label needs at least one of y_levels")
        self.y_levels = tuple(sorted(levels))
        self.y_tolerance = check_number("y_tolerance", y_tolerance)
        gx, gy = _pair("grid", grid, integer=True)
        self.grid = (int(gx), int(gy))
        self.pitch = _pair("pitch", pitch)
        self.cell = _pair("cell", cell)
        if not isinstance(color, list | tuple) or len(color) != 3:
            raise ValueError(f"readout 'formation': color must be [r, g, b], got {color!r}")
        self.color = tuple(check_byte("color", v) for v in color)
        self.color_tolerance = check_number("color_tolerance", color_tolerance)
        if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
            raise ValueError(f"readout 'formation': min_pixels must be an integer >= 1, got {min_pixels!r}")
        self.min_pixels = min_pixels
        if not all(isinstance(p, str) and p for p in dying):
            raise ValueError("readout 'formation': dying must be a list of pattern keys (non-empty strings)")
        self.dying = frozenset(dying)

    @property
    def dying(self) -> frozenset[str]:
        """The pattern keys of dying enemies (:func:`pattern_key`)."""
        return self._dying

    @dying.setter
    def dying(self, keys: frozenset[str]) -> None:
        self._dying = frozenset(keys)
        # Lit-pixel counts of the dying patterns: a cell lit by another count cannot be dying, so
        # its pattern need not be cut out (what costs most on every step).
        self._dying_counts = frozenset(_pattern_pixels(key) for key in self._dying)

    def boxes(self, objects: Sequence[Detection]) -> list[Detection]:
        """The shown boxes (each in a slot) of the formation's categories."""
        return [d for d in objects if d.category in self._slots and d.slot in self._slots[d.category]]

    def level(self, top: float) -> tuple[float, int] | None:
        """``(grid top y, byte)`` of the level whose rows hold a box at ``top`` (the highest box), or None."""
        best: tuple[float, float, int] | None = None
        for y, byte in self.y_levels:
            k = round((top - y) / self.pitch[1])
            miss = abs(top - y - k * self.pitch[1])
            if 0 <= k < self.grid[1] and miss <= self.y_tolerance and (best is None or miss < best[0]):
                best = (miss, y, byte)
        return None if best is None else (best[1], best[2])

    def cells(self, x0: float, y0: float, frame: np.ndarray) -> list[tuple[int, str]]:
        """Each cell of the grid anchored at ``(x0, y0)``: how many pixels of the formation's
        colour it holds, and their pattern key (:func:`pattern_key`)."""
        mask = colour_mask(frame, self.color, self.color_tolerance)
        out = []
        for t, b, le, ri in cell_windows(x0, y0, self.grid, self.pitch, self.cell, mask.shape):
            lit = mask[t:b, le:ri]
            out.append((int(lit.sum()), pattern_key(lit)))
        return out

    def live(self, cells: Sequence[tuple[int, str]]) -> int:
        """How many of :meth:`cells` hold a live enemy: lit enough, and not in a dying pattern."""
        return sum(1 for n, key in cells if n >= self.min_pixels and key not in self.dying)

    def live_in(self, x0: float, y0: float, frame: np.ndarray) -> int:
        """``live(cells(x0, y0, frame))``, cutting out a cell's pattern only where its lit count
        is a dying pattern's (the env's path: every step)."""
        mask = colour_mask(frame, self.color, self.color_tolerance)
        n_live = 0
        for t, b, le, ri in cell_windows(x0, y0, self.grid, self.pitch, self.cell, mask.shape):
            lit = mask[t:b, le:ri]
            n = int(np.count_nonzero(lit))
            if n >= self.min_pixels and (n not in self._dying_counts or pattern_key(lit) not in self.dying):
                n_live += 1
        return n_live

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The labels the step shows: none without a box of the formation."""
        boxes = self.boxes(objects)
        if not boxes:
            return {}
        out: dict[str, int] = {}
        x0 = min(d.x for d in boxes)
        if self.x_label is not None:
            value = round(x0 + self.x_offset)
            if 0 <= value <= 255:
                out[self.x_label] = int(value)
        level = self.level(min(d.y for d in boxes)) if self.y_levels else None
        if level is not None and self.y_label is not None:
            out[self.y_label] = level[1]
        if self.count_label is not None and frame is not None and level is not None:
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
            out[self.count_label] = self.live_in(x0, level[0], frame)
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout (labels not named are left out)."""
        row: dict[str, Any] = {"kind": self.kind, "labels": list(self.labels), "categories": list(self.categories)}
        if self.x_label is not None:
            row.update(x_label=self.x_label, x_offset=self.x_offset)
        if self.y_label is not None or self.count_label is not None:
            row.update(y_label=self.y_label, y_levels=[[y, b] for y, b in self.y_levels], y_tolerance=self.y_tolerance)
        if self.count_label is not None:
            row.update(
                count_label=self.count_label, grid=list(self.grid), pitch=list(self.pitch), cell=list(self.cell),
                color=list(self.color), color_tolerance=self.color_tolerance, min_pixels=self.min_pixels,
                dying=sorted(self.dying),
            )  # fmt: skip
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> FormationReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        optional = ("x_label", "x_offset", "y_label", "y_levels", "y_tolerance", "count_label", "grid", "pitch",
                    "cell", "color", "color_tolerance", "min_pixels", "dying")  # fmt: skip
        check_keys(row, ("labels", "categories"), optional)
        labels = check_labels(spec, row["labels"], cls.kind)
        named = [row.get(k) for k in ("x_label", "y_label", "count_label") if row.get(k) is not None]
        if sorted(named) != sorted(labels):
            raise ValueError(f"readout 'formation': labels {list(labels)} must be the named x/y/count labels {named}")
        if row.get("x_label") is not None and "x_offset" not in row:
            raise ValueError("readout 'formation': x_label needs x_offset")
        if row.get("count_label") is not None:
            missing = [k for k in optional[6:] if k not in row] + [k for k in ("y_levels", "y_tolerance") if k not in row]
            if missing:
                raise ValueError(f"readout 'formation': count_label needs keys {missing}")
        cats = row["categories"]
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise ValueError(f"readout 'formation': categories must be a list of strings, got {cats!r}")
        dying = row.get("dying", [])
        if not isinstance(dying, list):
            raise ValueError(f"readout 'formation': dying must be a list, got {type(dying).__name__}")
        for key in ("x_label", "y_label", "count_label"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise ValueError(f"readout 'formation': {key} must be a string or null, got {row[key]!r}")
        kwargs: dict[str, Any] = {k: row[k] for k in optional if k in row}
        kwargs["dying"] = dying
        return cls(spec, cats, **kwargs)
