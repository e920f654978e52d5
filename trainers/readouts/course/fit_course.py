"""Fit a :class:`~moc_envs.readouts.course.slots.CourseReadout`: a course's object slots from the frame.

Learned from the fitting play with the RAM bytes of the slots as the teacher:

- the course colours: colours with at least :data:`MIN_SHARE` of their frame-wide pixels inside
  the detector's course boxes and a larger share there than inside the player's boxes (the
  commonest colour, the snow, is never one);
- the playfield (``rows``, ``cols``): the extent of the course colours' pixels over the play;
- each colour's sprite height: the commonest height of its objects drawn whole;
- ``offset``: the commonest ``top row + byte`` over the objects drawn whole and every slot's byte
  (one byte a row: the right slot's pairs agree, the others scatter);
- ``clamp``: the commonest slot byte within :data:`RIGHT` of ``offset - first row`` on steps that
  draw an object cut by the playfield's first row;
- each colour's gap to the next object: the threshold on the lowest object's byte that best tells
  whether slot 6 still lies undrawn below it (the RAM's slot 6 is not that object);
- the edge table: for objects cut by the left or right edge, per colour, side and visible width,
  the commonest rows from the true top (the RAM byte of the slot it fills) to its bottom row, kept
  where at least :data:`EDGE_AGREE` of at least :data:`EDGE_MIN` samples lie within 2 rows of it;
- ``merge``: among :data:`MERGES`, the distance that reads the most slots right.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.course.slots import CourseObject, CourseReadout, find_course_objects
from trainers.readouts.data import Episode

__all__ = ["fit_course", "MIN_SHARE", "RIGHT", "MERGES", "EDGE_MIN", "EDGE_AGREE"]

MIN_SHARE = 0.2
"""A colour is a course colour when at least this share of its pixels lies in course boxes."""

RIGHT = 5
"""A slot within this many of its byte counts as right (the labels are positions)."""

MERGES = (1, 2, 3, 4)
"""Pixel distances within which blobs of one colour are one object, tried."""

EDGE_MIN = 5
"""Samples an edge-table row needs."""

EDGE_AGREE = 0.9
"""Share of an edge-table row's samples that must lie within 2 rows of its value."""

SAMPLE = 300
"""Frames looked at (evenly spread) to learn the colours and the playfield."""


def _codes(pixels: np.ndarray) -> np.ndarray:
    p = pixels.reshape(-1, 3).astype(np.int64)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


def _boxed(frame: np.ndarray, boxes: Sequence) -> np.ndarray:
    mask = np.zeros(frame.shape[:2], dtype=bool)
    for d in boxes:
        mask[max(int(d.y), 0) : int(d.y + d.h) + 1, max(int(d.x), 0) : int(d.x + d.w) + 1] = True
    return mask


def _course_colours(steps: Sequence, course: Sequence[str], player: str) -> list[tuple[int, int, int]]:
    """Colours mostly drawn inside course boxes (module docstring)."""
    total: Counter[int] = Counter()
    in_course: Counter[int] = Counter()
    in_player: Counter[int] = Counter()
    for s in steps:
        codes = _codes(s.frame).reshape(s.frame.shape[:2])
        total.update(Counter(codes.ravel().tolist()))
        in_course.update(Counter(codes[_boxed(s.frame, [d for d in s.objects if d.category in course])].tolist()))
        in_player.update(Counter(codes[_boxed(s.frame, [d for d in s.objects if d.category == player])].tolist()))
    if not total:
        raise ValueError("no frames in the fitting play: cannot learn the course colours")
    snow = total.most_common(1)[0][0]
    keep = [
        c for c in total
        if c != snow and in_course[c] / total[c] >= MIN_SHARE and in_course[c] / total[c] > in_player[c] / total[c]
    ]  # fmt: skip
    if not keep:
        raise ValueError(f"no colour is drawn mostly inside {list(course)} boxes: no course to read")
    keep.sort(key=lambda c: -total[c])
    return [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in keep]


def fit_course(
    spec: GameSpec,
    episodes: Sequence[Episode],
    labels: Sequence[str],
    course: Sequence[str] = ("Tree", "Mogul", "Flag"),
    player: str = "Player",
) -> CourseReadout:
    """Learn the course readout of ``labels`` (slot 0 .. slot n-1; module docstring)."""
    unknown = sorted(set(course) - set(spec.slot_ranges))
    if unknown:
        raise ValueError(f"{spec.name} has no categories {unknown}; expected some of {sorted(spec.slot_ranges)}")
    flat = [s for e in episodes for s in e]
    if not flat:
        raise ValueError("no steps in the fitting play: nothing to fit")
    sample = flat[:: max(1, len(flat) // SAMPLE)]
    colours = _course_colours(sample, course, player)
    palette = np.array(colours, dtype=np.int16)
    # The playfield: where the course colours are ever drawn.
    lit = np.zeros(flat[0].frame.shape[:2], dtype=bool)
    for s in sample:
        lit |= (s.frame.astype(np.int16)[:, :, None, :] == palette[None, None]).all(-1).any(-1)
    ys, xs = np.nonzero(lit)
    if not len(ys):
        raise ValueError("the course colours are drawn nowhere in the fitting play")
    rows, cols = (int(ys.min()), int(ys.max())), (int(xs.min()), int(xs.max()))
    truth = np.array([[s.truth[lab] for lab in labels] for s in flat], dtype=np.int64)

    def whole(o: CourseObject) -> bool:
        return rows[0] < o.top and o.bottom < rows[1] and cols[0] < o.left and o.right < cols[1]

    best: tuple[int, CourseReadout] | None = None
    for merge in MERGES:
        found = [find_course_objects(s.frame, palette, rows, cols, merge) for s in flat]
        readout = _fit_rest(spec, labels, colours, rows, cols, merge, found, truth, whole)
        right = _right(readout, found, truth)
        if best is None or right > best[0]:
            best = (right, readout)
    assert best is not None
    return best[1]


def _fit_rest(
    spec: GameSpec,
    labels: Sequence[str],
    colours: list[tuple[int, int, int]],
    rows: tuple[int, int],
    cols: tuple[int, int],
    merge: int,
    found: list[list[CourseObject]],
    truth: np.ndarray,
    whole: Callable[[CourseObject], bool],
) -> CourseReadout:
    """Heights, offset, clamp, gaps and the edge table for one merge distance."""
    k = len(colours)
    heights_seen: list[Counter[int]] = [Counter() for _ in range(k)]
    sums: Counter[int] = Counter()
    for objs, t in zip(found, truth, strict=True):
        for o in objs:
            if whole(o):
                heights_seen[o.colour][o.bottom - o.top + 1] += 1
                sums.update((o.top + t).tolist())
    if not sums:
        raise ValueError("no course object is drawn whole in the fitting play")
    common = Counter(h for c in heights_seen for h in c.elements()).most_common(1)
    heights = [c.most_common(1)[0][0] if c else common[0][0] for c in heights_seen]
    offset = float(sums.most_common(1)[0][0])
    at_top: Counter[int] = Counter()
    for objs, t in zip(found, truth, strict=True):
        if any(o.top <= rows[0] for o in objs):
            at_top.update(int(v) for v in t if abs(v - (offset - rows[0])) <= RIGHT)
    clamp = int(at_top.most_common(1)[0][0]) if at_top else int(offset - rows[0])
    readout = CourseReadout(spec, labels, colours, heights, [255] * k, rows, cols, offset, clamp, merge)
    _fit_gaps(readout, found, truth)
    # The edge table: rows from the true top (the byte of the slot the object fills) to the bottom.
    samples: dict[tuple[int, int, int], list[int]] = {}
    for objs, t in zip(found, truth, strict=True):
        for o, slot in zip(objs, readout.order(objs), strict=True):
            side = 0 if o.left <= cols[0] else 1 if o.right >= cols[1] else -1
            top = offset - int(t[slot]) if slot >= 0 else rows[0]
            if side >= 0 and o.bottom < rows[1] and top > rows[0]:
                samples.setdefault((o.colour, side, o.right - o.left + 1), []).append(int(o.bottom - top))
    table = {}
    for key, vals in samples.items():
        v = np.array(vals)
        mode = Counter(vals).most_common(1)[0][0]
        if len(v) >= EDGE_MIN and np.mean(np.abs(v - mode) <= 2) >= EDGE_AGREE and mode >= 0:
            table[key] = int(mode)
    readout.edge_rows = table
    _fit_gaps(readout, found, truth)  # again: edge objects now order by the table's top
    return readout


def _fit_gaps(readout: CourseReadout, found: Sequence[list[CourseObject]], truth: np.ndarray) -> None:
    """Each colour's gap: is the lowest object's slot the bottom one (RAM), against its byte?"""
    k, n = len(readout.gaps), len(readout.labels)
    seen: list[list[tuple[int, bool]]] = [[] for _ in range(k)]
    for objs, t in zip(found, truth, strict=True):
        if objs:
            value = readout.byte_of_top(readout.top_of(objs[0])[1])
            if value is not None:
                seen[objs[0].colour].append((value, abs(int(t[n - 1]) - value) > RIGHT))
    gaps = [_threshold(s) for s in seen]
    fallback = max((g for g in gaps if g is not None), default=255)
    readout.gaps = tuple(g if g is not None else fallback for g in gaps)


def _threshold(seen: Sequence[tuple[int, bool]]) -> int | None:
    """The byte from which the lowest object of a colour has an undrawn object below it: the
    threshold that agrees with the RAM most often (None with no samples)."""
    if not seen:
        return None
    values = np.array([v for v, _ in seen])
    below = np.array([b for _, b in seen])
    best = max(range(1, 256), key=lambda g: (int(np.sum((values >= g) == below)), -g))
    return int(best)


def _right(readout: CourseReadout, found: Sequence[list[CourseObject]], truth: np.ndarray) -> int:
    """Slots read within :data:`RIGHT` less four per wrong one, over the fitting play."""
    score = 0
    for objs, t in zip(found, truth, strict=True):
        for slot, value in readout.assign(objs).items():
            score += 1 if abs(value - int(t[slot])) <= RIGHT else -4
    return score
