"""The readout kinds ``readouts.json`` may name, a game's set of readouts, and ``readouts.json``
itself (a weights folder's fitted readouts, read through its verified manifest)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.errors import CorruptWeightsError
from moc_envs.games import GameSpec, get_game
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
from moc_envs.readouts.setting import SettingReadout
from moc_envs.readouts.shot import ShotReadout
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.manifest import VerifiedFolder
from moc_envs.weights.safe_read import finite_for_json

__all__ = [
    "READOUTS_FORMAT", "READOUTS_JSON", "READOUT_KINDS", "ReadoutSet", "detector_readouts", "read_readouts",
    "readout_from_json", "save_readouts",
]  # fmt: skip

READOUTS_JSON = "readouts.json"
"""The file's name in a weights folder."""
READOUTS_FORMAT = "moc_envs.readouts/1"
"""Its format tag."""
_KEYS = frozenset(("format", "game", "readouts", "info"))
_KEYS = frozenset(("format", "game", "readouts", "info"))

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
    SettingReadout.kind: SettingReadout,
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

    def fresh(self, game_mode: int | None = None) -> ReadoutSet:
        """A copy with its own state, for one more env (stateful readouts must not be shared),
        set up for that env's game mode (``mode=`` of the ALE env; None: ALE's default)."""
        out = copy.deepcopy(self)
        for r in out.readouts:
            r.configure(game_mode)
        return out

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


def save_readouts(readouts: ReadoutSet, folder: str | Path) -> Path:
    """Write ``readouts.json`` atomically; return its path (refreshing the manifest is the caller's)."""
    doc = {
        "format": READOUTS_FORMAT, "game": readouts.game, "readouts": readouts.to_json(),
        "info": finite_for_json(readouts.info),
    }  # fmt: skip
    return atomic_write_text(Path(folder) / READOUTS_JSON, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_readouts(
    files: VerifiedFolder, game: str | GameSpec, taken: Iterable[str] = ()
) -> ReadoutSet | None:
    """The readouts of a verified weights folder, or None when it has no ``readouts.json``.

    Whether it has one is the verified manifest's word (a listed file gone or changed, or one on
    disk the manifest does not list, raises CorruptWeightsError). So does a file of another
    format or game, an unknown readout kind, a malformed row, or a label also in ``taken`` (the
    labels the folder's label links and HUD reader already give: one source per label).
    """
    spec = game if isinstance(game, GameSpec) else get_game(game)
    if not files.holds(READOUTS_JSON):
        return None
    path = files.folder / READOUTS_JSON
    doc = files.read_json(READOUTS_JSON)
    if not isinstance(doc, dict):
        raise CorruptWeightsError(f"{path} must hold a JSON object, got {type(doc).__name__}")
    if set(doc) - _KEYS or "readouts" not in doc:
        raise CorruptWeightsError(f"{path} must have the keys {sorted(_KEYS)}, got {sorted(doc)}")
    if doc.get("format") != READOUTS_FORMAT:
        raise CorruptWeightsError(f"{path} has format {doc.get('format')!r}, expected {READOUTS_FORMAT!r}")
    if doc.get("game") != spec.name:
        raise CorruptWeightsError(f"{path} holds readouts for game {doc.get('game')!r}, not {spec.name!r}")
    rows = doc["readouts"]
    if not isinstance(rows, list):
        raise CorruptWeightsError(f"{path}: readouts must be a list, got {type(rows).__name__}")
    info = doc.get("info", {})
    if not isinstance(info, dict):
        raise CorruptWeightsError(f"{path}: info must be a JSON object, got {type(info).__name__}")
    try:
        readouts = ReadoutSet(spec, [readout_from_json(row, spec) for row in rows], info)
    except (TypeError, ValueError) as err:
        raise CorruptWeightsError(f"{path}: {err}") from err
    twice = sorted(set(readouts.labels) & set(taken))
    if twice:
        raise CorruptWeightsError(
            f"{path} gives labels {twice} that the folder's label links or HUD reader already give; "
            "expected each label from one source"
        )
    return readouts
