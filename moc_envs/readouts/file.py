"""``readouts.json``: a weights folder's fitted readouts, read through its verified manifest."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from moc_envs.errors import CorruptWeightsError
from moc_envs.games import GameSpec, get_game
from moc_envs.readouts.registry import ReadoutSet, readout_from_json
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.manifest import VerifiedFolder
from moc_envs.weights.safe_read import finite_for_json

__all__ = ["READOUTS_FORMAT", "READOUTS_JSON", "read_readouts", "save_readouts"]

READOUTS_JSON = "readouts.json"
"""The file's name in a weights folder."""
READOUTS_FORMAT = "moc_envs.readouts/1"
"""Its format tag."""
_KEYS = frozenset(("format", "game", "readouts", "info"))


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
