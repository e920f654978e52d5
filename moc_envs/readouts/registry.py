"""The readout kinds ``readouts.json`` may name, and a game's set of readouts."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import Detection
from moc_envs.readouts.base import Readout
from moc_envs.readouts.bits import BitsReadout
from moc_envs.readouts.count import CountReadout
from moc_envs.readouts.course.slots import CourseReadout
from moc_envs.readouts.direction import DirectionReadout
from moc_envs.readouts.dots import DotsReadout
from moc_envs.readouts.formation import FormationReadout
from moc_envs.readouts.height import HeightReadout
from moc_envs.readouts.identity import IdentityReadout
from moc_envs.readouts.lane import LaneReadout
from moc_envs.readouts.shot import ShotReadout

__all__ = ["READOUT_KINDS", "ReadoutSet", "detector_readouts", "readout_from_json"]

READOUT_KINDS: dict[str, type[Readout]] = {
    CountReadout.kind: CountReadout,
    DirectionReadout.kind: DirectionReadout,
    FormationReadout.kind: FormationReadout,
    LaneReadout.kind: LaneReadout,
    BitsReadout.kind: BitsReadout,
    IdentityReadout.kind: IdentityReadout,
    DotsReadout.kind: DotsReadout,
    ShotReadout.kind: ShotReadout,
    HeightReadout.kind: HeightReadout,
    CourseReadout.kind: CourseReadout,
}
"""Every readout kind by the name its JSON rows carry in ``"kind"``."""


def readout_from_json(row: Mapping[str, Any], spec: GameSpec) -> Readout:
    """The readout a JSON row describes; ValueError for an unknown kind or a malformed row."""
    if not isinstance(row, Mapping):
        raise ValueError(f"a readout must be a JSON object, got {type(row).__name__}")
    kind = row.get("kind")
    cls = READOUT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown readout kind {kind!r}; expected one of {sorted(READOUT_KINDS)}")
    return cls.from_json(row, spec)


class ReadoutSet:
    """A game's readouts: what they read merged into one ``{label: byte}``."""

    def __init__(self, spec: GameSpec, readouts: Sequence[Readout], info: Mapping[str, Any] | None = None) -> None:
        """``readouts`` give disjoint labels of ``spec``'s game; ``info``: fit details kept in the JSON."""
        self.game = spec.name
        self.readouts = tuple(readouts)
        self.info = dict(info or {})
        seen: set[str] = set()
        for r in self.readouts:
            if not isinstance(r, Readout):
                raise TypeError(f"readouts must be Readout instances, got {type(r).__name__}")
            twice = sorted(seen & set(r.labels))
            if twice:
                raise ValueError(f"labels {twice} are given by two readouts; each label by one only")
            seen |= set(r.labels)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label the set gives, in readout order."""
        return tuple(lab for r in self.readouts for lab in r.labels)

    def fresh(self) -> ReadoutSet:
        """A copy with its own state, for one more env (stateful readouts must not be shared)."""
        return copy.deepcopy(self)

    def reset(self) -> None:
        """Episode start: every readout forgets earlier steps."""
        for r in self.readouts:
            r.reset()

    def read(self, objects: Sequence[Detection], frame: np.ndarray | None) -> dict[str, int]:
        """Every label the readouts can read this step."""
        out: dict[str, int] = {}
        for r in self.readouts:
            out.update(r.read(objects, frame))
        return out

    def to_json(self) -> list[dict[str, Any]]:
        """The readouts' JSON rows."""
        return [r.to_json() for r in self.readouts]


def detector_readouts(detector: object) -> ReadoutSet | None:
    """The readouts a detector carries (a learned detector whose weights folder has a
    ``readouts.json``: its ``readouts`` attribute), or None."""
    readouts = getattr(detector, "readouts", None)
    if readouts is not None and not isinstance(readouts, ReadoutSet):
        raise TypeError(f"a detector's readouts must be a ReadoutSet or None, got {type(readouts).__name__}")
    return readouts
