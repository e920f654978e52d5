"""One HUD label read from its field of the frame: a number, a count of icons, a bar or a lookup.

A :class:`HudField` says where the game draws one AtariARI label's value (a rectangle of the
frame), on what background, and how the glyphs there turn into the label's RAM byte:

- ``"number"``: the glyphs are digits (:class:`~moc_envs.hud.glyphs.GlyphAlphabet` names them),
  read from the right: ``shift`` glyphs skipped (the digits of other bytes, a separator), then
  ``digits`` of them (0: all up to the first non-digit or the left end; positions left of the
  drawn glyphs are leading zeros the game does not draw), as a decimal ``value``. The byte is
  ``scale * value + bias`` (modulo ``10 ** digits`` when ``digits`` is set and ``scale`` is 1: a
  clock that the frame shows one tick late), as it is when ``base=10`` and in BCD when ``base=16`` (one
  nibble a digit, as most Atari games store what they display), except for the values
  ``table`` lists as ``[[value], byte]`` and those ``unread`` lists (values the fitting play
  showed with two bytes or more).
- ``"count"``: the glyphs are icons (lives, rescued divers), each one of ``glyphs``; the byte is
  ``scale * count + bias``.
- ``"bar"``: the byte is ``round(slope * length + intercept)``, ``length`` the number of columns
  holding the bar's ``colour`` (Seaquest's oxygen, Carnival's ammunition), except for the
  lengths ``table`` lists as ``[[length], byte]`` and those ``unread`` lists (a full oxygen
  bar is drawn for 63 and 64 alike: unreadable); every
  pixel of the field must be of a colour in ``palette``, and a field of background only (the
  bar not drawn) is unreadable.
- ``"lookup"``: the sequence of glyphs is looked up in ``table`` (Tennis' 0 / 15 / 30 / 40).

A number field may also carry a ``lead`` table, for a clock whose byte runs ahead of what is drawn
by an amount the frame alone does not say (Skiing's hundredths are drawn one emulator frame late,
and a frame adds 1 or 2 hundredths as it counts 5 every 3 frames): the byte is the drawn value plus
the lead that ``lead`` gives for the last two step-to-step changes of the drawn value (modulo
``10 ** digits``), which tell where in its cycle the clock is. Such a field needs the steps before
it: :class:`LeadTracker` follows one episode, and gives nothing until two changes were seen, nor for
a pair of changes the table does not hold (the clock stopped).

A value that cannot be read is None, never a guess: an unknown glyph anywhere in the field, a
non-digit where a digit is read, a glyph of a count that is no icon, a colour a bar field never
showed, a sequence the table does not hold, a value or length listed as ``unread``, a byte
outside 0..255, or an empty number field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from moc_envs.hud.glyphs import DIGITS, GlyphAlphabet, foreground, segment

__all__ = [
    "FieldKind", "FIELD_KINDS", "HudField", "LeadTracker", "drawn_of_glyphs", "drawn_value", "encode", "lead_byte",
    "number_value", "read_field", "value_of_glyphs",
]  # fmt: skip

FieldKind = Literal["number", "count", "bar", "lookup"]
FIELD_KINDS: tuple[str, ...] = ("number", "count", "bar", "lookup")
"""How a field's pixels turn into a value (module docstring)."""

Colour = tuple[int, int, int]


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _colour(name: str, v: object) -> Colour:
    if not (isinstance(v, list | tuple) and len(v) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in v)):
        raise ValueError(f"{name} must be an RGB colour of three integers 0..255, got {v!r}")
    return (int(v[0]), int(v[1]), int(v[2]))


@dataclass(frozen=True)
class HudField:
    """Where and how one label is drawn (module docstring). Validated on construction."""

    label: str
    kind: FieldKind
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 in frame pixels, ends excluded."""
    background: Colour
    shift: int = 0
    digits: int = 0
    base: int = 10
    scale: int = 1
    bias: int = 0
    glyphs: tuple[int, ...] = ()
    """count: the alphabet indexes of its icons."""
    colour: Colour | None = None
    palette: tuple[Colour, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0
    unread: tuple[int, ...] = ()
    """bar: lengths, number: values that the fitting play showed with two bytes or more (a full
    oxygen bar is 63 or 64): left unread."""
    table: tuple[tuple[tuple[int, ...], int], ...] = ()
    """lookup: (glyph indexes left to right, byte) pairs; bar: ((length,), byte) and number:
    ((value,), byte) exceptions to the rule."""
    lead: tuple[tuple[tuple[int, int], int], ...] = ()
    """number: ((latest change, change before it), lead) rows (module docstring)."""

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"a HUD field's label must be a non-empty string, got {self.label!r}")
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"{self.label}: kind must be one of {', '.join(FIELD_KINDS)}, got {self.kind!r}")
        box = self.box
        ok = isinstance(box, list | tuple) and len(box) == 4 and all(_is_int(v) for v in box)
        if not ok or not (0 <= box[0] < box[2] <= 160 and 0 <= box[1] < box[3] <= 210):
            raise ValueError(
                f"{self.label}: box must be [x0, y0, x1, y1] integers with 0 <= x0 < x1 <= 160 and "
                f"0 <= y0 < y1 <= 210, got {box!r}"
            )
        object.__setattr__(self, "box", tuple(int(v) for v in box))
        object.__setattr__(self, "background", _colour(f"{self.label}: background", self.background))
        for name, lo, hi in (("shift", 0, 32), ("digits", 0, 8), ("scale", -255, 255), ("bias", -255, 255)):
            v = getattr(self, name)
            if not _is_int(v) or not lo <= v <= hi:
                raise ValueError(f"{self.label}: {name} must be an integer in {lo}..{hi}, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.scale == 0:
            raise ValueError(f"{self.label}: scale must not be 0")
        if not _is_int(self.base) or self.base not in (10, 16):
            raise ValueError(f"{self.label}: base must be 10 (the number) or 16 (BCD), got {self.base!r}")
        if not isinstance(self.glyphs, list | tuple) or not all(_is_int(g) and g >= 0 for g in self.glyphs):
            raise ValueError(f"{self.label}: glyphs must be glyph indexes (integers >= 0), got {self.glyphs!r}")
        object.__setattr__(self, "glyphs", tuple(int(g) for g in self.glyphs))
        if self.kind == "count" and not self.glyphs:
            raise ValueError(f"{self.label}: a count field needs the glyphs of its icons")
        if self.kind == "bar":
            object.__setattr__(self, "colour", _colour(f"{self.label}: colour", self.colour))
            if not isinstance(self.palette, list | tuple):
                raise ValueError(f"{self.label}: palette must be a list of RGB colours, got {self.palette!r}")
            palette = tuple(_colour(f"{self.label}: palette", c) for c in self.palette)
            if self.colour not in palette or self.background not in palette:
                raise ValueError(f"{self.label}: a bar's palette must hold its colour and its background")
            object.__setattr__(self, "palette", palette)
            for name in ("slope", "intercept"):
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"{self.label}: {name} must be a finite number, got {v!r}")
                object.__setattr__(self, name, float(v))
            if self.slope == 0:
                raise ValueError(f"{self.label}: slope must not be 0")
        elif self.colour is not None or self.palette:
            raise ValueError(f"{self.label}: colour and palette are for bar fields only, not {self.kind!r}")
        if not isinstance(self.unread, list | tuple) or not all(_is_int(v) and v >= 0 for v in self.unread):
            raise ValueError(f"{self.label}: unread must list integers >= 0, got {self.unread!r}")
        object.__setattr__(self, "unread", tuple(int(v) for v in self.unread))
        if self.unread and self.kind not in ("bar", "number"):
            raise ValueError(f"{self.label}: unread is for bar and number fields only, not {self.kind!r}")
        table = self.table
        if not isinstance(table, list | tuple):
            raise ValueError(f"{self.label}: table must be a list of [glyph indexes, byte] pairs, got {type(table).__name__}")
        rows = []
        for row in table:
            ok = (
                isinstance(row, list | tuple) and len(row) == 2 and isinstance(row[0], list | tuple)
                and len(row[0]) > 0 and all(_is_int(g) and g >= 0 for g in row[0])
                and _is_int(row[1]) and 0 <= row[1] <= 255
            )  # fmt: skip
            if not ok:
                raise ValueError(f"{self.label}: each table row must be [[glyph indexes...], byte 0..255], got {row!r}")
            rows.append((tuple(int(g) for g in row[0]), int(row[1])))
        if len({seq for seq, _ in rows}) != len(rows):
            raise ValueError(f"{self.label}: the table lists a glyph sequence twice")
        if self.kind == "lookup" and not rows:
            raise ValueError(f"{self.label}: a lookup field needs a table")
        if self.kind in ("bar", "number") and any(len(seq) != 1 for seq, _ in rows):
            raise ValueError(f"{self.label}: a {self.kind}'s table rows must be [[{'length' if self.kind == 'bar' else 'value'}], byte]")
        if self.kind == "count" and rows:
            raise ValueError(f"{self.label}: a count field has no table")
        object.__setattr__(self, "table", tuple(rows))
        object.__setattr__(self, "lead", self._check_lead())

    def _check_lead(self) -> tuple[tuple[tuple[int, int], int], ...]:
        lead = self.lead
        if not lead:
            return ()
        if self.kind != "number" or not self.digits or self.scale != 1 or self.bias != 0 or self.table or self.unread:
            raise ValueError(
                f"{self.label}: a lead is for number fields of a fixed number of digits with scale 1, bias 0 "
                "and no table or unread values"
            )
        modulus = 10**self.digits
        if not isinstance(lead, list | tuple):
            raise ValueError(f"{self.label}: lead must be a list of [[change, change], lead] rows, got {type(lead).__name__}")
        rows = []
        for row in lead:
            ok = (
                isinstance(row, list | tuple) and len(row) == 2 and isinstance(row[0], list | tuple) and len(row[0]) == 2
                and all(_is_int(c) and 0 <= c < modulus for c in (*row[0], row[1]))
            )  # fmt: skip
            if not ok:
                raise ValueError(f"{self.label}: each lead row must be [[change, change], lead], each 0..{modulus - 1}, got {row!r}")
            rows.append(((int(row[0][0]), int(row[0][1])), int(row[1])))
        if len({k for k, _ in rows}) != len(rows):
            raise ValueError(f"{self.label}: the lead table lists a pair of changes twice")
        return tuple(rows)

    def check_alphabet(self, alphabet: GlyphAlphabet) -> None:
        """Refuse glyph indexes (icons, table rows) outside ``alphabet``."""
        used = set(self.glyphs) | ({g for seq, _ in self.table for g in seq} if self.kind == "lookup" else set())
        if used and max(used) >= len(alphabet):
            raise ValueError(f"{self.label}: glyph index {max(used)} is outside the alphabet of {len(alphabet)} glyphs")

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The field's pixels of an RGB frame (210, 160, 3)."""
        x0, y0, x1, y1 = self.box
        return frame[y0:y1, x0:x1]


def _byte(v: int) -> int | None:
    return v if 0 <= v <= 255 else None


def encode(field: HudField, value: int) -> int | None:
    """The byte of a number field showing ``value``: ``scale * value + bias`` (modulo
    ``10 ** digits`` when it reads a fixed number of digits with scale 1), in BCD when ``base``
    is 16; None when it is negative or does not fit a byte."""
    n = field.scale * value + field.bias
    if field.digits and field.scale == 1:
        n %= 10**field.digits  # a clock one tick late wraps round with it
    if n < 0:
        return None
    if field.base == 16:
        if n > 99:
            return None
        n = (n // 10) * 16 + n % 10
    return _byte(n)


def number_value(field: HudField, names: list[str]) -> int | None:
    """The decimal value a number field reads from its glyphs' ``names`` (left to right), None
    when it cannot (module docstring)."""
    if not names:
        return None  # nothing drawn: the HUD is blank, not a zero
    value, weight, p = 0, 1, field.shift
    stop = field.shift + field.digits if field.digits else len(names)
    while p < stop:
        if p >= len(names):
            break  # leading zeros are not drawn
        name = names[-1 - p]
        if name not in DIGITS:
            if field.digits or p == field.shift:
                return None
            break  # all digits read, up to a separator
        value += int(name) * weight
        weight *= 10
        p += 1
    return value


def _number(field: HudField, names: list[str]) -> int | None:
    value = number_value(field, names)
    if value is None or value in field.unread:
        return None
    for key, byte in field.table:
        if key == (value,):
            return byte
    return encode(field, value)


def drawn_value(field: HudField, crop: np.ndarray, alphabet: GlyphAlphabet) -> int | None:
    """The decimal value a number field's pixels show (before any rule turns it into a byte), None
    when unreadable."""
    return drawn_of_glyphs(field, alphabet.ids(segment(foreground(crop, field.background))), alphabet)


def drawn_of_glyphs(field: HudField, ids: list[int], alphabet: GlyphAlphabet) -> int | None:
    """:func:`drawn_value` from the field's glyph ids (-1: unknown)."""
    return None if -1 in ids else number_value(field, [alphabet.names[i] for i in ids])


def lead_byte(field: HudField, drawn: list[int]) -> int | None:
    """The byte of a lead field from its last three drawn values (oldest first), None when fewer
    were seen or the table lacks their two changes."""
    if len(drawn) < 3:
        return None
    modulus = 10**field.digits
    key = ((drawn[-1] - drawn[-2]) % modulus, (drawn[-2] - drawn[-3]) % modulus)
    for k, lead in field.lead:
        if k == key:
            return encode(field, (drawn[-1] + lead) % modulus)
    return None


class LeadTracker:
    """One lead field's drawn values over the steps of an episode (module docstring)."""

    def __init__(self, field: HudField) -> None:
        """``field``: a number field with a ``lead`` table."""
        if not field.lead:
            raise ValueError(f"{field.label}: LeadTracker needs a field with a lead table")
        self.field = field
        self.drawn: list[int] = []

    def reset(self) -> None:
        """Episode start: forget the values drawn before."""
        self.drawn = []

    def step(self, drawn: int | None) -> int | None:
        """The byte of this step from its drawn value (None: unreadable, which breaks the chain)."""
        if drawn is None:
            self.drawn = []
            return None
        self.drawn = [*self.drawn[-2:], drawn]
        return lead_byte(self.field, self.drawn)


def read_field(field: HudField, crop: np.ndarray, alphabet: GlyphAlphabet) -> int | None:
    """The label's byte from the field's pixels ``crop`` (:meth:`HudField.crop`), None when unreadable.

    One frame alone: a field's ``lead`` needs the steps before (:class:`LeadTracker`) and is not
    applied here."""
    if field.kind == "bar":
        pixels = crop.reshape(-1, 3)
        known = np.zeros(len(pixels), bool)
        for c in field.palette:
            known |= np.all(pixels == c, axis=1)
        if not known.all() or not foreground(crop, field.background).any():
            return None  # a colour never seen there, or the bar not drawn at all
        length = int(np.all(crop == field.colour, axis=-1).any(axis=0).sum())
        if length in field.unread:
            return None
        for key, byte in field.table:
            if key == (length,):
                return byte
        return _byte(int(round(field.slope * length + field.intercept)))
    return value_of_glyphs(field, alphabet.ids(segment(foreground(crop, field.background))), alphabet)


def value_of_glyphs(field: HudField, ids: list[int], alphabet: GlyphAlphabet) -> int | None:
    """The byte of a glyph field (number, count or lookup) from its glyphs' alphabet ids, left to
    right (-1: unknown); None when unreadable. A field's lead is not applied here."""
    if -1 in ids:
        return None
    if field.kind == "count":
        if not all(i in field.glyphs for i in ids):
            return None
        return _byte(field.scale * len(ids) + field.bias)
    if field.kind == "lookup":
        seq = tuple(ids)
        for key, byte in field.table:
            if key == seq:
                return byte
        return None
    return _number(field, [alphabet.names[i] for i in ids])
