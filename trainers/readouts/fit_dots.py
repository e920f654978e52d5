"""Fit a :class:`~moc_envs.readouts.dots.DotsReadout`: where the dots are, their colours, how they blink.

From fitting play with RAM as the teacher (the label's byte, lowest at an episode's start):

1. the *empty* colour is the frame's most common colour at the starts (the background); the
   *start board* is each pixel's most common colour over those steps;
2. the *lit* colour is the start board's most common colour over the pixels that show another
   colour there and the empty colour in at least :data:`SWITCH` of the later frames sampled;
   *switching* pixels show the lit colour in :data:`SWITCH` of the start frames and the empty
   colour in as many of the later ones;
3. the dots are the full rectangles of pixels that are lit in at least :data:`SWITCH` of the start
   frames (walls of the lit colour are rectangles too: a dot is one of a shape seen eaten, every
   pixel of it switching, in at least :data:`SHAPE_SUPPORT` places);
4. a dot's gap is its shape's longest dark spell that ended lit again within an episode (blinking);
5. the shapes counted, and the scale (+1 or -1) and whole bias, are those that make the most fitted
   steps' counts equal to the byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import ndimage

from moc_envs.games import GameSpec
from moc_envs.readouts.dots import DotsReadout
from moc_envs.readouts.identity import colour_code
from trainers.readouts.data import Episode

__all__ = ["SHAPE_SUPPORT", "SWITCH", "fit_dots"]

SWITCH = 0.05
"""Share of frames in which a pixel must show a colour to count as switching / lit."""
SHAPE_SUPPORT = 2
"""Places a shape must be seen eaten in before it counts as a dot's shape."""
_SAMPLE = 800
"""Frames sampled (evenly) for the board statistics, to bound memory."""


def _mode(codes: np.ndarray) -> np.ndarray:
    """Per pixel, the most common code over axis 0."""
    flat = codes.reshape(len(codes), -1)
    out = np.empty(flat.shape[1], dtype=flat.dtype)
    srt = np.sort(flat, axis=0)
    for j in range(flat.shape[1]):
        v, c = np.unique(srt[:, j], return_counts=True)
        out[j] = v[np.argmax(c)]
    return out.reshape(codes.shape[1:])


def _sample(frames: Sequence[np.ndarray]) -> np.ndarray:
    pick = np.linspace(0, len(frames) - 1, min(len(frames), _SAMPLE)).round().astype(int)
    return np.stack([colour_code(frames[i]).astype(np.int32) for i in np.unique(pick)])


def _components(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Full rectangles of ``mask`` (connected components filling their bounding box) as x, y, w, h."""
    lab, _ = ndimage.label(mask)
    out = []
    for k, sl in enumerate(ndimage.find_objects(lab)):
        if sl is not None and (lab[sl] == k + 1).all():
            out.append((sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start))
    return out


def _gap(runs: np.ndarray) -> int:
    """Longest dark spell, in steps, that ended lit again (0 when none did)."""
    return int(runs.max()) if len(runs) else 0


def _dark_spells(states: np.ndarray) -> list[np.ndarray]:
    """Per dot, the lengths of the spells seen empty that ended seen lit (unknown steps skipped)."""
    out = []
    for col in states.T:
        seen = col[col >= 0]
        runs, dark = [], 0
        for s in seen:
            if s == 0:
                dark += 1
            else:
                if dark:
                    runs.append(dark)
                dark = 0
        out.append(np.array(runs, dtype=np.int64))
    return out


def fit_dots(spec: GameSpec, episodes: Sequence[Episode], label: str) -> DotsReadout:
    """A dots readout for ``label`` (module docstring). ValueError when the play shows no dot eaten."""
    truth = [np.array([s.truth[label] for s in e]) for e in episodes]
    low = min(int(t.min()) for t in truth)
    starts = [s.frame for e, t in zip(episodes, truth, strict=True) for s, v in zip(e, t, strict=True) if v == low]
    later = [s.frame for e, t in zip(episodes, truth, strict=True) for s, v in zip(e, t, strict=True) if v != low]
    if not starts or not later:
        raise ValueError(f"fitting play must show {label} at its start value and above; got {len(starts)} and {len(later)} steps")
    start_codes = _sample(starts)
    values, counts = np.unique(start_codes, return_counts=True)
    empty = int(values[np.argmax(counts)])
    board = _mode(start_codes)
    later_empty = (_sample(later) == empty).mean(axis=0) >= SWITCH
    turns = (board != empty) & later_empty
    if not turns.any():
        raise ValueError(f"no pixel of the start board turns to the background colour in the fitting play of {label}")
    sv, sc = np.unique(board[turns], return_counts=True)
    lit = int(sv[np.argmax(sc)])
    # Lit in some start frames (a blinker is dark in half of them), empty in some later ones.
    lit_map = (start_codes == lit).mean(axis=0) >= SWITCH
    switching = lit_map & later_empty
    rects = _components(lit_map)
    eaten_shapes = Counter((w, h) for x, y, w, h in rects if switching[y : y + h, x : x + w].all())
    shapes = sorted(s for s, n in eaten_shapes.items() if n >= SHAPE_SUPPORT)
    if not shapes:
        raise ValueError(f"no dot shape seen eaten in {SHAPE_SUPPORT} places in the fitting play of {label}")
    dots = [r for r in rects if (r[2], r[3]) in shapes]

    def rgb(code: int) -> list[int]:
        return [code >> 16 & 255, code >> 8 & 255, code & 255]

    probe = DotsReadout(spec, label, [list(r) for r in dots], [0] * len(dots), rgb(lit), rgb(empty))
    states = [np.stack([probe.states(s.frame) for s in e]) for e in episodes]
    spells = [np.concatenate(col) for col in zip(*[_dark_spells(st) for st in states], strict=True)]
    by_shape = {sh: _gap(np.concatenate([sp for sp, r in zip(spells, dots, strict=True) if (r[2], r[3]) == sh])) for sh in shapes}
    gaps = [by_shape[(r[2], r[3])] for r in dots]

    best: tuple[int, DotsReadout] | None = None
    for n in range(1, len(shapes) + 1):
        for chosen in combinations(shapes, n):
            keep = [k for k, r in enumerate(dots) if (r[2], r[3]) in chosen]
            cand = DotsReadout(spec, label, [list(dots[k]) for k in keep], [gaps[k] for k in keep], rgb(lit), rgb(empty))
            eaten, ram = [], []
            for e, t in zip(episodes, truth, strict=True):
                cand.reset()
                for s, v in zip(e, t, strict=True):
                    c = cand.update(s.frame)
                    if c is not None:
                        eaten.append(c)
                        ram.append(v)
            if not eaten:
                continue
            eaten_a, ram_a = np.array(eaten), np.array(ram)
            for scale in (1.0, -1.0):
                res = ram_a - scale * eaten_a
                vals, hits = np.unique(res, return_counts=True)
                if best is None or hits.max() > best[0]:
                    best = (int(hits.max()), DotsReadout(
                        spec, label, [list(dots[k]) for k in keep], [gaps[k] for k in keep], rgb(lit), rgb(empty),
                        scale=scale, bias=float(vals[np.argmax(hits)]),
                    ))  # fmt: skip
    if best is None:
        raise ValueError(f"no dot of the fitting play of {label} was ever seen on every dot")
    return best[1]
