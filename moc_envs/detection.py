"""The Detection record and the detector protocol shared by every detector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from moc_envs.errors import FrameFormatError

__all__ = [
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "RAM_SIZE",
    "Detection",
    "Detector",
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
