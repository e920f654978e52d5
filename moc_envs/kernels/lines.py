"""Thin vertical lines of a mask (SpaceInvaders' shots) in one compiled pass.

:func:`thin_lines` gives exactly what :func:`moc_envs.readouts.shot.thin_lines` is specified to
give (tests compare it with the row-by-row NumPy reference on random masks): the row runs of at
most ``max_width`` lit pixels, joined down each column across gaps of up to ``merge_gap`` rows,
kept when at least ``min_length`` rows long and alone (nothing lit within ``isolation`` columns
along them). The NumPy version padded, differenced and summed the whole 210 x 160 mask, several
arrays of it, every step: about a millisecond of a SpaceInvaders step (issue 30).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["thin_lines"]


@njit(cache=True, nogil=True)
def _thin_lines(mask: np.ndarray, max_width: int, min_length: int, merge_gap: int, isolation: int) -> np.ndarray:
    h, w = mask.shape
    thin = np.zeros((h, w), np.bool_)
    for y in range(h):
        x = 0
        while x < w:
            if not mask[y, x]:
                x += 1
                continue
            start = x
            while x < w and mask[y, x]:
                x += 1
            if x - start <= max_width:
                for k in range(start, x):
                    thin[y, k] = True
    out = np.empty((h * w, 3), np.int64)
    n = 0
    for x in range(w):
        top = -1
        last = -1
        y = 0
        while y <= h:
            lit = y < h and thin[y, x]
            # A part ends at the bottom, or before a lit row more than merge_gap rows below its last.
            if top >= 0 and (y == h or (lit and y - last > merge_gap + 1)):
                bottom = last
                if bottom - top + 1 >= min_length:
                    r0, r1 = max(top - 1, 0), min(bottom + 2, h)
                    c0, c1 = max(x - isolation, 0), min(x + isolation + 1, w)
                    around = 0
                    own = 0
                    for r in range(r0, r1):
                        for c in range(c0, c1):
                            if mask[r, c]:
                                around += 1
                        if mask[r, x]:
                            own += 1
                    if around == own:
                        out[n, 0], out[n, 1], out[n, 2] = x, top, bottom
                        n += 1
                top = -1
            if lit:
                if top < 0:
                    top = y
                last = y
            y += 1
    return out[:n]


def thin_lines(
    mask: np.ndarray, max_width: int, min_length: int, merge_gap: int, isolation: int
) -> list[tuple[int, int, int]]:
    """``(column, top row, bottom row)`` of the thin, lone vertical lines of a 2-D boolean mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"thin_lines expects a 2-D mask, got shape {mask.shape}")
    found = _thin_lines(np.ascontiguousarray(mask, dtype=np.bool_), int(max_width), int(min_length), int(merge_gap), int(isolation))
    return [(int(x), int(t), int(b)) for x, t, b in found]
