"""The ``shot`` readout: the height byte of the player's shot, found in the frame as a rising line.

SpaceInvaders keeps its player's shot in RAM 9 (``missiles_y``): about half the shot's row plus
a constant in flight, other values for a few steps after firing, while it explodes and when there
is none. The shot is a thin vertical line (``color``, within ``color_tolerance`` summed over RGB;
at most ``max_width`` pixels wide, at least ``min_length`` rows) that rises ``rise`` rows a step;
the invaders' shots are drawn alike but fall. The detector seldom boxes it, so the readout looks
for such lines in the frame and follows the player's by its motion (one copy per env;
:meth:`ShotReadout.reset` forgets it):

- a line ``rise`` rows (within ``rise_tolerance``) above the shot of the step before, in its
  column (within 1), is the shot flying on;
- with no shot flying, a line whose top is one of the ``launch`` rows (within
  ``launch_tolerance``) where no line stood up to two rises above it in its column the step
  before (not a falling invader shot) is a new shot;
- with none found so, a line ``rise`` rows above a line of the step before in its column, higher
  than a shot ``early_ages`` steps old flies, is the shot taken up again (lost for a step).

The step's state then gives the byte:

- a shot flying for ``early_ages`` steps or more: ``round(scale * top + offset)``;
- a younger shot: the ``early`` table's byte for its age and top (within 1 row), else nothing;
- no shot seen, ``k`` steps after the last one vanished (``k`` up to ``gone_steps``) from the
  ``zone = top // zone_rows`` it was last seen in: the ``gone`` table's byte for ``(k, zone)``
  (the shot left the screen or exploded), else nothing;
- no shot seen for longer, or none seen yet this episode: ``idle`` (when not None).

Tables hold only what the fitting play showed consistently: a state the frame cannot tell apart
gives no label. Every number is fitted from play with RAM as the teacher
(:mod:`trainers.readouts.fit_shot`).
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

__all__ = ["ShotReadout", "thin_lines", "vertical_lines"]

MERGE_GAP = 2
"""Lit rows of one column at most this far apart are one line (a line crossing another
sprite's pooled colour loses a row or two)."""


ISOLATION = 2
"""Columns on each side of a line that must hold no pixel of its colour along it."""


def thin_lines(mask: np.ndarray, max_width: int, min_length: int) -> list[tuple[int, int, int]]:
    """``(column, top row, bottom row)`` of the vertical lines in a boolean mask: lit pixels with
    at most ``max_width`` lit pixels side by side in their row, runs of a column joined across
    gaps of up to :data:`MERGE_GAP` rows, kept when at least ``min_length`` rows long and alone
    (nothing else lit within :data:`ISOLATION` columns along them). A compiled pass
    (:func:`moc_envs.kernels.lines.thin_lines`); :func:`vertical_lines` is the readable second half."""
    from moc_envs.kernels.lines import thin_lines as compiled  # numba, only where a shot is read

    return compiled(mask, max_width, min_length, MERGE_GAP, ISOLATION)


def vertical_lines(mask: np.ndarray, thin: np.ndarray, min_length: int) -> list[tuple[int, int, int]]:
    """The second half of :func:`thin_lines`: ``thin`` (the mask's pixels in narrow row runs)
    joined down each column across gaps of up to :data:`MERGE_GAP` rows, kept when at least
    ``min_length`` rows long and alone in ``mask``."""
    out = []
    for x in np.flatnonzero(thin.any(axis=0)):
        ys = np.flatnonzero(thin[:, x])
        for part in np.split(ys, np.flatnonzero(np.diff(ys) > MERGE_GAP + 1) + 1):
            top, bottom = int(part[0]), int(part[-1])
            if bottom - top + 1 < min_length:
                continue
            # Alone in its colour: nothing lit beside it (a thin leg of a wider sprite is not a shot).
            near = mask[max(top - 1, 0) : bottom + 2, max(x - ISOLATION, 0) : x + ISOLATION + 1]
            if int(near.sum()) == int(mask[max(top - 1, 0) : bottom + 2, x].sum()):
                out.append((int(x), top, bottom))
    return out


def _table(name: str, value: object, width: int) -> dict[tuple[int, ...], int]:
    """``[[key ints..., byte], ...]`` as ``{keys: byte}``."""
    if not isinstance(value, list):
        raise ValueError(f"readout 'shot': {name} must be a list of rows, got {type(value).__name__}")
    out: dict[tuple[int, ...], int] = {}
    for row in value:
        if (
            not isinstance(row, list | tuple)
            or len(row) != width + 1
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row[:width])
        ):
            raise ValueError(f"readout 'shot': {name} rows must be {width} integers >= 0 and a byte, got {row!r}")
        key = tuple(int(v) for v in row[:width])
        if key in out:
            raise ValueError(f"readout 'shot': {name} names {list(key)} twice")
        out[key] = check_byte(f"{name} byte", row[width])
    return out


def _whole(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"readout 'shot': {name} must be an integer >= {least}, got {value!r}")
    return value


class ShotReadout(Readout):
    """One label: the player's shot's byte from a line rising in the frame (module docstring)."""

    kind: ClassVar[str] = "shot"

    def __init__(
        self,
        spec: GameSpec,
        label: str,
        color: Sequence[int],
        *,
        color_tolerance: float = 0.0,
        max_width: int = 1,
        min_length: int = 3,
        rise: float = 8.0,
        rise_tolerance: float = 3.0,
        launch: Sequence[int] = (),
        launch_tolerance: float = 1.0,
        scale: float = 0.5,
        offset: float = 0.0,
        early_ages: int = 0,
        early: Sequence[Sequence[int]] = (),
        gone_steps: int = 0,
        zone_rows: int = 16,
        gone: Sequence[Sequence[int]] = (),
        idle: int | None = None,
    ) -> None:
        """See the module docstring for each parameter."""
        self.labels = check_labels(spec, [label], self.kind)
        self.label = label
        if not isinstance(color, list | tuple) or len(color) != 3:
            raise ValueError(f"readout 'shot': color must be [r, g, b], got {color!r}")
        self.color = tuple(check_byte("color", v) for v in color)
        self.color_tolerance = check_number("color_tolerance", color_tolerance)
        self.max_width = _whole("max_width", max_width, 1)
        self.min_length = _whole("min_length", min_length, 1)
        self.rise = check_number("rise", rise)
        if self.rise <= 0:
            raise ValueError(f"readout 'shot': rise must be > 0 (rows a step upward), got {rise!r}")
        self.rise_tolerance = check_number("rise_tolerance", rise_tolerance)
        if not isinstance(launch, list | tuple):
            raise ValueError(f"readout 'shot': launch must be a list of rows, got {launch!r}")
        self.launch = tuple(_whole("launch row", v, 0) for v in launch)
        self.launch_tolerance = check_number("launch_tolerance", launch_tolerance)
        self.scale = check_number("scale", scale)
        self.offset = check_number("offset", offset)
        self.early_ages = _whole("early_ages", early_ages, 0)
        self.early = _table("early", list(early), 2)
        self.gone_steps = _whole("gone_steps", gone_steps, 0)
        self.zone_rows = _whole("zone_rows", zone_rows, 1)
        self.gone = _table("gone", list(gone), 2)
        self.idle = None if idle is None else check_byte("idle", idle)
        self.reset()

    def reset(self) -> None:
        """Episode start: no shot followed, none seen yet."""
        self._shot: tuple[int, int, int] | None = None  # (column, top, age) of the shot flying
        self._last_top: int | None = None  # top row where the last shot was last seen
        self._gap = 0  # steps since then
        self._lines: list[tuple[int, int, int]] = []  # the step before's lines

    def lines(self, frame: np.ndarray) -> list[tuple[int, int, int]]:
        """The thin vertical lines of the shot's colour in ``frame`` (:func:`thin_lines`)."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
        mask = colour_mask(frame, self.color, self.color_tolerance)
        return thin_lines(mask, self.max_width, self.min_length)

    def state(self, lines: Sequence[tuple[int, int, int]]) -> tuple:
        """Follow the shot one step given the step's lines: ``("flight", age, top)``,
        ``("gone", k, zone)`` or ``("idle",)``."""
        shot = None
        if self._shot is not None:
            x0, top0, age = self._shot
            want = top0 - self.rise
            near = [ln for ln in lines if abs(ln[0] - x0) <= 1 and abs(ln[1] - want) <= self.rise_tolerance]
            if near:
                ln = min(near, key=lambda ln: abs(ln[1] - want))
                shot = (x0, ln[1], age + 1)
        if shot is None:
            for x, top, _ in lines:
                if not any(abs(top - row) <= self.launch_tolerance for row in self.launch):
                    continue
                if any(abs(px - x) <= 1 and top - 2 * self.rise <= ptop < top for px, ptop, _ in self._lines):
                    continue  # a line just above it the step before: an invader's shot falling
                shot = (x, top, 0)
                break
        if shot is None and self.launch:
            # A shot lost for a step (hidden, crossing another line) is taken up again where a
            # line rose by ``rise`` since the step before, once it is past the young ages.
            mature = min(self.launch) - self.early_ages * self.rise - self.rise_tolerance
            for x, top, _ in lines:
                if top < mature and any(
                    abs(px - x) <= 1 and abs(ptop - top - self.rise) <= self.rise_tolerance for px, ptop, _ in self._lines
                ):
                    shot = (x, top, self.early_ages)
                    break
        self._lines = list(lines)
        if shot is not None:
            self._shot, self._last_top, self._gap = shot, shot[1], 0
            return ("flight", shot[2], shot[1])
        self._shot = None
        if self._last_top is None:
            return ("idle",)
        self._gap += 1
        if self._gap > self.gone_steps:
            return ("idle",)
        return ("gone", self._gap, self._last_top // self.zone_rows)

    def byte(self, state: tuple) -> int | None:
        """The byte a :meth:`state` gives, or None where the fitted tables say nothing."""
        if state[0] == "flight":
            _, age, top = state
            if age >= self.early_ages:
                value = round(self.scale * top + self.offset)
                return int(value) if 0 <= value <= 255 else None
            for d in (0, -1, 1):
                if (age, top + d) in self.early:
                    return self.early[(age, top + d)]
            return None
        if state[0] == "gone":
            return self.gone.get((state[1], state[2]))
        return self.idle

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The byte of the step's shot state (nothing without a frame)."""
        if frame is None:
            return {}
        value = self.byte(self.state(self.lines(frame)))
        return {} if value is None else {self.label: value}

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout (tables as ``[key..., byte]`` rows)."""
        return {
            "kind": self.kind, "labels": [self.label], "color": list(self.color),
            "color_tolerance": self.color_tolerance, "max_width": self.max_width, "min_length": self.min_length,
            "rise": self.rise, "rise_tolerance": self.rise_tolerance, "launch": list(self.launch),
            "launch_tolerance": self.launch_tolerance, "scale": self.scale, "offset": self.offset,
            "early_ages": self.early_ages, "early": [[*k, b] for k, b in sorted(self.early.items())],
            "gone_steps": self.gone_steps, "zone_rows": self.zone_rows,
            "gone": [[*k, b] for k, b in sorted(self.gone.items())], "idle": self.idle,
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> ShotReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        keys = ("labels", "color", "color_tolerance", "max_width", "min_length", "rise", "rise_tolerance",
                "launch", "launch_tolerance", "scale", "offset", "early_ages", "early", "gone_steps",
                "zone_rows", "gone", "idle")  # fmt: skip
        check_keys(row, keys)
        labels = check_labels(spec, row["labels"], cls.kind)
        if len(labels) != 1:
            raise ValueError(f"readout 'shot': gives one label, got {list(labels)}")
        for key in ("launch", "early", "gone"):
            if not isinstance(row[key], list):
                raise ValueError(f"readout 'shot': {key} must be a list, got {type(row[key]).__name__}")
        kwargs = {k: row[k] for k in keys[2:]}
        return cls(spec, labels[0], row["color"], **kwargs)
