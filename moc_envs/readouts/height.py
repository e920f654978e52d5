"""The ``height`` readout: how high a ball flies above the ground, from the ball and its shadow.

Tennis keeps the ball's height above the court (RAM 17, ``ball_y``: 0 on the ground, about 40
at the top of a lob) apart from its place on the court. The frame draws the ball ``height``
pixels above its shadow, so ``byte = scale * (shadow top y - ball top y) + offset``. The ball
and the shadow are small sprites of their own colours (``ball_color``, ``shadow_color``, matched
within ``color_tolerance`` summed over RGB); a colour lit on more than ``max_pixels`` pixels is
something else and is not read. The detector rarely boxes either sprite, so they are found by
colour in the frame, not from the step's boxes.

The shadow hides behind the net for a step or two of each rally, and under the ball when the ball
is on the ground. The readout keeps the shadow's last row and its motion per step (one copy per
env; :meth:`HeightReadout.reset` forgets them):

- for up to ``coast`` steps after the shadow was last seen, its row is carried on at its last
  speed (it moves steadily across the court);
- a ball drawn within ``cover_tolerance`` rows of where the shadow was last seen lies on it
  (height 0).

Otherwise a step without both sprites gives nothing. Every number is fitted from play with RAM
as the teacher (:mod:`trainers.readouts.fit_height`).
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

__all__ = ["HeightReadout", "color_top"]


def color_top(frame: np.ndarray, color: Sequence[int], tolerance: float, max_pixels: int) -> int | None:
    """The top row of the pixels of ``color`` (within ``tolerance`` summed over RGB), or None
    when none is lit or more than ``max_pixels`` are (not the small sprite looked for)."""
    mask = colour_mask(frame, color, tolerance)
    n = int(mask.sum())
    if n == 0 or n > max_pixels:
        return None
    return int(np.flatnonzero(mask.any(axis=1))[0])


def _color(name: str, value: object) -> tuple[int, int, int]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"readout 'height': {name} must be [r, g, b], got {value!r}")
    return tuple(check_byte(name, v) for v in value)  # type: ignore[return-value]


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"readout 'height': {name} must be an integer >= {least}, got {value!r}")
    return value


class HeightReadout(Readout):
    """One label: a ball's height from the rows between it and its shadow (module docstring)."""

    kind: ClassVar[str] = "height"

    def __init__(
        self,
        spec: GameSpec,
        label: str,
        ball_color: Sequence[int],
        shadow_color: Sequence[int],
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        color_tolerance: float = 0.0,
        max_pixels: int = 4,
        coast: int = 0,
        cover_tolerance: float = -1.0,
    ) -> None:
        """See the module docstring; ``cover_tolerance < 0`` turns the on-the-shadow rule off."""
        self.labels = check_labels(spec, [label], self.kind)
        self.label = label
        self.ball_color = _color("ball_color", ball_color)
        self.shadow_color = _color("shadow_color", shadow_color)
        if self.ball_color == self.shadow_color:
            raise ValueError(f"readout 'height': ball and shadow colours must differ, both {list(self.ball_color)}")
        self.scale = check_number("scale", scale)
        self.offset = check_number("offset", offset)
        self.color_tolerance = check_number("color_tolerance", color_tolerance)
        if self.color_tolerance < 0:
            raise ValueError(f"readout 'height': color_tolerance must be >= 0, got {color_tolerance!r}")
        self.max_pixels = _count("max_pixels", max_pixels, 1)
        self.coast = _count("coast", coast, 0)
        self.cover_tolerance = check_number("cover_tolerance", cover_tolerance)
        self.reset()

    def reset(self) -> None:
        """Episode start: forget the shadow's last row and speed."""
        self._shadow: float | None = None  # last seen shadow row
        self._speed = 0.0  # its rows per step when last seen on two steps running
        self._gap = 0  # steps since it was last seen

    def sprites(self, frame: np.ndarray) -> tuple[int | None, int | None]:
        """``(ball top row, shadow top row)`` in ``frame``, each None where not drawn (or not alone)."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
        ball = color_top(frame, self.ball_color, self.color_tolerance, self.max_pixels)
        shadow = color_top(frame, self.shadow_color, self.color_tolerance, self.max_pixels)
        return ball, shadow

    def byte(self, rows: float) -> int | None:
        """The byte for a ball ``rows`` rows above its shadow (None outside 0..255)."""
        value = round(self.scale * rows + self.offset)
        return int(value) if 0 <= value <= 255 else None

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The height where the frame shows the ball and (or, for a short while, showed) its shadow."""
        if frame is None:
            return {}
        value = self.step(*self.sprites(frame))
        return {} if value is None else {self.label: value}

    def step(self, ball: int | None, shadow: int | None) -> int | None:
        """One step given its sprites' top rows (:meth:`sprites`): the byte, or None; keeps the
        shadow's last row and speed for later steps."""
        if shadow is not None:
            self._speed = float(shadow - self._shadow) if self._shadow is not None and self._gap == 0 else 0.0
            self._shadow, self._gap = float(shadow), 0
            seen: float | None = float(shadow)
        else:
            self._gap += 1
            seen = None
            if self._shadow is not None and self._gap <= self.coast:
                seen = self._shadow + self._speed * self._gap
        if ball is None:
            return None
        if seen is None and self._shadow is not None and self.cover_tolerance >= 0:
            if abs(ball - self._shadow) <= self.cover_tolerance:
                seen = float(ball)
        return None if seen is None else self.byte(seen - ball)

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {
            "kind": self.kind, "labels": [self.label], "ball_color": list(self.ball_color),
            "shadow_color": list(self.shadow_color), "scale": self.scale, "offset": self.offset,
            "color_tolerance": self.color_tolerance, "max_pixels": self.max_pixels, "coast": self.coast,
            "cover_tolerance": self.cover_tolerance,
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> HeightReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        keys = ("labels", "ball_color", "shadow_color", "scale", "offset", "color_tolerance", "max_pixels",
                "coast", "cover_tolerance")  # fmt: skip
        check_keys(row, keys)
        labels = check_labels(spec, row["labels"], cls.kind)
        if len(labels) != 1:
            raise ValueError(f"readout 'height': gives one label, got {list(labels)}")
        kwargs = {k: row[k] for k in keys[3:]}
        return cls(spec, labels[0], row["ball_color"], row["shadow_color"], **kwargs)
