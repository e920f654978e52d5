"""Fit a :class:`~moc_envs.readouts.formation.FormationReadout`: a grid of enemies' anchor, level and count.

Everything is learned from the fitting play with its RAM labels as the teacher: the x offset (the
commonest difference between the byte and the leftmost box), the grid's pitch and cell size (the
commonest spacing and size of the boxes), its columns and rows (the most seen at once), the level
table (the commonest byte for each height of the highest box), the formation's colour (the
commonest colour inside the boxes other than the background), and for the count, the fewest lit
pixels that make a cell live and the patterns of dying enemies (cell patterns lit when the frame
shows one enemy more than the byte counts, and never when it shows as many).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.formation import FormationReadout
from trainers.readouts.data import Episode

__all__ = ["fit_formation", "MIN_LEVEL_STEPS", "MIN_PIXELS"]

MIN_LEVEL_STEPS = 5
"""A height of the highest box seen on fewer steps is no level of the table (a stray box)."""

MIN_PIXELS = (1, 4, 8, 12, 16, 20, 24)
"""Lit-pixel counts tried as the least that makes a cell live."""


def _mode(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no formation boxes in the fitting play: nothing to fit")
    return float(Counter(values).most_common(1)[0][0])


def _spacing(groups: Sequence[Sequence[float]]) -> float:
    """The commonest gap between neighbouring distinct positions within each group."""
    gaps = []
    for g in groups:
        u = np.unique(np.round(g))
        gaps += [float(d) for d in np.diff(u) if d > 0]
    return _mode(gaps)


def fit_formation(
    spec: GameSpec,
    episodes: Sequence[Episode],
    categories: Sequence[str],
    x_label: str | None = None,
    y_label: str | None = None,
    count_label: str | None = None,
) -> FormationReadout:
    """Learn the formation readout of ``categories`` for the named labels (module docstring)."""
    probe = FormationReadout(spec, categories, x_label=x_label or y_label or count_label)
    steps = [(s, probe.boxes(s.objects)) for e in episodes for s in e]
    steps = [(s, b) for s, b in steps if b]
    if not steps:
        raise ValueError(f"no {list(categories)} boxes shown in the fitting play: nothing to fit")
    x_offset = 0.0
    if x_label is not None:
        x_offset = _mode([round(s.truth[x_label] - min(d.x for d in b)) for s, b in steps])
    rows_of = [[d.x for d in b if abs(d.y - min(e.y for e in b)) < 2] for _, b in steps]
    cols_of = [[d.y for d in b if abs(d.x - min(e.x for e in b)) < 2] for _, b in steps]
    pitch = (_spacing(rows_of), _spacing(cols_of))
    cell = (float(np.median([d.w for _, b in steps for d in b])), float(np.median([d.h for _, b in steps for d in b])))
    grid = (
        int(max(round((max(d.x for d in b) - min(d.x for d in b)) / pitch[0]) for _, b in steps)) + 1,
        int(max(round((max(d.y for d in b) - min(d.y for d in b)) / pitch[1]) for _, b in steps)) + 1,
    )
    levels: list[list[float]] = []
    if y_label is not None or count_label is not None:
        truth_label = y_label or count_label
        by_top: dict[float, Counter[int]] = {}
        for s, b in steps:
            by_top.setdefault(float(round(min(d.y for d in b))), Counter())[int(s.truth[truth_label])] += 1
        # Most-seen heights first: a height a whole pitch below a level already taken is that
        # level with its top row shot away, not a level of its own.
        for top, bytes_ in sorted(by_top.items(), key=lambda kv: -sum(kv[1].values())):
            if sum(bytes_.values()) < MIN_LEVEL_STEPS:
                continue
            if any(abs((top - y) / pitch[1] - round((top - y) / pitch[1])) * pitch[1] < 2 and top > y for y, _ in levels):
                continue
            levels.append([top, bytes_.most_common(1)[0][0] if y_label is not None else 0])
    if count_label is None:
        return FormationReadout(spec, categories, x_label=x_label, x_offset=x_offset, y_label=y_label, y_levels=levels)
    color = _formation_color(steps)
    probe = FormationReadout(
        spec, categories, x_label=x_label, x_offset=x_offset, y_label=y_label, y_levels=levels,
        count_label=count_label, grid=grid, pitch=pitch, cell=cell, color=color,
    )  # fmt: skip
    # Each step's cells once (lit pixels, pattern); every threshold is then judged on them.
    seen = []
    for s, b in steps:
        level = probe.level(min(d.y for d in b))
        if level is not None:
            seen.append((probe.cells(min(d.x for d in b), level[0], s.frame), int(s.truth[count_label])))
    best: tuple[int, int, set[str]] | None = None
    for min_pixels in MIN_PIXELS:
        probe.min_pixels, probe.dying = min_pixels, frozenset()
        dying = _dying_patterns(probe, seen)
        probe.dying = frozenset(dying)
        hits = sum(probe.live(cells) == truth for cells, truth in seen)
        if best is None or hits > best[0]:
            best = (hits, min_pixels, dying)
    assert best is not None
    probe.min_pixels, probe.dying = best[1], frozenset(best[2])
    return probe


def _formation_color(steps: Sequence[tuple[object, list]]) -> tuple[int, int, int]:
    """The commonest colour inside the boxes other than the frames' background (their commonest colour)."""
    inside: Counter[tuple[int, int, int]] = Counter()
    background: Counter[tuple[int, int, int]] = Counter()
    for s, b in steps[:: max(1, len(steps) // 300)]:
        frame = s.frame  # type: ignore[attr-defined]
        colours, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
        background[tuple(int(v) for v in colours[np.argmax(counts)])] += 1
        for d in b:
            patch = frame[int(d.y) : int(d.y + d.h), int(d.x) : int(d.x + d.w)].reshape(-1, 3)
            inside.update(tuple(int(v) for v in p) for p in patch)
    bg = background.most_common(1)[0][0]
    for colour, _ in inside.most_common():
        if colour != bg:
            return colour
    raise ValueError("the formation's boxes hold only the background colour: no colour to count cells by")


def _dying_patterns(readout: FormationReadout, seen: Sequence[tuple[list[tuple[int, str]], int]]) -> set[str]:
    """Cell patterns lit on steps showing exactly one enemy more than the byte, never on steps showing as many."""
    alive: set[str] = set()
    extra: set[str] = set()
    for cells, truth in seen:
        keys = {key for n, key in cells if n >= readout.min_pixels}
        shown = readout.live(cells)
        if shown == truth:
            alive |= keys
        elif shown == truth + 1:
            extra |= keys
    return extra - alive
