"""Fit an :class:`~moc_envs.readouts.identity.IdentityReadout`: which box is which named object.

From fitting play with RAM as the teacher:

1. the offset (RAM x/y minus a box's top-left corner) is the most common difference between any
   box of the categories and any identity's RAM position (the right pairs agree, the wrong ones
   scatter), then the median over the pairs within :data:`MATCH` pixels of it;
2. a box is *at* an identity when its corner plus the offset lies within :data:`MATCH` pixels of
   the identity's RAM x/y (stacked objects: a box may be at several);
3. for each exact colour seen (at least ``min_pixels`` pixels) in at least :data:`SUPPORT` boxes:
   it is a signature colour of an identity when at least :data:`PURITY` of those boxes were at
   that identity, and a shared colour when they were at some identity that often but at no one
   identity (objects drawn alike, as MsPacman's frightened ghosts). An identity is ``alike`` when
   at least :data:`ALIKE` of the boxes at it alone show shared colours;
4. the frame search (an identity no box shows, found by its colours): its area is the span of
   the boxes at identities, its size their largest width and height (the :data:`SIZE_QUANTILE`),
   its offset fitted as in 1 from the clusters' corners; it is kept only when, on the fitting play,
   at least :data:`SEARCH_RIGHT` of its positions lie within :data:`TOLERANCE` of the RAM x/y;
5. the memory (look-alikes followed from where their identity was last read) reaches as far per
   step as the identities moved in the fitting play (:data:`REACH_QUANTILE`), for
   :data:`MEMORY_STEPS` steps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH
from moc_envs.readouts.identity import (
    Identity,
    IdentityReadout,
    Search,
    box_colours,
    colour_code,
    find_cluster,
)
from trainers.readouts.data import Episode

__all__ = ["ALIKE", "MATCH", "MEMORY_STEPS", "REACH_QUANTILE", "PURITY", "SEARCH_RIGHT", "SIZE_QUANTILE", "SUPPORT", "TOLERANCE", "fit_identity", "fit_offset"]

MATCH = 3
"""Pixels (each axis) within which a box's corner plus the offset is at an identity's RAM x/y."""
PURITY = 0.8
"""Share of a colour's boxes that must be at one identity (or, for a shared colour, at any)."""
SUPPORT = 10
"""Boxes a colour must be seen in before it may name an identity."""
ALIKE = 0.05
"""Share of an identity's boxes in shared colours that marks it as drawn alike the others at times."""
MEMORY_STEPS = 8
"""Steps a look-alike may go unseen and still be followed from where its identity was last read."""
REACH_QUANTILE = 0.99
"""Quantile of the identities' per-step moves taken as how far one may go in a step."""
SEARCH_RIGHT = 0.9
"""Share of the fitting play's searched positions that must be right for the search to be kept."""
TOLERANCE = 5
"""A position is right within this many of the RAM byte (AtariARI positions, as scored)."""
SIZE_QUANTILE = 0.99
"""Quantile of the boxes' widths and heights taken as a sprite's largest size."""
_WINDOW = 32
"""Largest offset (pixels, each axis) looked for."""


def _truth(step_truth: dict[str, int], pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    return np.array([[step_truth[x], step_truth[y]] for x, y in pairs], dtype=np.float64)


def fit_offset(
    episodes: Sequence[Episode], categories: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> tuple[float, float]:
    """RAM x/y minus the box corner: the densest difference over all (box, identity) pairs, refined
    to the median of the pairs within :data:`MATCH` of it. ValueError when no box is near any."""
    hist: Counter[tuple[int, int]] = Counter()
    diffs: list[np.ndarray] = []
    for e in episodes:
        for s in e:
            boxes = np.array([[d.x, d.y] for d in s.objects if d.category in categories], dtype=np.float64)
            if not len(boxes):
                continue
            d = (_truth(s.truth, pairs)[:, None, :] - boxes[None]).reshape(-1, 2)
            d = d[(np.abs(d) <= _WINDOW).all(axis=1)]
            diffs.append(d)
            hist.update(map(tuple, np.round(d).astype(int).tolist()))
    if not hist:
        raise ValueError(f"no box of {list(categories)} within {_WINDOW} px of {list(pairs)} in the fitting play")
    peak = np.array(hist.most_common(1)[0][0], dtype=np.float64)
    all_d = np.concatenate(diffs)
    near = all_d[(np.abs(all_d - peak) <= MATCH).all(axis=1)]
    ox, oy = np.median(near, axis=0)
    return float(ox), float(oy)


def fit_identity(
    spec: GameSpec,
    episodes: Sequence[Episode],
    names: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    categories: Sequence[str],
    min_pixels: int = 2,
) -> IdentityReadout:
    """An identity readout for the objects ``names`` whose RAM x/y labels are ``pairs`` (module
    docstring); ``categories``: the detector categories their boxes may carry."""
    if len(names) != len(pairs):
        raise ValueError(f"one (x, y) label pair per name: got {len(names)} names and {len(pairs)} pairs")
    offset = fit_offset(episodes, categories, pairs)
    seen: Counter[int] = Counter()
    at_any: Counter[int] = Counter()
    at: list[Counter[int]] = [Counter() for _ in names]
    span_rows: list[tuple[float, float, float, float]] = []
    alone: list[list[np.ndarray]] = [[] for _ in names]  # colours of boxes at one identity only
    for e in episodes:
        for s in e:
            truth = _truth(s.truth, pairs)
            for d in s.objects:
                if d.category not in categories:
                    continue
                corner = np.array([d.x + offset[0], d.y + offset[1]])
                hits = np.flatnonzero((np.abs(truth - corner) <= MATCH).all(axis=1))
                codes, counts = np.unique(box_colours(d, s.frame), return_counts=True)
                codes = codes[counts >= min_pixels].tolist()
                seen.update(codes)
                if len(hits):
                    at_any.update(codes)
                    span_rows.append((d.x, d.y, d.w, d.h))
                for k in hits:
                    at[k].update(codes)
                if len(hits) == 1:
                    alone[hits[0]].append(np.array(codes, dtype=np.int64))
    spans = np.array(span_rows, dtype=np.float64).reshape(-1, 4)
    common = [c for c, n in seen.items() if n >= SUPPORT]
    owned = [sorted(c for c in common if at[k][c] >= PURITY * seen[c]) for k in range(len(names))]
    taken = set().union(*owned)
    shared = sorted(c for c in common if c not in taken and at_any[c] >= PURITY * seen[c])

    def rgb(codes: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
        return tuple((c >> 16 & 255, c >> 8 & 255, c & 255) for c in codes)

    alike = [
        bool(alone[k]) and float(np.mean([np.isin(c, shared).any() for c in alone[k]])) >= ALIKE for k in range(len(names))
    ]
    identities = [
        Identity(n, x, y, rgb(owned[k]), alike[k]) for k, (n, (x, y)) in enumerate(zip(names, pairs, strict=True))
    ]
    readout = IdentityReadout(spec, categories, identities, rgb(shared), offset, min_pixels)
    search = _fit_search(readout, episodes, pairs, spans)
    memory = (_fit_reach(episodes, pairs), MEMORY_STEPS) if any(alike) else None
    return IdentityReadout(spec, categories, identities, rgb(shared), offset, min_pixels, search, memory)


def _fit_reach(episodes: Sequence[Episode], pairs: Sequence[tuple[str, str]]) -> float:
    """The :data:`REACH_QUANTILE` of the identities' moves per step (largest axis, RAM units), jumps
    over :data:`_WINDOW` (a respawn) left out, plus one for rounding."""
    moves = []
    for e in episodes:
        t = np.stack([_truth(s.truth, pairs) for s in e])
        if len(t) > 1:
            m = np.abs(np.diff(t, axis=0)).max(axis=-1).ravel()
            moves.append(m[m <= _WINDOW])
    m = np.concatenate(moves) if moves else np.zeros(0)
    return float(np.quantile(m, REACH_QUANTILE)) + 1.0 if len(m) else 1.0


def _fit_search(
    readout: IdentityReadout, episodes: Sequence[Episode], pairs: Sequence[tuple[str, str]], spans: np.ndarray
) -> Search | None:
    """The frame search for ``readout``'s identities (module docstring, 4), or None when it is not
    right often enough. ``spans``: (n, 4) x, y, w, h of the fitting boxes at identities."""
    if not len(spans):
        return None
    x0, y0 = int(max(np.floor(spans[:, 0].min()), 0)), int(max(np.floor(spans[:, 1].min()), 0))
    x1 = int(min(np.ceil((spans[:, 0] + spans[:, 2]).max()), FRAME_WIDTH))
    y1 = int(min(np.ceil((spans[:, 1] + spans[:, 3]).max()), FRAME_HEIGHT))
    size = tuple(int(np.ceil(np.quantile(spans[:, k], SIZE_QUANTILE))) for k in (2, 3))
    diffs = []
    for e in episodes:
        for s in e:
            codes = colour_code(s.frame[y0:y1, x0:x1])
            truth = _truth(s.truth, pairs)
            for k, c in enumerate(readout.identity_codes):
                corner = find_cluster(np.isin(codes, c), size, readout.min_pixels) if len(c) else None
                if corner is not None:
                    diffs.append(truth[k] - (corner[0] + x0, corner[1] + y0))
    if not diffs:
        return None
    d = np.array(diffs)
    vals, counts = np.unique(np.round(d).astype(int), axis=0, return_counts=True)
    peak = vals[np.argmax(counts)]
    near = d[(np.abs(d - peak) <= MATCH).all(axis=1)]
    ox, oy = np.median(near, axis=0)
    right = float(np.mean((np.abs(d - (ox, oy)) <= TOLERANCE).all(axis=1)))
    if right < SEARCH_RIGHT:
        return None
    return Search((x0, y0, x1, y1), size, (float(ox), float(oy)))  # type: ignore[arg-type]
