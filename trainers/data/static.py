"""Targets for objects that never move: found once in the background pass, added to every frame.

Motion targets come from ``|frame - background|``, so an object that never leaves its place
(Freeway's second chicken, Carnival's wheel) sits inside the background image and never gets a
target: the detector learns to leave it to the background, and the env never shows it (issue 28).

The background pass already plays the game with OCAtari's RAM objects at hand, read with its HUD
off: the objects in play, the same ones the held-out evaluation counts as truth (with the HUD on,
OCAtari also lists icons of the HUD that it does not flag, MsPacman's fruit in the bottom bar).
An object the env promises that holds one and the same box on at least ``min_share`` of the
background pass's frames is *static*: its box is kept in meta.json, a handful of boxes learned
from those frames (no per-frame truth enters the targets). A static object inside a derived HUD
band is kept: the band is a guess from pixels that change in place, and an object that animates
in place (Carnival's spinning wheel) looks like a clock to it, where the RAM says it is in play.
Every recorded frame then gets that box as a target, with the object's pixels in the motion mask,
where

* the frame still draws the object: at least ``min_drawn`` as many pixels in the box unlike
  the ground around it as the background image has there, so a static object the game has
  removed gets no target while one that animates in place (other pixels, as many) keeps it, and
* no motion box already covers it (an object moving over it, or the object itself animating).

The object's pixels are those inside the box that differ from the most common colour of the
ring just around it in the background image (the ground it stands on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainers.data.ground_truth import GTObject
from trainers.data.motion import FRAME_SHAPE, MotionResult

__all__ = ["StaticObject", "StaticLook", "find_static", "static_look", "object_pixels", "add_static", "static_from_json"]

_RING = 2  # px of ground around a box that says which colour the ground is


@dataclass(frozen=True)
class StaticObject:
    """An object that held one box on most frames of the background pass."""

    category: str
    box: tuple[int, int, int, int]
    """(x, y, w, h) in frame pixels, clipped to the frame."""
    share: float
    """Share of the background pass's frames on which the object held exactly this box."""

    def as_json(self) -> dict[str, object]:
        """The dict meta.json stores."""
        return {"category": self.category, "box": list(self.box), "share": round(self.share, 4)}


def static_from_json(rows: Sequence[dict]) -> list[StaticObject]:
    """Static objects back from meta.json's ``static_objects`` list (checked)."""
    out = []
    for r in rows:
        box = r.get("box") if isinstance(r, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
            raise ValueError(f"a static object must be {{category, box: [x, y, w, h] ints, share}}, got {r!r}")
        out.append(StaticObject(str(r["category"]), (box[0], box[1], box[2], box[3]), float(r["share"])))
    return out


def _clip(x: float, y: float, w: float, h: float) -> tuple[int, int, int, int] | None:
    H, W = FRAME_SHAPE
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(W, int(round(x + w))), min(H, int(round(y + h)))
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1 - x0, y1 - y0)


def find_static(
    truths: Sequence[Sequence[GTObject]],
    categories: Sequence[str],
    min_share: float = 0.9,
) -> list[StaticObject]:
    """Objects of ``categories`` (not HUD) that hold one box on >= ``min_share`` of the frames.

    ``truths`` holds the RAM objects in play of each background frame (OCAtari with its HUD off).
    """
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    if not truths:
        return []
    wanted = set(categories)
    # Counted by category and box, not by OCAtari's instance: its object lists renumber as other
    # objects come and go (Carnival's wheel changes instance from frame to frame).
    counts: Counter = Counter()
    for frame in truths:
        held = {(o.category, _clip(o.x, o.y, o.w, o.h)) for o in frame if not o.hud and o.category in wanted}
        counts.update(k for k in held if k[1] is not None)
    return [StaticObject(category, box, n / len(truths)) for (category, box), n in sorted(counts.items()) if n / len(truths) >= min_share]


@dataclass(frozen=True)
class StaticLook:
    """How a static object looks in the background image: its pixels and the ground around it."""

    own: np.ndarray
    """(h, w) bool: the box's pixels unlike the ground (:func:`object_pixels`)."""
    ground: np.ndarray
    """(3,) uint8: the most common colour of the ring just around the box; None-like when the
    box is the whole frame (then every pixel is the object's)."""


def static_look(background: np.ndarray, box: tuple[int, int, int, int]) -> StaticLook:
    """The object's pixels in ``box`` of the background image and the colour of the ground around it."""
    H, W = FRAME_SHAPE
    x, y, w, h = box
    outer = background[max(0, y - _RING) : min(H, y + h + _RING), max(0, x - _RING) : min(W, x + w + _RING)]
    ring = np.ones(outer.shape[:2], bool)
    iy, ix = y - max(0, y - _RING), x - max(0, x - _RING)
    ring[iy : iy + h, ix : ix + w] = False
    if not ring.any():  # a box as large as the frame: no ground to compare against
        return StaticLook(np.ones((h, w), bool), np.zeros(0, np.uint8))
    codes = [tuple(int(c) for c in px) for px in outer[ring]]
    ground = np.array(Counter(codes).most_common(1)[0][0], np.uint8)
    return StaticLook(_unlike(background, box, ground), ground)


def _unlike(image: np.ndarray, box: tuple[int, int, int, int], ground: np.ndarray) -> np.ndarray:
    x, y, w, h = box
    if not len(ground):
        return np.ones((h, w), bool)
    return (image[y : y + h, x : x + w] != ground).any(axis=-1)


def object_pixels(background: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) bool: the background image's pixels in ``box`` that differ from the ground around it."""
    return static_look(background, box).own


def _overlap(a: tuple[int, int, int, int], b: np.ndarray) -> float:
    """Intersection over union of box ``a`` and box ``b`` (x, y, w, h)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter)) if inter else 0.0


def add_static(
    frame: np.ndarray,
    background: np.ndarray,
    motion: MotionResult,
    statics: Sequence[StaticObject],
    min_drawn: float = 0.5,
    max_iou: float = 0.3,
    looks: Sequence[StaticLook] | None = None,
) -> tuple[MotionResult, int]:
    """``motion`` with the static objects drawn on ``frame`` added; also how many were added.

    ``looks``: each static object's :func:`static_look` (the same for every frame of a
    background, so a caller adding them to many frames computes them once); None: computed here.
    """
    if not statics:
        return motion, 0
    if looks is None:
        looks = [static_look(background, s.box) for s in statics]
    boxes, mask, added = list(motion.boxes), motion.mask.copy(), 0
    for s, look in zip(statics, looks, strict=True):
        x, y, w, h = s.box
        expected = int(look.own.sum())
        if not expected:
            continue
        # Pixels unlike the ground, wherever in the box: the same object in another phase of
        # its animation counts as drawn; bare ground (the object removed) does not.
        now = _unlike(frame, s.box, look.ground)
        if now.sum() < min_drawn * expected:
            continue
        if any(_overlap(s.box, b) > max_iou for b in motion.boxes):
            continue
        boxes.append(np.array(s.box, np.float32))
        mask[y : y + h, x : x + w] |= now.astype(np.uint8)
        added += 1
    if not added:
        return motion, 0
    out = MotionResult(
        boxes=np.stack(boxes).astype(np.float32), mask=mask, dropped=motion.dropped,
        flash=motion.flash, dropped_boxes=motion.dropped_boxes,
    )  # fmt: skip
    return out, added
