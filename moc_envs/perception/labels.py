"""AtariARI labels: estimated from detected boxes, or read from RAM as ground truth."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from moc_envs.errors import CorruptWeightsError
from moc_envs.games import GameSpec, LabelLink
from moc_envs.perception.detection import RAM_SIZE, Detection

if TYPE_CHECKING:
    from moc_envs.weights.manifest import VerifiedFolder

__all__ = [
    "LABELS_FILE",
    "LABELS_FORMAT",
    "check_tracked",
    "mirrored_start",
    "reach_start",
    "labels_from_detections",
    "labels_from_ram",
    "link_box",
    "link_value",
    "read_label_offsets",
    "round_labels",
]

LABELS_FILE = "labels.json"
"""A weights folder's label calibration: the offsets of its game's label links fitted for its
detector (:mod:`trainers.evaluate.label_offsets`). Optional: without it the game's own offsets apply."""
LABELS_FORMAT = "moc_envs.labels/1"
"""Format tag of ``labels.json``."""


def _candidates(
    link: LabelLink, detections: Sequence[Detection], slots: Mapping[str, range] | None
) -> list[Detection]:
    cats = link.categories
    picked = [d for d in detections if d.category in cats]
    if slots is not None:
        # Tracked: read what the observation shows, so a box left out of the slots (a spurious
        # second paddle, an overflow) never stands in for the tracked object.
        picked = [d for d in picked if d.category in slots and d.slot in slots[d.category]]
    if link.region is not None:
        axis, lo, hi = link.region
        picked = [d for d in picked if lo <= d.center[0 if axis == "x" else 1] < hi]
    picked.sort(key=lambda d: (d.y, d.x))
    return picked


def link_box(
    link: LabelLink, detections: Sequence[Detection], slots: Mapping[str, range] | None = None
) -> Detection | None:
    """The box that ``link`` reads its label from among ``detections`` (None: object absent).

    ``slots`` (a spec's :attr:`~moc_envs.games.GameSpec.slot_ranges`) marks the detections as
    tracked: only boxes in a slot of their category are read, so a link on a one-slot category
    reads that slot's box. Without it every box of the category counts (untracked detections),
    and the region / instance rule picks among them.
    """
    boxes = _candidates(link, detections, slots)
    return boxes[link.instance] if len(boxes) > link.instance else None


def link_value(
    link: LabelLink, box: Detection, frame: np.ndarray | None = None, others: Sequence[Detection] = ()
) -> float:
    """The RAM-scale value that ``link`` reads from one box (unrounded, before ``wrap``).

    ``frame`` (the RGB frame the box was found in) lets a link with ``mirror`` find where its
    sprite starts whichever way it faces (:func:`mirrored_start`); without it the box is read
    as it is. ``others``: the step's detections, which a link with ``reach`` looks in for what
    the sprite stretches toward (:func:`reach_start`).
    """
    start, extent = (box.x, box.w) if link.axis == "x" else (box.y, box.h)
    pixel = start
    if link.clip is not None:
        border, nominal = link.clip
        # A sprite cut by the border shows a moving far edge and a fixed near edge.
        if start <= border + 0.5 and extent < nominal - 0.5:
            pixel = start + extent - nominal
    if link.mirror is not None and link.axis == "x" and frame is not None:
        pixel = mirrored_start(box, frame, *link.mirror)
    if link.reach is not None and link.axis == "x":
        pixel = reach_start(box, others, *link.reach)
    extra = sum(off for cat, off in link.category_offsets if cat == box.category)
    return link.scale * pixel + link.offset + extra


def reach_start(box: Detection, others: Sequence[Detection], width: float, toward: Sequence[str]) -> float:
    """Where a sprite ``width`` px wide that stretches toward another object starts (frame x).

    A box wider than ``width`` + 1 holds the body and what it stretches out (a boxer's punch)
    toward the nearest box of the ``toward`` categories: when that box's centre lies left of
    this box's centre, the body is the box's right part, starting at ``x + w - width``. A box
    no wider, or with nothing to reach toward, is read as it is.
    """
    if box.w <= width + 1.0:
        return float(box.x)
    cx = box.center[0]
    targets = [o for o in others if o is not box and o.category in toward]
    if not targets:
        return float(box.x)
    near = min(targets, key=lambda o: abs(o.center[0] - cx) + abs(o.center[1] - box.center[1]))
    return float(box.x + box.w - width) if near.center[0] < cx else float(box.x)


_LIT = 40
"""Summed RGB difference from the background above which a pixel belongs to the sprite."""


def mirrored_start(box: Detection, frame: np.ndarray, shift: float, width: float) -> float:
    """Where a sprite drawn mirrored when it turns round starts, as when it faces front (frame x).

    For a sprite ``width`` px wide whose pixels start ``shift`` px further right when it faces
    back (Tennis' players, 12 px, 4 px). The sprite is the pixels in ``box`` unlike the
    background (on each row, the pixels just left and right of the box). Its top lit row sits
    on the side away from what it holds (the head; the racket is on the other side): right of
    the box's centre, the sprite faces back. Only a box tight on a sprite of that width (lit in
    its first and last column, as a pixel detector's) says where the pixels start; any other
    box (wider: a swing, or a footprint like OCAtari's; no lit pixel) is read as it is.
    """
    h, w = frame.shape[:2]
    x0, y0 = max(int(round(box.x)), 0), max(int(round(box.y)), 0)
    x1, y1 = min(int(round(box.x + box.w)), w), min(int(round(box.y + box.h)), h)
    if x1 <= x0 or y1 <= y0 or box.w > width + 0.5:
        return float(box.x)
    patch = frame[y0:y1, x0:x1].astype(np.int32)
    # Each row's background is the colour just outside the box on that row, left and right,
    # so that a court line crossing the box is not taken for the sprite.
    lit = np.ones(patch.shape[:2], dtype=bool)
    for outside in (max(x0 - 1, 0), min(x1, w - 1)):
        lit &= np.abs(patch - frame[y0:y1, outside, None].astype(np.int32)).sum(axis=-1) > _LIT
    cols = np.flatnonzero(lit.any(axis=0))
    if len(cols) == 0 or cols[0] > 0 or cols[-1] < x1 - x0 - 1:
        return float(box.x)
    top = np.flatnonzero(lit[np.flatnonzero(lit.any(axis=1))[0]])
    back = top.mean() > (x1 - x0 - 1) / 2
    return float(box.x - (shift if back else 0.0))


def round_labels(values: float | np.ndarray, wrap: int | None = None) -> np.ndarray:
    """Labels from :func:`link_value` results: int64, same shape.

    Rounded to the nearest integer (halves to even, as Python's ``round``), taken modulo
    ``wrap`` (a link's :attr:`~moc_envs.games.LabelLink.wrap`) when the byte counts around the
    screen, and clipped to a byte (0..255).
    """
    out = np.round(np.asarray(values, dtype=np.float64))
    if wrap is not None:
        out = np.mod(out, wrap)
    return np.clip(out, 0, 255).astype(np.int64)


def check_tracked(spec: GameSpec, detections: Sequence[Detection]) -> None:
    """Refuse detections that a :class:`~moc_envs.perception.tracking.SlotTracker` of ``spec``
    cannot have returned: a slot outside the box's category, or two boxes in one slot."""
    ranges = spec.slot_ranges
    taken: set[int] = set()
    for d in detections:
        if d.slot == -1:
            continue
        rows = ranges.get(d.category)
        if rows is None or d.slot not in rows:
            expected = (
                f"-1 or one of {spec.name}'s {d.category!r} slots {rows.start}..{rows.stop - 1}"
                if rows is not None
                else f"-1 ({d.category!r} has no slots in {spec.name})"
            )
            raise ValueError(
                f"tracked detections must carry their category's slot or -1: a {d.category!r} box has "
                f"slot {d.slot}, expected {expected}"
            )
        if d.slot in taken:
            raise ValueError(f"tracked detections hold one box per slot, got two in slot {d.slot}")
        taken.add(d.slot)


def labels_from_detections(
    spec: GameSpec,
    detections: Sequence[Detection],
    tracked: bool = False,
    frame: np.ndarray | None = None,
) -> dict[str, int]:
    """AtariARI localisation labels (RAM scale, 0..255) estimated from detected boxes.

    ``tracked=True`` for the tracker's output (``info["objects"]``, each box with its slot): a
    label then reads the box its slot shows in the observation (:func:`link_box`), and
    detections no tracker of ``spec`` could give raise ValueError. Plain detections
    (``tracked=False``) are read by category, region and instance alone. ``frame``, the RGB
    frame of the detections, lets links with ``mirror`` read which way a sprite faces.
    A label whose object is absent is left out.
    """
    slots = None
    if tracked:
        check_tracked(spec, detections)
        slots = spec.slot_ranges
    labels: dict[str, int] = {}
    for link in spec.label_links:
        box = link_box(link, detections, slots)
        if box is not None:
            labels[link.label] = _label_byte(link_value(link, box, frame, detections), link.wrap)
    return labels


def _label_byte(value: float, wrap: int | None) -> int:
    """:func:`round_labels` of one value, in Python arithmetic: NumPy's per-call cost on a scalar
    was most of the labels' share of an env step. Python's ``round`` rounds halves to even and
    ``%`` takes the divisor's sign, as ``np.round`` and ``np.mod`` do."""
    if not math.isfinite(value):
        return int(round_labels(value, wrap))
    out = round(value)
    if wrap is not None:
        out %= wrap
    return min(max(out, 0), 255)


def labels_from_ram(spec: GameSpec, ram: np.ndarray) -> dict[str, int]:
    """The ground truth: every AtariARI label of the game as its raw RAM byte."""
    ram = np.asarray(ram)
    if ram.shape != (RAM_SIZE,):
        raise ValueError(f"ram must have shape ({RAM_SIZE},), got {ram.shape}")
    return {lab.name: int(ram[lab.index]) for lab in spec.ram_labels}


def read_label_offsets(files: VerifiedFolder, spec: GameSpec) -> dict[str, float]:
    """The label offsets of a verified weights folder's ``labels.json`` ({} when it has none).

    Whether the folder has one is decided by its verified manifest: a listed ``labels.json``
    that is gone or changed at read time, or one on disk that the manifest does not list,
    raises CorruptWeightsError (fitted offsets are never dropped silently). So does a file for
    another game or format, naming a label the game has no link for, or holding an offset that
    is not a finite number.
    """
    path = files.folder / LABELS_FILE
    if not files.holds(LABELS_FILE):
        return {}
    data = files.read_json(LABELS_FILE)
    if not isinstance(data, dict) or data.get("format") != LABELS_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CorruptWeightsError(f"{path} has format {got!r}, expected {LABELS_FORMAT!r}")
    if data.get("game") != spec.name:
        raise CorruptWeightsError(f"{path} holds label offsets for game {data.get('game')!r}, not {spec.name!r}")
    offsets = data.get("offsets")
    if not isinstance(offsets, dict):
        raise CorruptWeightsError(f"{path}: 'offsets' must be an object of label -> number, got {type(offsets).__name__}")
    try:
        spec.with_label_offsets(offsets)
    except ValueError as err:
        raise CorruptWeightsError(f"{path}: {err}") from err
    return {k: float(v) for k, v in offsets.items()}
