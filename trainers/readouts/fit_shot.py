"""Fit a :class:`~moc_envs.readouts.shot.ShotReadout`: the player's shot byte from a rising line.

Learned from the fitting play with the RAM byte as the teacher:

- the shot's colour: of the frames' colours (the background left out), the one whose thin
  vertical lines most often stand the same rows (within 1) higher in their column on the next
  step (the shot rising steadily);
- ``rise``: the median rows such a line rises a step (of the rises near the commonest one),
  ``rise_tolerance`` the rows 95% of those stay within of it (at least :data:`MIN_RISE_TOLERANCE`);
- ``launch``: the tops where rising lines start (no line in their column the step before) on at
  least :data:`LAUNCH_SHARE` of the starts: where a new shot first shows;
- the line ``byte = scale * top + offset``: least squares over the followed shots' steps,
  refitted on those it gives within 5 (most steps of a flight follow it);
- ``early_ages``: one more than the oldest age (below :data:`MAX_EARLY_AGE`) at which that line
  is right on fewer than :data:`AGE_RIGHT` of the steps; those young shots' bytes, the ``gone``
  steps' bytes and the ``idle`` byte are tables of the byte seen on at least :data:`TABLE_SHARE`
  of a state's steps (at least :data:`TABLE_MIN` of them); other states give nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.shot import ShotReadout, thin_lines
from trainers.readouts.data import Episode

__all__ = ["fit_shot", "AGE_RIGHT", "GONE_STEPS", "LAUNCH_SHARE", "TABLE_MIN", "TABLE_SHARE", "ZONE_ROWS"]

RIGHT = 5
"""A byte within this many of the RAM's counts as right (the label is a position)."""
MIN_RISE_TOLERANCE = 2.0
"""The least slack in rows a step's rise is followed with."""
LAUNCH_SHARE = 0.05
"""A start row taken by at least this share of the rising lines' starts is a launch row."""
MAX_EARLY_AGE = 10
"""Ages tried for the young-shot table."""
AGE_RIGHT = 0.9
"""An age whose steps the line reads right less often than this goes to the young-shot table."""
GONE_STEPS = 8
"""Steps after a shot vanished that the ``gone`` table is keyed by; later steps are idle."""
ZONE_ROWS = 16
"""Rows a zone of the ``gone`` table spans (where the shot vanished: top, invaders, shields)."""
TABLE_MIN = 3
"""Steps a table state needs in the fitting play."""
TABLE_SHARE = 0.85
"""Share of a state's steps its byte must hold to go in a table."""
PAIRS = 400
"""Consecutive step pairs looked at to learn the colour and the rise."""


def _rises(a: Sequence[tuple[int, int, int]], b: Sequence[tuple[int, int, int]]) -> list[int]:
    """Rows each line of ``b`` stands above the nearest higher line of ``a`` in its column (within 1)."""
    out = []
    for x, top, _ in b:
        ups = [pt - top for px, pt, _ in a if abs(px - x) <= 1 and 2 <= pt - top <= 24]
        if ups:
            out.append(min(ups))
    return out


def _color(flat: Sequence) -> tuple[tuple[int, int, int], list[int]]:
    """The colour of lines that rise from step to step, and the rises seen."""
    idx = range(0, len(flat) - 1, max(1, (len(flat) - 1) // PAIRS))
    counts: Counter[tuple[int, int, int]] = Counter()
    for i in idx[:: max(1, len(idx) // 50)]:
        colours, n = np.unique(flat[i].frame.reshape(-1, 3), axis=0, return_counts=True)
        counts.update({tuple(int(v) for v in c): int(k) for c, k in zip(colours, n, strict=True)})
    background = counts.most_common(1)[0][0]
    best: tuple[int, tuple[int, int, int], list[int]] | None = None
    for colour in counts:
        if colour == background:
            continue
        probe = np.asarray(colour, np.int32)
        rises: list[int] = []
        for i in idx:
            a, b = ((np.abs(flat[j].frame.astype(np.int32) - probe).sum(-1) == 0) for j in (i, i + 1))
            rises += _rises(thin_lines(a, 1, 3), thin_lines(b, 1, 3))
        # The shot rises alike every step: count the rises within a row of the commonest one
        # (an invader's thin edges jump about as it animates).
        steady = 0
        if rises:
            mode = Counter(rises).most_common(1)[0][0]
            steady = sum(1 for r in rises if abs(r - mode) <= 1)
        if best is None or steady > best[0]:
            best = (steady, colour, rises)
    if best is None or best[0] == 0:
        raise ValueError("no thin line rises from step to step in the fitting play: no shot to follow")
    return best[1], best[2]


def fit_shot(spec: GameSpec, episodes: Sequence[Episode], label: str) -> ShotReadout:
    """Learn the shot readout of ``label`` (module docstring)."""
    flat = [s for e in episodes for s in e]
    if len(flat) < 2:
        raise ValueError("the fitting play needs at least two steps")
    color, rises = _color(flat)
    mode = Counter(rises).most_common(1)[0][0]
    steady = np.array([r for r in rises if abs(r - mode) <= 2 * MIN_RISE_TOLERANCE], np.float64)
    rise = float(np.median(steady))
    rise_tolerance = max(MIN_RISE_TOLERANCE, float(np.percentile(np.abs(steady - rise), 95)))
    probe = ShotReadout(spec, label, color, rise=rise, rise_tolerance=rise_tolerance, gone_steps=GONE_STEPS,
                        zone_rows=ZONE_ROWS)  # fmt: skip
    lines = [[probe.lines(s.frame) for s in e] for e in episodes]
    starts: Counter[int] = Counter()
    for ls in lines:
        for t in range(1, len(ls) - 1):
            for x, top, _ in ls[t]:
                if any(abs(px - x) <= 1 for px, _, _ in ls[t - 1]):
                    continue
                nxt = [pt for px, pt, _ in ls[t + 1] if abs(px - x) <= 1 and abs(top - pt - rise) <= rise_tolerance]
                if nxt:
                    starts[top] += 1
    total = sum(starts.values())
    probe.launch = tuple(sorted(t for t, n in starts.items() if n >= max(2, LAUNCH_SHARE * total)))
    if not probe.launch:
        raise ValueError("no row where rising lines start in the fitting play: no launch row")
    # First pass: a shot lost and taken up again counts as old only past every age tried.
    probe.early_ages = MAX_EARLY_AGE
    seen = _states(probe, episodes, lines, label)
    flights = [(st, b) for st, b in seen if st[0] == "flight"]
    if len(flights) < 10:
        raise ValueError(f"the shot was followed on {len(flights)} steps only: too few to fit its line")
    tops = np.array([st[2] for st, _ in flights], np.float64)
    truth = np.array([b for _, b in flights], np.float64)
    a = np.c_[tops, np.ones_like(tops)]
    coef = np.linalg.lstsq(a, truth, rcond=None)[0]
    for _ in range(3):  # refit on the steps the line gives within RIGHT (young shots read otherwise)
        keep = np.abs(a @ coef - truth) <= RIGHT
        coef = np.linalg.lstsq(a[keep], truth[keep], rcond=None)[0]
    probe.scale, probe.offset = float(coef[0]), float(coef[1])
    ages = np.array([st[1] for st, _ in flights])
    right = np.abs(np.round(a @ coef) - truth) <= RIGHT
    bad = [age for age in range(MAX_EARLY_AGE) if (ages == age).sum() and right[ages == age].mean() < AGE_RIGHT]
    probe.early_ages = max(bad) + 1 if bad else 0
    seen = _states(probe, episodes, lines, label)  # again, shots taken up again as the readout will
    flights = [(st, b) for st, b in seen if st[0] == "flight"]
    probe.early = _table([((st[1], st[2]), b) for st, b in flights if st[1] < probe.early_ages])
    probe.gone = _table([((st[1], st[2]), b) for st, b in seen if st[0] == "gone"])
    idle = _table([((0, 0), b) for st, b in seen if st[0] == "idle"])
    probe.idle = idle.get((0, 0))
    probe.reset()
    return probe


def _states(probe: ShotReadout, episodes: Sequence[Episode], lines: Sequence[Sequence], label: str) -> list:
    """Every step's shot state (:meth:`ShotReadout.state`) beside its byte, episodes in order."""
    seen: list[tuple[tuple, int]] = []
    for e, ls in zip(episodes, lines, strict=True):
        probe.reset()
        seen += [(probe.state(lin), int(s.truth[label])) for s, lin in zip(e, ls, strict=True)]
    return seen


def _table(rows: Sequence[tuple[tuple[int, int], int]]) -> dict[tuple[int, ...], int]:
    """``{state: byte}`` for the states whose commonest byte holds :data:`TABLE_SHARE` of their steps."""
    by: dict[tuple[int, int], Counter[int]] = {}
    for key, b in rows:
        by.setdefault(key, Counter())[b] += 1
    out: dict[tuple[int, ...], int] = {}
    for key, c in by.items():
        byte, n = c.most_common(1)[0]
        total = sum(c.values())
        if total >= TABLE_MIN and n >= TABLE_SHARE * total:
            out[key] = byte
    return out
