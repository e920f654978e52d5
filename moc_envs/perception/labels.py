"""AtariARI labels: estimated from detected boxes, or read from RAM as ground truth."""

from __future__ import annotations

from collections.abc import Sequence
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
    "labels_from_detections",
    "labels_from_ram",
    "link_box",
    "link_value",
    "read_label_offsets",
]

LABELS_FILE = "labels.json"
"""A weights folder's label calibration: the offsets of its game's label links fitted for its
detector (:mod:`trainers.evaluate.label_offsets`). Optional: without it the game's own offsets apply."""
LABELS_FORMAT = "moc_envs.labels/1"
"""Format tag of ``labels.json``."""


def _candidates(link: LabelLink, detections: Sequence[Detection]) -> list[Detection]:
    cats = link.categories
    picked = [d for d in detections if d.category in cats]
    if link.region is not None:
        axis, lo, hi = link.region
        picked = [d for d in picked if lo <= d.center[0 if axis == "x" else 1] < hi]
    picked.sort(key=lambda d: (d.y, d.x))
    return picked


def link_box(link: LabelLink, detections: Sequence[Detection]) -> Detection | None:
    """The box that ``link`` reads its label from among ``detections`` (None: object absent)."""
    boxes = _candidates(link, detections)
    return boxes[link.instance] if len(boxes) > link.instance else None


def link_value(link: LabelLink, box: Detection) -> float:
    """The RAM-scale value that ``link`` reads from one box (unrounded)."""
    start, extent = (box.x, box.w) if link.axis == "x" else (box.y, box.h)
    pixel = start
    if link.clip is not None:
        border, nominal = link.clip
        # A sprite cut by the border shows a moving far edge and a fixed near edge.
        if start <= border + 0.5 and extent < nominal - 0.5:
            pixel = start + extent - nominal
    return link.scale * pixel + link.offset


def labels_from_detections(spec: GameSpec, detections: Sequence[Detection]) -> dict[str, int]:
    """AtariARI localisation labels (RAM scale, 0..255) estimated from detected boxes.

    A label whose object is absent is left out.
    """
    labels: dict[str, int] = {}
    for link in spec.label_links:
        box = link_box(link, detections)
        if box is None:
            continue
        value = round(link_value(link, box))
        labels[link.label] = int(min(max(value, 0), 255))
    return labels


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
