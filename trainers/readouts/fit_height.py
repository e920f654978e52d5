"""Fit a :class:`~moc_envs.readouts.height.HeightReadout`: a ball's height from it and its shadow.

Learned from the fitting play with the RAM byte as the teacher:

- the ball's colour: the colour most particular to the detector's ball boxes (the largest share
  of its frame-wide pixels inside them; the detector boxes the ball now and then, enough for this);
- the most pixels the ball lights (the largest count seen in 99% of the frames that show it);
- the shadow's colour: among the other colours drawn as small sprites, the one whose rows below
  the ball, mapped by a least-squares line, give the byte within 5 on the most steps (the detector
  never boxes the shadow, so the byte picks it out);
- ``scale`` and ``offset``: that line, refitted on the steps it already gives within 5;
- ``coast`` and ``cover_tolerance`` (the shadow hidden by the net or under the ball): the choice
  that gives the most steps right, a wrong one costing :data:`WRONG_COST` right ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.height import HeightReadout, color_top
from trainers.readouts.data import Episode

__all__ = ["fit_height", "WRONG_COST", "COASTS", "COVER_TOLERANCES"]

WRONG_COST = 4
"""A wrongly read step costs this many right ones when the hidden-shadow rules are chosen:
a rule is kept only where it reads right on more than four steps in five."""

COASTS = (0, 1, 2, 3, 4)
"""Steps a hidden shadow may be carried on at its speed, tried."""

COVER_TOLERANCES = (-1.0, 0.0, 1.0, 2.0, 3.0)
"""Rows within which a ball is taken to lie on its hidden shadow, tried (-1: never)."""

SAMPLE = 400
"""Frames looked at (evenly spread) to learn the colours."""

RIGHT = 5
"""A height within this many of the byte counts as right (the label is a position)."""


def _colors(frame: np.ndarray) -> dict[tuple[int, int, int], int]:
    colours, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
    return {tuple(int(v) for v in c): int(n) for c, n in zip(colours, counts, strict=True)}  # type: ignore[misc]


def _ball_color(spec: GameSpec, steps: Sequence, ball_category: str) -> tuple[int, int, int]:
    """The colour with the largest share of its pixels inside the shown ball boxes."""
    slots = spec.slot_ranges[ball_category]
    inside: Counter[tuple[int, int, int]] = Counter()
    total: Counter[tuple[int, int, int]] = Counter()
    for s in steps:
        boxes = [d for d in s.objects if d.category == ball_category and d.slot in slots]
        if not boxes:
            continue
        total.update(_colors(s.frame))
        for d in boxes:
            patch = s.frame[max(int(d.y), 0) : int(d.y + d.h) + 1, max(int(d.x), 0) : int(d.x + d.w) + 1]
            if patch.size:
                inside.update(_colors(patch))
    if not inside:
        raise ValueError(f"no {ball_category} boxes shown in the fitting play: cannot learn the ball's colour")
    return max(inside, key=lambda c: (inside[c] / total[c], inside[c]))


def fit_height(spec: GameSpec, episodes: Sequence[Episode], label: str, ball_category: str = "Ball") -> HeightReadout:
    """Learn the height readout of ``label`` (module docstring)."""
    if ball_category not in spec.slot_ranges:
        raise ValueError(f"{spec.name} has no category {ball_category!r}; expected one of {sorted(spec.slot_ranges)}")
    flat = [s for e in episodes for s in e]
    if not flat:
        raise ValueError("no steps in the fitting play: nothing to fit")
    sample = flat[:: max(1, len(flat) // SAMPLE)]
    ball = _ball_color(spec, flat, ball_category)
    counts = [c.get(ball, 0) for c in map(_colors, (s.frame for s in sample))]
    lit = [n for n in counts if n]
    max_pixels = int(np.percentile(lit, 99)) if lit else 1
    # Small sprites: colours lit on no more than the ball's pixels in most frames that show them.
    per_colour: dict[tuple[int, int, int], list[int]] = {}
    for s in sample:
        for c, n in _colors(s.frame).items():
            per_colour.setdefault(c, []).append(n)
    candidates = [c for c, ns in per_colour.items() if c != ball and np.median(ns) <= max_pixels]
    if not candidates:
        raise ValueError("no colour drawn as a small sprite besides the ball: no shadow to read")
    balls = [color_top(s.frame, ball, 0.0, max_pixels) for s in flat]
    balls_of = {id(s): b for s, b in zip(flat, balls, strict=True)}
    truth = np.array([s.truth[label] for s in flat], dtype=np.float64)
    best: tuple[int, tuple[int, int, int], float, float] | None = None
    for c in candidates:
        shadows = [color_top(s.frame, c, 0.0, max_pixels) for s in flat]
        both = [i for i, (b, sh) in enumerate(zip(balls, shadows, strict=True)) if b is not None and sh is not None]
        if len(both) < 10:
            continue
        rows = np.array([shadows[i] - balls[i] for i in both], dtype=np.float64)  # type: ignore[operator]
        scale, offset = _line(rows, truth[both])
        right = int(np.sum(np.abs(np.round(scale * rows + offset) - truth[both]) <= RIGHT))
        if best is None or right > best[0]:
            best = (right, c, scale, offset)
    if best is None:
        raise ValueError("no colour is drawn with the ball on 10 steps: no shadow to read")
    _, shadow, scale, offset = best
    readout = HeightReadout(spec, label, ball, shadow, scale=scale, offset=offset, max_pixels=max_pixels)
    sprites = [[(balls_of[id(s)], color_top(s.frame, shadow, 0.0, max_pixels)) for s in e] for e in episodes]
    choice: tuple[int, int, float] | None = None
    for coast in COASTS:
        for cover in COVER_TOLERANCES:
            readout.coast, readout.cover_tolerance = coast, cover
            score = _score(readout, episodes, sprites, label)
            if choice is None or score > choice[0]:
                choice = (score, coast, cover)
    assert choice is not None
    readout.coast, readout.cover_tolerance = choice[1], choice[2]
    readout.reset()
    return readout


def _line(rows: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """A least-squares line rows -> byte, refitted on the steps the first fit gives within :data:`RIGHT`."""
    a = np.c_[rows, np.ones_like(rows)]
    coef = np.linalg.lstsq(a, truth, rcond=None)[0]
    keep = np.abs(a @ coef - truth) <= RIGHT
    if keep.sum() >= 2 and np.ptp(rows[keep]) > 0:
        coef = np.linalg.lstsq(a[keep], truth[keep], rcond=None)[0]
    return float(coef[0]), float(coef[1])


def _score(readout: HeightReadout, episodes: Sequence[Episode], sprites: Sequence[Sequence[tuple]], label: str) -> int:
    """Right steps less :data:`WRONG_COST` per wrong one, over the play in order (``sprites``:
    each step's ball and shadow rows, found once)."""
    score = 0
    for e, rows in zip(episodes, sprites, strict=True):
        readout.reset()
        for s, (ball, shadow) in zip(e, rows, strict=True):
            got = readout.step(ball, shadow)
            if got is not None:
                score += 1 if abs(got - int(s.truth[label])) <= RIGHT else -WRONG_COST
    return score
