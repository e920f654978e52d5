"""Glyphs of a HUD field: what a frame draws there, cut into pieces and keyed by their exact bitmaps.

Atari HUDs draw scores, clocks and lives from a handful of fixed bitmaps (a digit font, a
life icon) at fixed places, in one colour over a plain background. A field's pixels that differ
from its background colour are its foreground; the runs of columns holding foreground, left
to right, are its glyphs, each cut to the rows it lights. A glyph is named by its bitmap alone
(colour left out: Boxing draws the two scores in the same font, white and black), so one
alphabet serves every field of a game. The bitmaps are exact (the emulator draws them pixel
for pixel), so a glyph either equals a learned one or is unknown, never "close".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIGITS",
    "MAX_GLYPH_SIZE",
    "Glyph",
    "GlyphAlphabet",
    "foreground",
    "glyph_key",
    "segment",
]

DIGITS = tuple("0123456789")
"""Names of the digit glyphs; any other glyph of an alphabet has the empty name (known, not a digit)."""
MAX_GLYPH_SIZE = 64
"""Largest glyph height and width kept in an alphabet (frame pixels): HUD glyphs are 4 to 30."""


@dataclass(frozen=True)
class Glyph:
    """One glyph cut from a field: its columns ``[x0, x1)`` and rows ``[y0, y1)`` in the field
    (not the frame), and its bitmap (``y1 - y0``, ``x1 - x0``) of bools."""

    x0: int
    x1: int
    y0: int
    y1: int
    bitmap: np.ndarray

    @property
    def key(self) -> bytes:
        """The bitmap as a dictionary key (:func:`glyph_key`)."""
        return glyph_key(self.bitmap)


def glyph_key(bitmap: np.ndarray) -> bytes:
    """A hashable key equal for equal bitmaps only: height, width, then the bits packed."""
    b = np.asarray(bitmap, dtype=bool)
    if b.ndim != 2 or not 0 < b.shape[0] <= 255 or not 0 < b.shape[1] <= 255:
        raise ValueError(f"a glyph bitmap must be 2-D, 1 to 255 pixels a side, got shape {b.shape}")
    return bytes(b.shape) + np.packbits(b).tobytes()


def foreground(crop: np.ndarray, background: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    """Pixels of an RGB ``crop`` (h, w, 3) unlike the ``background`` colour: (h, w) bools."""
    return np.any(crop != np.asarray(background, dtype=crop.dtype), axis=-1)


def segment(mask: np.ndarray) -> list[Glyph]:
    """The glyphs of a foreground ``mask`` (h, w): each run of columns holding foreground, left to
    right, cut to the rows it lights."""
    cols = mask.any(axis=0)
    if not cols.any():
        return []
    # Edges of the runs of lit columns: +1 where a run starts, -1 one past where it ends.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], cols.view(np.int8), [0]))))
    out = []
    for x0, x1 in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        part = mask[:, x0:x1]
        rows = np.flatnonzero(part.any(axis=1))
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        out.append(Glyph(x0, x1, y0, y1, part[y0:y1]))
    return out


class GlyphAlphabet:
    """The learned glyphs of a game: bitmaps and names (a digit, or ``""``: known but not a digit).

    ``bitmaps`` (G, H, W) uint8 of 0/1, each glyph in the top-left corner of its slot with
    ``sizes`` (G, 2) its height and width; ``names`` one string per glyph.
    """

    def __init__(self, bitmaps: np.ndarray, sizes: np.ndarray, names: list[str] | tuple[str, ...]) -> None:
        bitmaps = np.asarray(bitmaps)
        sizes = np.asarray(sizes)
        if bitmaps.ndim != 3 or bitmaps.dtype != np.uint8:
            raise ValueError(f"glyph bitmaps must be uint8 of shape (G, H, W), got {bitmaps.dtype} {bitmaps.shape}")
        g, h, w = bitmaps.shape
        if h > MAX_GLYPH_SIZE or w > MAX_GLYPH_SIZE:
            raise ValueError(f"glyph bitmaps must be at most {MAX_GLYPH_SIZE} x {MAX_GLYPH_SIZE}, got {h} x {w}")
        if sizes.shape != (g, 2) or not np.issubdtype(sizes.dtype, np.integer):
            raise ValueError(f"glyph sizes must be integers of shape ({g}, 2), got {sizes.dtype} {sizes.shape}")
        if len(names) != g or not all(isinstance(n, str) and (n == "" or n in DIGITS) for n in names):
            raise ValueError(f"glyph names must be {g} strings, each a digit 0-9 or empty, got {_short(names)}")
        if np.any((bitmaps != 0) & (bitmaps != 1)):
            raise ValueError("glyph bitmaps must hold only 0 and 1")
        if g and (sizes.min() < 1 or np.any(sizes[:, 0] > h) or np.any(sizes[:, 1] > w)):
            raise ValueError(f"glyph sizes must lie in 1..{h} (height) and 1..{w} (width), got {sizes.min(0).tolist()} to {sizes.max(0).tolist()}")
        self.bitmaps = np.ascontiguousarray(bitmaps)
        self.sizes = np.ascontiguousarray(sizes.astype(np.int32))
        self.names = tuple(names)
        self._index: dict[bytes, int] = {}
        for i, (gh, gw) in enumerate(self.sizes.tolist()):
            b = self.bitmaps[i]
            if b[gh:].any() or b[:, gw:].any():
                raise ValueError(f"glyph {i} has pixels outside its size {gh} x {gw}")
            if not b[:gh, :gw].any(axis=0).all() or not b[0, :gw].any() or not b[gh - 1, :gw].any():
                raise ValueError(f"glyph {i} is not tight: every column and its first and last rows must hold a pixel")
            key = glyph_key(b[:gh, :gw])
            if key in self._index:
                raise ValueError(f"glyphs {self._index[key]} and {i} have the same bitmap")
            self._index[key] = i

    @classmethod
    def from_bitmaps(cls, bitmaps: list[np.ndarray], names: list[str]) -> GlyphAlphabet:
        """An alphabet from tight bitmaps (each 2-D, any size up to :data:`MAX_GLYPH_SIZE`)."""
        h = max((b.shape[0] for b in bitmaps), default=1)
        w = max((b.shape[1] for b in bitmaps), default=1)
        out = np.zeros((len(bitmaps), h, w), np.uint8)
        sizes = np.zeros((len(bitmaps), 2), np.int32)
        for i, b in enumerate(bitmaps):
            out[i, : b.shape[0], : b.shape[1]] = np.asarray(b, bool)
            sizes[i] = b.shape
        return cls(out, sizes, names)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, glyph: Glyph | bytes) -> int:
        """The glyph's index in the alphabet, -1 when unknown."""
        return self._index.get(glyph.key if isinstance(glyph, Glyph) else glyph, -1)

    def ids(self, glyphs: list[Glyph]) -> list[int]:
        """Alphabet indexes of ``glyphs`` left to right, -1 for an unknown one. A glyph that is no
        letter of the alphabet but several side by side (digits drawn touching, as Freeway's
        "10") counts as those letters."""
        out: list[int] = []
        for g in glyphs:
            i = self._index.get(g.key, -1)
            parts = [i] if i >= 0 else self.split(g.bitmap)
            out.extend(parts or [-1])
        return out

    def split(self, bitmap: np.ndarray, depth: int = 3) -> list[int]:
        """Indexes of letters that, side by side with no gap, draw ``bitmap`` ([] when none do;
        the leftmost cut that works is taken, at most ``depth`` letters)."""
        for c in range(1, bitmap.shape[1]):
            left = _tight_rows(bitmap[:, :c])
            i = self._index.get(glyph_key(left), -1) if left is not None else -1
            if i < 0:
                continue
            right = _tight_rows(bitmap[:, c:])
            if right is None:
                continue
            j = self._index.get(glyph_key(right), -1)
            if j >= 0:
                return [i, j]
            rest = self.split(right, depth - 1) if depth > 2 else []
            if rest:
                return [i, *rest]
        return []

    def bitmap(self, i: int) -> np.ndarray:
        """Glyph ``i``'s tight bitmap (bools)."""
        gh, gw = self.sizes[i].tolist()
        return self.bitmaps[i, :gh, :gw].astype(bool)


def _tight_rows(bitmap: np.ndarray) -> np.ndarray | None:
    rows = np.flatnonzero(bitmap.any(axis=1))
    return None if len(rows) == 0 else bitmap[rows[0] : rows[-1] + 1]


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
