"""The learned HUD reader: scores, lives, clocks and bars read from the frame (:mod:`moc_envs.hud.reader`)."""

from __future__ import annotations

from moc_envs.hud.fields import FIELD_KINDS, FieldKind, HudField, read_field
from moc_envs.hud.glyphs import DIGITS, Glyph, GlyphAlphabet, foreground, glyph_key, segment
from moc_envs.hud.reader import (
    HUD_FILE,
    HUD_FORMAT,
    HUD_JSON,
    HudReader,
    detector_hud,
    load_hud,
    read_hud,
    save_hud,
)

__all__ = [
    "DIGITS",
    "FIELD_KINDS",
    "FieldKind",
    "Glyph",
    "GlyphAlphabet",
    "HUD_FILE",
    "HUD_FORMAT",
    "HUD_JSON",
    "HudField",
    "HudReader",
    "detector_hud",
    "foreground",
    "glyph_key",
    "load_hud",
    "read_field",
    "read_hud",
    "save_hud",
    "segment",
]
