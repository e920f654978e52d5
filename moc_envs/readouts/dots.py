"""The ``dots`` readout: a count of eaten dots, read from which dots the frame still shows.

MsPacman's ``dots_eaten_count`` counts the dots (and power pills) eaten in the maze; each dot is a
small rectangle of one colour (*lit*) on the background colour (*empty*) once eaten. The readout
knows every dot's rectangle and both colours (fitted from play, :mod:`trainers.readouts.fit_dots`)
and keeps, per dot, whether it was last seen lit or eaten:

- a dot is *seen lit* when some of its pixels show the lit colour and none the empty one, *seen
  empty* in the opposite case; otherwise (a sprite over it, a mixture of two pooled frames) this
  step says nothing about it and it keeps its last state. Sprites cover only part of a dot's
  pixels most of the time, so the dot under the player is seen empty as soon as it is eaten;
- a dot that blinks (a power pill) is taken as eaten only after more than its ``gap`` steps seen
  empty in a row (its blink's longest dark spell);
- ``byte = scale * eaten + bias``; until every dot has been seen once since the episode started,
  the count is unknown and the label is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH, Detection
from moc_envs.readouts.base import Readout, check_byte, check_keys, check_labels, check_number
from moc_envs.readouts.identity import colour_code

__all__ = ["DotsReadout", "dot_states"]

_UNSEEN, _EATEN, _LIT = -1, 0, 1


def dot_states(codes: np.ndarray, index: np.ndarray, owner: np.ndarray, n: int, lit: int, empty: int) -> np.ndarray:
    """(n,) int8 per dot: 1 seen lit, 0 seen empty, -1 neither, from one frame's colour codes.

    ``index``: flat pixel indexes of all dots' pixels; ``owner``: the dot each pixel belongs to.
    """
    px = codes.ravel()[index]
    n_lit = np.bincount(owner, weights=px == lit, minlength=n)
    n_empty = np.bincount(owner, weights=px == empty, minlength=n)
    out = np.full(n, -1, dtype=np.int8)
    out[(n_lit > 0) & (n_empty == 0)] = 1
    out[(n_empty > 0) & (n_lit == 0)] = 0
    return out


def _check_rgb(name: str, value: object) -> tuple[int, int, int]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"readout 'dots': {name} must be [r, g, b], got {value!r}")
    return tuple(check_byte(f"{name} channel", v) for v in value)  # type: ignore[return-value]


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"readout 'dots': {name} must be an int in {lo}..{hi}, got {value!r}")
    return int(value)


class DotsReadout(Readout):
    """One label: the number of eaten dots (module docstring)."""

    kind: ClassVar[str] = "dots"

    def __init__(
        self,
        spec: GameSpec,
        label: str,
        dots: Sequence[Sequence[int]],
        gaps: Sequence[int],
        lit: Sequence[int],
        empty: Sequence[int],
        scale: float = 1.0,
        bias: float = 0.0,
    ) -> None:
        """``dots``: each dot's rectangle ``[x, y, w, h]`` in frame pixels; ``gaps``: per dot, the
        steps it may be seen empty in a row and still be there (0: never blinks); ``lit`` /
        ``empty``: the RGB colours of a dot there and gone."""
        self.labels = check_labels(spec, [label], self.kind)
        if not isinstance(dots, list | tuple) or not dots:
            raise ValueError(f"readout 'dots': dots must be a non-empty list of [x, y, w, h], got {dots!r}")
        rects = []
        for r in dots:
            if not isinstance(r, list | tuple) or len(r) != 4:
                raise ValueError(f"readout 'dots': a dot must be [x, y, w, h], got {r!r}")
            x = _check_int("dot x", r[0], 0, FRAME_WIDTH - 1)
            y = _check_int("dot y", r[1], 0, FRAME_HEIGHT - 1)
            w = _check_int("dot w", r[2], 1, FRAME_WIDTH - x)
            h = _check_int("dot h", r[3], 1, FRAME_HEIGHT - y)
            rects.append((x, y, w, h))
        if not isinstance(gaps, list | tuple) or len(gaps) != len(rects):
            raise ValueError(f"readout 'dots': gaps must be a list of {len(rects)} ints (one per dot), got {gaps!r}")
        self.label = label
        self.dots = tuple(rects)
        self.gaps = np.array([_check_int("gap", g, 0, 255) for g in gaps], dtype=np.int64)
        self.lit = _check_rgb("lit", lit)
        self.empty = _check_rgb("empty", empty)
        if self.lit == self.empty:
            raise ValueError(f"readout 'dots': lit and empty must differ, both are {list(self.lit)}")
        self.scale = check_number("scale", scale)
        self.bias = check_number("bias", bias)
        index, owner = [], []
        for k, (x, y, w, h) in enumerate(self.dots):
            ys, xs = np.mgrid[y : y + h, x : x + w]
            index.append((ys * FRAME_WIDTH + xs).ravel())
            owner.append(np.full(w * h, k))
        self._index = np.concatenate(index)
        self._owner = np.concatenate(owner)
        self._lit_code = int(colour_code(np.array(self.lit)))
        self._empty_code = int(colour_code(np.array(self.empty)))
        self.reset()

    def reset(self) -> None:
        """Episode start: every dot unseen."""
        self._state = np.full(len(self.dots), _UNSEEN, dtype=np.int8)
        self._dark = np.zeros(len(self.dots), dtype=np.int64)

    def states(self, frame: np.ndarray) -> np.ndarray:
        """What one frame shows of each dot (:func:`dot_states`)."""
        if frame.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3):
            raise ValueError(f"frame must have shape ({FRAME_HEIGHT}, {FRAME_WIDTH}, 3), got {frame.shape}")
        return dot_states(colour_code(frame), self._index, self._owner, len(self.dots), self._lit_code, self._empty_code)

    def update(self, frame: np.ndarray) -> int | None:
        """Fold one frame into the dots' states; the eaten dots, or None while some dot is unseen."""
        seen = self.states(frame)
        self._dark = np.where(seen == _EATEN, self._dark + 1, np.where(seen == _LIT, 0, self._dark))
        self._state[seen == _LIT] = _LIT
        self._state[(seen == _EATEN) & (self._dark > self.gaps)] = _EATEN
        # A blinker first seen dark is there until its dark spell outlasts its gap.
        self._state[(seen == _EATEN) & (self._state == _UNSEEN)] = _LIT
        if (self._state == _UNSEEN).any():
            return None
        return int((self._state == _EATEN).sum())

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The label from the eaten dots; nothing without a frame, while a dot is unseen, or when
        the byte would fall outside 0..255."""
        if frame is None:
            return {}
        eaten = self.update(frame)
        if eaten is None:
            return {}
        value = round(self.scale * eaten + self.bias)
        return {self.label: int(value)} if 0 <= value <= 255 else {}

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        return {
            "kind": self.kind, "labels": [self.label], "dots": [list(r) for r in self.dots],
            "gaps": [int(g) for g in self.gaps], "lit": list(self.lit), "empty": list(self.empty),
            "scale": self.scale, "bias": self.bias,
        }  # fmt: skip

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> DotsReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "dots", "gaps", "lit", "empty", "scale", "bias"))
        labels = check_labels(spec, row["labels"], cls.kind)
        if len(labels) != 1:
            raise ValueError(f"readout 'dots' gives one label, got {list(labels)}")
        return cls(spec, labels[0], row["dots"], row["gaps"], row["lit"], row["empty"], row["scale"], row["bias"])
