"""The ``count`` readout: a label that counts the objects the observation shows.

``byte = scale * n + bias``, ``n`` the number of tracked boxes (each in a slot) of the given
categories, optionally only those whose centre lies in a region of the frame (SpaceInvaders'
invaders left, MsPacman's ghosts out of the pen). ``scale`` and ``bias`` are fitted from play
(:mod:`trainers.readouts.fit_count`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import Readout, check_keys, check_labels, check_number

__all__ = ["CountReadout"]


class CountReadout(Readout):
    """One label: a count of shown boxes (module docstring)."""

    kind: ClassVar[str] = "count"

    def __init__(
        self,
        spec: GameSpec,
        label: str,
        categories: Sequence[str],
        scale: float = 1.0,
        bias: float = 0.0,
        region: tuple[str, float, float] | None = None,
    ) -> None:
        """``categories``: slot categories of ``spec`` whose boxes count; ``region``:
        ``(axis, lo, hi)``, only boxes centred in ``[lo, hi)`` on that axis count."""
        self.labels = check_labels(spec, [label], self.kind)
        cats = tuple(categories)
        known = set(spec.slot_ranges)
        if not cats or not set(cats) <= known:
            raise ValueError(f"readout 'count': categories must be some of {sorted(known)}, got {list(cats)}")
        if region is not None:
            if len(region) != 3 or region[0] not in ("x", "y"):
                raise ValueError(f"readout 'count': region must be [axis 'x' or 'y', lo, hi], got {region!r}")
            lo, hi = check_number("region lo", region[1]), check_number("region hi", region[2])
            if not lo < hi:
                raise ValueError(f"readout 'count': region needs lo < hi, got {lo} and {hi}")
            region = (str(region[0]), lo, hi)
        self.label = label
        self.categories = cats
        self.scale = check_number("scale", scale)
        self.bias = check_number("bias", bias)
        self.region = region
        self._slots = {c: spec.slot_ranges[c] for c in cats}

    def count(self, objects: Sequence[Detection]) -> int:
        """How many shown boxes this readout counts in ``objects``."""
        n = 0
        for d in objects:
            rows = self._slots.get(d.category)
            if rows is None or d.slot not in rows:
                continue
            if self.region is not None:
                axis, lo, hi = self.region
                c = d.center[0 if axis == "x" else 1]
                if not lo <= c < hi:
                    continue
            n += 1
        return n

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """The label from the count; left out when the byte would fall outside 0..255."""
        value = round(self.scale * self.count(objects) + self.bias)
        return {self.label: int(value)} if 0 <= value <= 255 else {}

    def to_json(self) -> dict[str, Any]:
        """The JSON row of this readout."""
        row: dict[str, Any] = {
            "kind": self.kind, "labels": [self.label], "categories": list(self.categories),
            "scale": self.scale, "bias": self.bias,
        }  # fmt: skip
        if self.region is not None:
            row["region"] = list(self.region)
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, Any], spec: GameSpec) -> CountReadout:
        """Rebuild from :meth:`to_json`'s row (ValueError on anything malformed)."""
        check_keys(row, ("labels", "categories", "scale", "bias"), ("region",))
        labels = check_labels(spec, row["labels"], cls.kind)
        if len(labels) != 1:
            raise ValueError(f"readout 'count' gives one label, got {list(labels)}")
        cats = row["categories"]
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise ValueError(f"readout 'count': categories must be a list of strings, got {cats!r}")
        region = row.get("region")
        if region is not None and not isinstance(region, list):
            raise ValueError(f"readout 'count': region must be [axis, lo, hi], got {region!r}")
        return cls(spec, labels[0], cats, row["scale"], row["bias"], tuple(region) if region is not None else None)
