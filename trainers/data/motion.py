"""MOC motion targets: background (mode) image, motion boxes and per-cell targets.

Pure numpy/cv2 functions, no emulator needed. Frames are RGB uint8 (210, 160, 3);
boxes are (x, y, w, h) in frame pixels with (x, y) the top-left corner (OCAtari's
convention); the model's ``z_where`` is ``[sx, sy, tx, ty]`` with ``sx = w/160``,
``sy = h/210`` and the box centre ``(tx, ty)`` in [-1, 1].

The pipeline (space-moc.md, section 5): ``|frame - mode image|`` max over channels,
keep pixels above the frame's mean motion, 3x3 closing, external contours ->
bounding boxes. Two additions of ours, both counted by the dataset builder:

* ``ignore`` rectangles (per-game HUD bands, :data:`HUD_REGIONS`) are zeroed in
  the motion map before thresholding. Scores and clocks differ from the mode image
  in most frames; left in, they would teach the detector that the score is an
  object, which the environment's observation must not contain. The rectangles
  are static screen regions, not OCAtari output, so training still needs nothing
  but frames.
* boxes larger than the game's ``max_object_size`` are dropped (and erased from
  the mask); a frame whose motion covers more than ``flash_fraction`` of the
  screen is flagged as a flash (the builder skips such stacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "FRAME_SHAPE",
    "HUD_REGIONS",
    "COLOUR_SPLIT_GAMES",
    "MotionConfig",
    "MotionResult",
    "mode_image",
    "motion_map",
    "motion_pixels",
    "motion_boxes",
    "boxes_to_targets",
    "targets_to_boxes",
    "mask_to_model",
    "match_centres",
]

FRAME_SHAPE = (210, 160)
"""(height, width) of an ALE frame."""

HUD_REGIONS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    # (x, y, w, h) in frame pixels. Measured on the frames and OCAtari's HUD boxes:
    # Pong's scores sit at y 1..21 above the top wall (y 24), which the ball never
    # crosses; Boxing's scores and clock end at y 24, the ring starts at y 36;
    # Skiing's score and clock end at y 23 (objects scrolling through that band lose
    # their top part, a small price against a clock that changes every frame).
    "Pong": ((0, 0, 160, 24),),
    "Boxing": ((0, 0, 160, 26),),
    "Skiing": ((0, 0, 160, 25),),
}
"""Per-game screen rectangles excluded from the motion targets (score, clock)."""

COLOUR_SPLIT_GAMES = frozenset({"Boxing", "Pong"})
"""Games whose objects are single-coloured sprites that often touch: Boxing's boxers
(white and black) merge into one motion blob whenever they clinch, and Pong's ball
merges with the paddle that hits it (the moment an agent needs to see it), so blobs are
split by colour there. Not for games with multi-coloured objects (Skiing's trees
are green and brown and would be cut in two). Seaquest was tried (2026-12-02): the split
raised the motion targets' recall of divers (0.888 -> 0.987) but the detector trained on
them found fewer divers and enemy missiles (README, Seaquest), so it is not set."""


@dataclass(frozen=True)
class MotionConfig:
    """How motion boxes are extracted for one game."""

    max_object_size: tuple[int, int] = (40, 60)
    """(w, h) limit in frame pixels; larger boxes are dropped as artefacts."""
    ignore: tuple[tuple[int, int, int, int], ...] = ()
    """(x, y, w, h) rectangles zeroed in the motion map (HUD)."""
    flash_fraction: float = 0.3
    """A frame whose closed motion mask covers more than this share is a flash."""
    closing: int = 3
    """Side of the square closing kernel."""
    split_colours: bool = False
    """Split a motion box holding several sprite colours into one box per colour."""
    min_colour_pixels: int = 8
    """A colour needs this many moving pixels (and 10% of the box's) to get its own box."""


@dataclass
class MotionResult:
    """Motion boxes of one frame and the binary mask they came from."""

    boxes: np.ndarray
    """(K, 4) float32 boxes (x, y, w, h) in frame pixels, kept boxes only."""
    mask: np.ndarray
    """(210, 160) uint8 in {0, 1}: closed motion mask with dropped boxes erased."""
    dropped: int = 0
    """Number of boxes dropped for exceeding ``max_object_size``."""
    flash: bool = False
    """Whether the motion covers more than ``flash_fraction`` of the frame."""
    dropped_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        got = frames.dtype if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"{name} must be a uint8 numpy array, got {got}")
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[1:] != (*FRAME_SHAPE, 3):
        raise ValueError(
            f"{name} must have shape (N, 210, 160, 3) or (210, 160, 3), got {frames.shape}"
        )
    return frames


def mode_image(frames: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel mode of uint8 frames (N, H, W, C) -> (H, W, C).

    Ties go to the smallest value, so the result is deterministic.
    """
    if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"mode_image needs a non-empty uint8 array (N, H, W, C), got "
            f"{frames.dtype} {frames.shape}"
        )
    n = frames.shape[0]
    flat = np.sort(frames.reshape(n, -1), axis=0)
    # Length of the run of equal values ending at each row of the sorted columns.
    rows = np.arange(n)[:, None]
    starts = np.empty(flat.shape, dtype=np.int32)
    starts[0] = 0
    starts[1:] = np.where(flat[1:] != flat[:-1], rows[1:], 0)
    np.maximum.accumulate(starts, axis=0, out=starts)
    run = rows - starts
    best = np.argmax(run, axis=0)
    return flat[best, np.arange(flat.shape[1])].reshape(frames.shape[1:])


def motion_map(
    frames: np.ndarray,
    background: np.ndarray,
    ignore: tuple[tuple[int, int, int, int], ...] = (),
) -> np.ndarray:
    """Motion maps (N, 210, 160) float32 in [0, 1]: max-channel |frame - background|.

    Each map is divided by its own maximum (an all-zero map stays zero). Pixels
    inside the ``ignore`` rectangles are zero.
    """
    frames = _check_frames(frames)
    if background.shape != (*FRAME_SHAPE, 3):
        raise ValueError(f"background must have shape (210, 160, 3), got {background.shape}")
    diff = np.abs(frames.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
    for x, y, w, h in ignore:
        diff[:, y : y + h, x : x + w] = 0
    peak = diff.reshape(len(diff), -1).max(axis=1).astype(np.float32)
    return diff.astype(np.float32) / np.maximum(peak, 1.0)[:, None, None]


def motion_pixels(
    frames: np.ndarray,
    background: np.ndarray,
    ignore: tuple[tuple[int, int, int, int], ...] = (),
) -> np.ndarray:
    """Moving pixels (N, 210, 160) bool of frames (N, 210, 160, 3) against ``background``.

    A pixel moves when its motion exceeds its frame's mean motion (space-moc.md 5); "> 0"
    keeps a frame without motion empty. These are the pixels :func:`motion_boxes` closes and
    boxes.
    """
    maps = motion_map(frames, background, ignore)
    # Each frame's own mean, computed as before this helper existed (bit-identical targets).
    mean = np.array([m.mean() for m in maps], np.float32).reshape(-1, 1, 1)
    return (maps > mean) & (maps > 0)


def motion_boxes(
    frames: np.ndarray, background: np.ndarray, config: MotionConfig | None = None
) -> list[MotionResult]:
    """Motion boxes of each frame (N, 210, 160, 3) or (210, 160, 3) against ``background``."""
    config = config or MotionConfig()
    frames = _check_frames(frames)
    moving = motion_pixels(frames, background, config.ignore)
    kernel = np.ones((config.closing, config.closing), np.uint8)
    max_w, max_h = config.max_object_size
    results = []
    for frame, pixels in zip(frames, moving, strict=True):
        binary = pixels.astype(np.uint8)
        closed = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        kept, dropped = [], []
        for c in contours:
            rect = cv2.boundingRect(c)
            parts = _split_by_colour(frame, binary, rect, config) if config.split_colours else [rect]
            for x, y, w, h in parts:
                (dropped if (w > max_w or h > max_h) else kept).append((x, y, w, h))
        flash = bool(closed.mean() > config.flash_fraction)
        if dropped:
            original = closed.copy()
            for x, y, w, h in dropped:
                closed[y : y + h, x : x + w] = 0
            # Erasing a dropped box can cut into a kept box it overlaps: restore those.
            for x, y, w, h in kept:
                closed[y : y + h, x : x + w] = original[y : y + h, x : x + w]
        results.append(
            MotionResult(
                boxes=np.asarray(kept, np.float32).reshape(-1, 4),
                mask=closed,
                dropped=len(dropped),
                flash=flash,
                dropped_boxes=np.asarray(dropped, np.float32).reshape(-1, 4),
            )
        )
    return results


def _split_by_colour(
    frame: np.ndarray,
    moving: np.ndarray,
    rect: tuple[int, int, int, int],
    config: MotionConfig,
) -> list[tuple[int, int, int, int]]:
    """One box per dominant colour of the moving pixels in ``rect`` (or ``[rect]``)."""
    x, y, w, h = rect
    sub = frame[y : y + h, x : x + w].astype(np.int32)
    code = (sub[..., 0] << 16) | (sub[..., 1] << 8) | sub[..., 2]
    sel = moving[y : y + h, x : x + w].astype(bool)
    colours, counts = np.unique(code[sel], return_counts=True)
    need = max(config.min_colour_pixels, 0.1 * sel.sum())
    dominant = colours[counts >= need]
    if len(dominant) < 2:
        return [rect]
    parts = []
    for c in dominant:
        ys, xs = np.nonzero(sel & (code == c))
        parts.append((x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1))
    return parts


def boxes_to_targets(boxes: np.ndarray, grid: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell targets from boxes (K, 4) ``(x, y, w, h)`` in frame pixels.

    Returns ``pres`` (G*G,) float32 in {0, 1} and ``where`` (G*G, 4) float32
    ``[w/160, h/210, 2*cx/160 - 1, 2*cy/210 - 1]``, zeros where no box. A box
    belongs to the cell holding its centre (row-major, row from y); when two
    boxes share a cell the larger one wins.
    """
    if grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid}")
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    pres = np.zeros(grid * grid, np.float32)
    where = np.zeros((grid * grid, 4), np.float32)
    if len(boxes) == 0:
        return pres, where
    height, width = FRAME_SHAPE
    x, y, w, h = boxes.T
    cx, cy = x + w / 2, y + h / 2
    col = np.clip((cx / width * grid).astype(np.int64), 0, grid - 1)
    row = np.clip((cy / height * grid).astype(np.int64), 0, grid - 1)
    cell = row * grid + col
    vals = np.stack([w / width, h / height, 2 * cx / width - 1, 2 * cy / height - 1], axis=1)
    # Write small boxes first so that a larger box in the same cell overwrites them.
    order = np.argsort(w * h, kind="stable")
    where[cell[order]] = vals[order]
    pres[cell] = 1.0
    return pres, where


def targets_to_boxes(pres: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Invert :func:`boxes_to_targets`: boxes (K, 4) ``(x, y, w, h)`` of present cells."""
    sel = where[np.asarray(pres) > 0.5]
    height, width = FRAME_SHAPE
    w, h = sel[:, 0] * width, sel[:, 1] * height
    cx, cy = (sel[:, 2] + 1) / 2 * width, (sel[:, 3] + 1) / 2 * height
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1).astype(np.float32)


def mask_to_model(masks: np.ndarray, size: int = 128) -> np.ndarray:
    """Binary masks (N, 210, 160) -> (N, size, size) uint8 in {0, 1}.

    Area interpolation with "any coverage counts": a one-pixel-high row of the
    ball survives the 210 -> 128 squeeze (nearest-neighbour could drop it).
    """
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    out = np.empty((len(masks), size, size), np.uint8)
    for i, m in enumerate(masks):
        small = cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        out[i] = small > 1e-3
    return out


def match_centres(
    pred: np.ndarray, truth: np.ndarray, max_dist: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of centres (P, 2) and (Q, 2) closer than ``max_dist`` px.

    Hungarian matching on Euclidean distance; returns the matched indices into
    ``pred`` and ``truth`` (equal lengths).
    """
    pred = np.asarray(pred, np.float32).reshape(-1, 2)
    truth = np.asarray(truth, np.float32).reshape(-1, 2)
    if len(pred) == 0 or len(truth) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    dist = np.linalg.norm(pred[:, None] - truth[None], axis=-1)
    big = max_dist * 1e3 + 1.0
    rows, cols = linear_sum_assignment(np.where(dist < max_dist, dist, big))
    ok = dist[rows, cols] < max_dist
    return rows[ok].astype(np.int64), cols[ok].astype(np.int64)
