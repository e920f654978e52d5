"""The Detection record and the detector protocol shared by every detector."""

from __future__ import annotations

import math
import numbers
import reprlib
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from moc_envs.errors import DetectorInUseError, DetectorOutputError, FrameFormatError

__all__ = [
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "RAM_SIZE",
    "Detection",
    "Detector",
    "claim_detector",
    "is_stateful",
    "release_detector",
    "validate_detections",
    "validate_frames",
    "validate_rams",
]

FRAME_HEIGHT = 210
FRAME_WIDTH = 160
RAM_SIZE = 128


@dataclass(frozen=True)
class Detection:
    """One object found in one frame.

    Boxes use OCAtari's convention: pixels of the 210x160 frame, (x, y) is the
    top-left corner. ``slot`` is filled in by the tracker (-1 before tracking).
    """

    category: str
    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    slot: int = -1
    z_what: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the box in frame pixels (x, y)."""
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a batch of frames (and optionally RAM) into detections."""

    def detect(
        self, frames: np.ndarray, rams: np.ndarray | None = None
    ) -> list[list[Detection]]:
        """Detect objects in N frames of shape (N, 210, 160, 3) uint8; return N lists."""
        ...


def validate_frames(frames: np.ndarray) -> np.ndarray:
    """Check that ``frames`` is a uint8 batch (N, 210, 160, 3) and return it.

    A single frame (210, 160, 3) is not accepted silently: detectors are batched,
    so callers add the batch axis themselves.
    """
    if not isinstance(frames, np.ndarray):
        raise FrameFormatError(
            f"frames must be a numpy uint8 array of shape (N, {FRAME_HEIGHT}, {FRAME_WIDTH}, 3), "
            f"got {type(frames).__name__}"
        )
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (
        FRAME_HEIGHT,
        FRAME_WIDTH,
        3,
    ):
        raise FrameFormatError(
            f"frames must be uint8 of shape (N, {FRAME_HEIGHT}, {FRAME_WIDTH}, 3), "
            f"got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


def validate_rams(rams: np.ndarray | None, n: int) -> np.ndarray | None:
    """Check that ``rams`` is None or a uint8 array (n, 128) matching the frames."""
    if rams is None:
        return None
    if not isinstance(rams, np.ndarray) or rams.dtype != np.uint8 or rams.shape != (n, RAM_SIZE):
        shape = getattr(rams, "shape", None)
        dtype = getattr(rams, "dtype", type(rams).__name__)
        raise FrameFormatError(
            f"rams must be uint8 of shape ({n}, {RAM_SIZE}) to match {n} frames, got {dtype} {shape}"
        )
    return rams


# Short reprs in error messages: a detector's output can be thousands of boxes.
_REPR = reprlib.Repr()
_REPR.maxlist = _REPR.maxtuple = 3
_REPR.maxstring = _REPR.maxother = 60
# Types a box field may have without the (slower) numbers.Real check.
_PLAIN_NUMBERS = frozenset({float, int, np.float64, np.float32, np.int64, np.int32})
_FIELDS = ("x", "y", "w", "h", "score")


def _describe(value: object) -> str:
    """``type: short repr`` of a value, for expected-vs-got messages."""
    return f"{type(value).__name__} {_REPR.repr(value)}"


def _is_sequence(value: object) -> bool:
    if isinstance(value, list | tuple):
        return True
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _is_number(value: object) -> bool:
    # bool is an int subclass, but a True coordinate is a bug, not a pixel.
    if type(value) in _PLAIN_NUMBERS:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check_fields(det: Detection, name: str, i: int, j: int) -> None:
    """Raise DetectorOutputError when ``det``'s category is not a str or a box field no number."""
    if type(det.category) is not str:
        raise DetectorOutputError(
            f"{name}.detect returned a Detection with category {_describe(det.category)} "
            f"(detection {j} of frame {i}); expected a str"
        )
    for field_name in _FIELDS:
        value = getattr(det, field_name)
        if not _is_number(value):
            raise DetectorOutputError(
                f"{name}.detect returned a Detection with {field_name}={_describe(value)} "
                f"(detection {j} of frame {i}); expected a real number"
            )


def validate_detections(
    result: Any, n: int, detector: object
) -> tuple[list[list[Detection]], list[int]]:
    """Check a detector's output for ``n`` frames; return clean per-frame lists and drop counts.

    The output must be a sequence of exactly ``n`` per-frame sequences of :class:`Detection`
    whose category is a ``str`` and whose box and score are real numbers; anything else
    raises :class:`DetectorOutputError` naming ``detector``'s class and what it returned.
    Detections with a non-finite box or score are dropped, boxes are clipped to the
    160x210 frame, and a box with no area inside the frame is dropped; the second value
    counts the drops of each frame. Boxes already inside the frame are returned as they are.
    """
    name = type(detector).__name__
    expected = f"a list of {n} per-frame lists of Detection (one per frame given)"
    if not _is_sequence(result):
        raise DetectorOutputError(
            f"{name}.detect returned {_describe(result)}; expected {expected}"
        )
    if len(result) != n:
        raise DetectorOutputError(
            f"{name}.detect returned {len(result)} per-frame lists for {n} frame(s); "
            f"expected {expected}, got {_describe(result)}"
        )
    frames: list[list[Detection]] = []
    dropped: list[int] = []
    for i, found in enumerate(result):
        if not _is_sequence(found):
            raise DetectorOutputError(
                f"{name}.detect returned {_describe(found)} for frame {i}; "
                f"expected a list of Detection"
            )
        kept: list[Detection] = []
        lost = 0
        plain = _PLAIN_NUMBERS
        for j, det in enumerate(found):
            if type(det) is not Detection and not isinstance(det, Detection):
                raise DetectorOutputError(
                    f"{name}.detect returned {_describe(det)} as detection {j} of frame {i}; "
                    f"expected a moc_envs.Detection"
                )
            x, y, w, h, score = det.x, det.y, det.w, det.h, det.score
            # Hot path: a few type lookups; the full check runs only when one fails.
            if not (
                type(det.category) is str
                and type(x) in plain
                and type(y) in plain
                and type(w) in plain
                and type(h) in plain
                and type(score) in plain
            ):
                _check_fields(det, name, i, j)
            try:
                finite = (
                    math.isfinite(x)
                    and math.isfinite(y)
                    and math.isfinite(w)
                    and math.isfinite(h)
                    and math.isfinite(score)
                )
            except OverflowError:  # an int beyond float range is no pixel either
                finite = False
            if not finite:
                lost += 1
                continue
            right, bottom = x + w, y + h
            if x >= 0 and y >= 0 and right <= FRAME_WIDTH and bottom <= FRAME_HEIGHT:
                if w > 0 and h > 0:
                    kept.append(det)
                else:
                    lost += 1
                continue
            # Partly outside: keep the part inside the frame, if any.
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(right, float(FRAME_WIDTH)), min(bottom, float(FRAME_HEIGHT))
            if x1 <= x0 or y1 <= y0:
                lost += 1
                continue
            kept.append(replace(det, x=x0, y=y0, w=x1 - x0, h=y1 - y0))
        frames.append(kept)
        dropped.append(lost)
    return frames, dropped


# Which open env uses each stateful detector: id(detector) -> (weak ref to the env, its name).
# The env holds the detector, so while the env lives the id cannot be reused; an entry whose
# env is gone (collected without close()) is stale and may be taken over.
_CLAIMS: dict[int, tuple[weakref.ref[object], str]] = {}
_CLAIMS_LOCK = threading.Lock()


def is_stateful(detector: object) -> bool:
    """Whether a detector keeps per-env state, i.e. exposes ``reset(i)`` for batch row ``i``."""
    return callable(getattr(detector, "reset", None))


def claim_detector(detector: object, owner: object, owner_name: str) -> None:
    """Register ``owner`` (an env) as the one user of a stateful ``detector``.

    A detector with ``reset(i)`` keeps state per batch row, so a second env feeding it
    row 0 would mix two games' state into every observation: that raises
    :class:`DetectorInUseError` while the first owner is open. Stateless detectors (no
    ``reset``) may serve any number of envs and are not registered. The owner calls
    :func:`release_detector` when it closes.
    """
    if not is_stateful(detector):
        return
    with _CLAIMS_LOCK:
        entry = _CLAIMS.get(id(detector))
        holder = entry[0]() if entry is not None else None
        if entry is not None and holder is not None and holder is not owner:
            raise DetectorInUseError(
                f"This {type(detector).__name__} keeps per-env state (it has reset(i)) and "
                f"already serves another open env ({entry[1]}); a second env would corrupt "
                f"both envs' observations. Pass detector='ram' (a string: each env builds its "
                f"own detector) or one {type(detector).__name__} instance per env, or close "
                f"the other env first."
            )
        _CLAIMS[id(detector)] = (weakref.ref(owner), owner_name)


def release_detector(detector: object, owner: object) -> None:
    """Forget ``owner``'s claim on ``detector`` (no-op when it holds none)."""
    with _CLAIMS_LOCK:
        entry = _CLAIMS.get(id(detector))
        if entry is not None:
            holder = entry[0]()
            if holder is None or holder is owner:
                del _CLAIMS[id(detector)]
