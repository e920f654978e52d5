"""The learned HUD reader: scores, lives, clocks and bars of ``info["labels"]``, read from the frame.

A weights folder may carry ``hud.json`` and ``hud.safetensors`` (fitted by ``moc-envs hud``,
:mod:`trainers.hud`): the game's glyph alphabet (bitmaps in the safetensors file, their names
in the JSON) and one :class:`~moc_envs.hud.fields.HudField` per AtariARI label the frame shows
(where it is drawn and how its glyphs give the RAM byte). :class:`HudReader` reads them from an
RGB frame with no RAM: ``reader.read(frame)`` is ``{label: byte}`` for every label it could read;
one it cannot (an unknown glyph, a blank HUD) is left out, never guessed. The env adds these
labels to ``info["labels"]`` for a learned detector whose folder has a ``hud.json``. A field with a
``lead`` (a clock drawn behind its byte) also reads the steps before: each env reads through its own
``reader.fresh()`` copy and calls ``reset()`` at each episode start.

Loading goes through the folder's verified manifest (:mod:`moc_envs.weights.manifest`), reads
JSON and safetensors only, and refuses with :class:`~moc_envs.errors.CorruptWeightsError` a file
of another format or game, a label the game does not have (or twice), malformed fields, glyph
arrays of the wrong dtype or shape, and non-finite numbers.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.errors import CorruptWeightsError, FrameFormatError, MissingWeightsError
from moc_envs.games import GameSpec, get_game
from moc_envs.hud.fields import HudField, LeadTracker, drawn_of_glyphs, read_field, value_of_glyphs
from moc_envs.hud.glyphs import GlyphAlphabet, foreground, segment
from moc_envs.weights.atomic import atomic_path, atomic_write_text
from moc_envs.weights.manifest import VerifiedFolder, safetensors_metadata, verify_folder
from moc_envs.weights.safe_read import finite_for_json

__all__ = [
    "HUD_FILE",
    "HUD_JSON",
    "HUD_FORMAT",
    "HUD_ARRAYS",
    "HudReader",
    "detector_hud",
    "save_hud",
    "read_hud",
    "load_hud",
]

HUD_JSON = "hud.json"
"""The reader's format tag, game, glyph names and fields."""
HUD_FILE = "hud.safetensors"
"""The glyph bitmaps (``glyphs``, (G, H, W) uint8) and sizes (``glyph_sizes``, (G, 2) int32)."""
HUD_FORMAT = "moc_envs.hud/1"
"""Format tag of ``hud.json`` and ``hud.safetensors``."""
HUD_ARRAYS = ("glyphs", "glyph_sizes")

_CACHE_SIZE = 4096
"""Field crops remembered per field: a HUD changes seldom, so most frames repeat a crop."""
_FIELD_KEYS = frozenset(
    ("label", "kind", "box", "background", "shift", "digits", "base", "scale", "bias", "glyphs",
     "colour", "palette", "slope", "intercept", "unread", "table", "lead")
)  # fmt: skip


class HudReader:
    """Reads a game's HUD labels from RGB frames (module docstring)."""

    def __init__(
        self,
        game: str | GameSpec,
        fields: Sequence[HudField],
        alphabet: GlyphAlphabet,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """``fields``: one per label, each a label of ``game``'s RAM table; ``alphabet``: the glyphs
        they read; ``info``: fit details kept in ``hud.json``. Bad input raises ValueError."""
        spec = game if isinstance(game, GameSpec) else get_game(game)
        self.game = spec.name
        self.fields = tuple(fields)
        self.alphabet = alphabet
        self.info = dict(info or {})
        known = set(spec.ram_label_names)
        labels = [f.label for f in self.fields]
        if not self.fields:
            raise ValueError("a HUD reader needs at least one field")
        if not all(isinstance(f, HudField) for f in self.fields):
            raise ValueError("fields must be HudField objects")
        unknown = sorted(set(labels) - known)
        if unknown:
            raise ValueError(f"{spec.name} has no RAM labels named {unknown}; expected some of {sorted(known)}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"each label may have one field, got {labels}")
        for f in self.fields:
            f.check_alphabet(alphabet)
        # Per field, crop bytes -> byte read (a lead field's: the value drawn); shared by fresh() copies.
        self._cache: list[dict[bytes, int | None]] = [{} for _ in self.fields]
        self._leads = {i: LeadTracker(f) for i, f in enumerate(self.fields) if f.lead}

    def fresh(self) -> HudReader:
        """A copy for one more env: the same fields, glyphs and crop caches, its own memory of the
        steps before (a ``lead`` field's, :class:`~moc_envs.hud.fields.LeadTracker`)."""
        out = copy.copy(self)
        out._leads = {i: LeadTracker(t.field) for i, t in self._leads.items()}
        return out

    def reset(self) -> None:
        """Episode start: lead fields forget the values drawn before."""
        for t in self._leads.values():
            t.reset()

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels this reader can give."""
        return tuple(f.label for f in self.fields)

    def read(self, frame: np.ndarray) -> dict[str, int]:
        """``{label: RAM byte}`` for every field readable in ``frame`` (210, 160, 3) uint8."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[0] < 210 or frame.shape[1:] != (160, 3):
            raise FrameFormatError(f"a HUD reader reads uint8 RGB frames of shape (210, 160, 3), got {frame.dtype} {frame.shape}")
        out: dict[str, int] = {}
        glyphs: dict[tuple, list[int]] = {}  # fields drawn in one place (a clock's parts) cut it once
        for i, (field, cache) in enumerate(zip(self.fields, self._cache, strict=True)):
            crop = field.crop(frame)
            key = crop.tobytes()
            lead = self._leads.get(i)
            if key in cache:
                value = cache[key]
            else:
                if field.kind == "bar":
                    value = read_field(field, crop, self.alphabet)
                else:
                    place = (field.box, field.background)
                    if place not in glyphs:
                        glyphs[place] = self.alphabet.ids(segment(foreground(crop, field.background)))
                    ids = glyphs[place]
                    value = drawn_of_glyphs(field, ids, self.alphabet) if lead else value_of_glyphs(field, ids, self.alphabet)
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[key] = value
            if lead is not None:
                value = lead.step(value)
            if value is not None:
                out[field.label] = value
        return out

    def to_json(self) -> dict[str, Any]:
        """The content of ``hud.json``."""
        fields = []
        for f in self.fields:
            row: dict[str, Any] = {"label": f.label, "kind": f.kind, "box": list(f.box), "background": list(f.background)}
            if f.kind == "number":
                row.update(shift=f.shift, digits=f.digits, base=f.base, scale=f.scale, bias=f.bias)
            elif f.kind == "count":
                row.update(glyphs=list(f.glyphs), scale=f.scale, bias=f.bias)
            elif f.kind == "bar":
                row.update(colour=list(f.colour or ()), palette=[list(c) for c in f.palette], slope=f.slope, intercept=f.intercept)
            if f.unread:
                row.update(unread=list(f.unread))
            if f.table:
                row.update(table=[[list(seq), byte] for seq, byte in f.table])
            if f.lead:
                row.update(lead=[[list(changes), lead] for changes, lead in f.lead])
            fields.append(row)
        return {
            "format": HUD_FORMAT,
            "game": self.game,
            "file": HUD_FILE,
            "glyph_names": list(self.alphabet.names),
            "fields": fields,
            "info": finite_for_json(self.info),
        }


def detector_hud(detector: object) -> HudReader | None:
    """The HUD reader a detector carries (a learned detector whose weights folder has a
    ``hud.json``: its ``hud`` attribute), or None (the RAM oracle, a detector without one)."""
    hud = getattr(detector, "hud", None)
    if hud is not None and not isinstance(hud, HudReader):
        raise TypeError(f"a detector's hud must be a HudReader or None, got {type(hud).__name__}")
    return hud


def save_hud(reader: HudReader, folder: str | Path) -> Path:
    """Write ``hud.safetensors`` and ``hud.json`` atomically; return the JSON's path.

    The folder's ``manifest.json`` is the caller's to refresh
    (:func:`moc_envs.weights.manifest.refresh_manifest`).
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    arrays = {"glyphs": reader.alphabet.bitmaps, "glyph_sizes": reader.alphabet.sizes}
    with atomic_path(folder / HUD_FILE) as tmp:
        save_file(arrays, str(tmp), metadata={"format": HUD_FORMAT, "game": reader.game})
    text = json.dumps(reader.to_json(), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(folder / HUD_JSON, text)


def _field(row: Any, j_path: Path) -> HudField:
    if not isinstance(row, dict):
        raise CorruptWeightsError(f"{j_path}: each field must be a JSON object, got {type(row).__name__}")
    extra = sorted(set(row) - _FIELD_KEYS)
    if extra:
        raise CorruptWeightsError(f"{j_path}: field {row.get('label')!r} has unknown keys {extra}; expected some of {sorted(_FIELD_KEYS)}")
    kw = dict(row)
    for key in ("box", "background", "colour", "glyphs", "unread"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(kw[key])
    for key in ("palette", "table", "lead"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(tuple(v) if isinstance(v, list) else v for v in kw[key])
    try:
        return HudField(**kw)
    except (TypeError, ValueError) as err:
        raise CorruptWeightsError(f"{j_path}: {err}") from err


def read_hud(files: VerifiedFolder, game: str | GameSpec) -> HudReader | None:
    """The HUD reader of a verified weights folder, or None when it has no ``hud.json``.

    Whether it has one is the verified manifest's word: a listed file gone or changed by now,
    or one on disk the manifest does not list, raises CorruptWeightsError (a fitted reader is
    never dropped silently), as does any malformed content (module docstring).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    spec = game if isinstance(game, GameSpec) else get_game(game)
    if not files.holds(HUD_JSON):
        if files.holds(HUD_FILE):
            raise CorruptWeightsError(f"{files.folder / HUD_FILE} has no {HUD_JSON} beside it: refit with moc-envs hud --game {spec.name} --weights {files.folder}")
        return None
    j_path, a_path = files.folder / HUD_JSON, files.folder / HUD_FILE
    meta = files.read_json(HUD_JSON)
    if not isinstance(meta, dict):
        raise CorruptWeightsError(f"{j_path} must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != HUD_FORMAT:
        raise CorruptWeightsError(f"{j_path} has format {meta.get('format')!r}, expected {HUD_FORMAT!r}")
    if meta.get("game") != spec.name:
        raise CorruptWeightsError(f"{j_path} holds a HUD reader for game {meta.get('game')!r}, not {spec.name!r}")
    if not files.holds(HUD_FILE):
        raise CorruptWeightsError(f"{j_path} needs its glyphs in {HUD_FILE}, which the folder does not hold")
    blob = files.read_bytes(HUD_FILE)
    tags = safetensors_metadata(blob, a_path)
    if tags.get("format") != HUD_FORMAT or tags.get("game") != spec.name:
        raise CorruptWeightsError(
            f"{a_path} is tagged format {tags.get('format')!r}, game {tags.get('game')!r}; "
            f"expected format {HUD_FORMAT!r}, game {spec.name!r} (as {HUD_JSON} says)"
        )
    try:
        arrays = load(blob)
    except (SafetensorError, ValueError) as err:
        raise CorruptWeightsError(f"{a_path} is not a readable safetensors file: {err}") from err
    if set(arrays) != set(HUD_ARRAYS):
        raise CorruptWeightsError(f"{a_path} must hold exactly the arrays {', '.join(HUD_ARRAYS)}, got {', '.join(sorted(arrays))}")
    names = meta.get("glyph_names")
    if not isinstance(names, list):
        raise CorruptWeightsError(f"{j_path}: glyph_names must be a list of strings, got {type(names).__name__}")
    try:
        alphabet = GlyphAlphabet(arrays["glyphs"], arrays["glyph_sizes"], names)
    except ValueError as err:
        raise CorruptWeightsError(f"{a_path}: {err}") from err
    rows = meta.get("fields")
    if not isinstance(rows, list):
        raise CorruptWeightsError(f"{j_path}: fields must be a list, got {type(rows).__name__}")
    fields = [_field(row, j_path) for row in rows]
    info = meta.get("info") or {}
    if not isinstance(info, dict):
        raise CorruptWeightsError(f"{j_path}: info must be a JSON object, got {type(info).__name__}")
    try:
        return HudReader(spec, fields, alphabet, info)
    except ValueError as err:
        raise CorruptWeightsError(f"{j_path}: {err}") from err


def load_hud(folder: str | Path, game: str | GameSpec) -> HudReader:
    """The HUD reader of weights folder ``folder``, after verifying its manifest.

    Raises MissingWeightsError when the folder has no ``hud.json`` (with the command that fits
    one) and CorruptWeightsError as :func:`read_hud`.
    """
    spec = game if isinstance(game, GameSpec) else get_game(game)
    folder = Path(folder)
    if not os.path.lexists(folder / HUD_JSON):
        raise MissingWeightsError(
            f"{folder / HUD_JSON} is missing; fit a HUD reader with:\n  moc-envs hud --game {spec.name} --weights {folder}"
        )
    reader = read_hud(verify_folder(folder, spec.name), spec)
    if reader is None:  # removed since the check above
        raise MissingWeightsError(f"{folder / HUD_JSON} vanished while being loaded")
    return reader
