"""AtariARI labels: estimated from detected boxes, or read from RAM as ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moc_envs.detection import RAM_SIZE, Detection
from moc_envs.games import GameSpec, LabelLink

__all__ = ["labels_from_detections", "labels_from_ram", "link_value"]


def _candidates(link: LabelLink, detections: Sequence[Detection]) -> list[Detection]:
    cats = link.categories
    picked = [d for d in detections if d.category in cats]
    if link.region is not None:
        axis, lo, hi = link.region
        picked = [d for d in picked if lo <= d.center[0 if axis == "x" else 1] < hi]
    picked.sort(key=lambda d: (d.y, d.x))
    return picked


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
        boxes = _candidates(link, detections)
        if len(boxes) <= link.instance:
            continue
        value = round(link_value(link, boxes[link.instance]))
        labels[link.label] = int(min(max(value, 0), 255))
    return labels


def labels_from_ram(spec: GameSpec, ram: np.ndarray) -> dict[str, int]:
    """The ground truth: every AtariARI label of the game as its raw RAM byte."""
    ram = np.asarray(ram)
    if ram.shape != (RAM_SIZE,):
        raise ValueError(f"ram must have shape ({RAM_SIZE},), got {ram.shape}")
    return {lab.name: int(ram[lab.index]) for lab in spec.ram_labels}
