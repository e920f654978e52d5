"""Fit a :class:`~moc_envs.readouts.lane.LaneReadout` (:func:`fit_lane`: formations read from their
leading sprite; :func:`fit_lane_objects`: one object a lane).

Formations: the teacher for which way a lane's sprites face is its RAM byte's motion: over the
next steps of the episode (up to :data:`LOOKAHEAD`) the first change of under :data:`MAX_STEP`
says left or right. With it, on the steps that show the lane's boxes, the offset of each side is
the byte less the leading box's start that is most common; the clip border is the one of
0..:data:`MAX_BORDER` that makes the most right-facing reads exact (the nominal width is the
median box width); the classifier learns the facing from each box's lit window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.direction import SpriteClassifier, lit_window
from moc_envs.readouts.lane import LaneReadout
from trainers.readouts.data import Episode
from trainers.readouts.fit_direction import train_softmax, window_size

__all__ = ["LOOKAHEAD", "MAX_STEP", "MAX_BORDER", "byte_heading", "fit_lane", "fit_lane_objects"]

LOOKAHEAD = 12
"""Steps looked ahead for the byte's next move."""
MAX_STEP = 8
"""A change of the byte larger than this is a new formation, not motion."""
MAX_BORDER = 12
"""Largest clip border tried (frame x)."""


def byte_heading(series: Sequence[int]) -> list[int | None]:
    """Per step, 0 when the byte next moves down (left), 1 up (right), None when it does not move
    by under :data:`MAX_STEP` within :data:`LOOKAHEAD` steps (wrap-around at 256 counted)."""
    out: list[int | None] = []
    for t, b in enumerate(series):
        heading = None
        for nxt in series[t + 1 : t + 1 + LOOKAHEAD]:
            d = (int(nxt) - int(b) + 128) % 256 - 128
            if d:
                heading = (1 if d > 0 else 0) if abs(d) < MAX_STEP else None
                break
        out.append(heading)
    return out


def _wrapped(d: float, wrap: int) -> float:
    return (d + wrap / 2) % wrap - wrap / 2


def fit_lane(
    spec: GameSpec,
    episodes: Sequence[Episode],
    labels: Sequence[str],
    regions: Sequence[tuple[float, float]],
    categories: Sequence[str],
    wrap: int = 256,
) -> LaneReadout:
    """A lane readout of ``labels`` (module docstring)."""
    slots = {c: spec.slot_ranges[c] for c in categories}
    sizes = [(d.w, d.h) for e in episodes for s in e for d in s.objects if d.category in slots and d.slot in slots[d.category]]
    if not sizes:
        raise ValueError(f"{spec.name}: no box of {list(categories)} was shown in the fitting play")
    size = window_size(sizes)
    nominal = float(np.median([w for w, _ in sizes]))
    clf0 = SpriteClassifier(size, (0, 1), np.zeros((2, size[0] * size[1] + 1)))
    probe = LaneReadout(spec, labels, [list(r) for r in regions], categories, clf0, (0.0, 0.0), (-1.0, nominal), wrap)
    # (lane's boxes, heading, byte) on the steps that show the lane and whose byte moves.
    samples: list[tuple[list, int, int, np.ndarray]] = []
    for episode in episodes:
        for lane, label in enumerate(labels):
            heads = byte_heading([s.truth[label] for s in episode])
            for s, h in zip(episode, heads, strict=True):
                boxes = probe.lane_boxes(s.objects, lane)
                if boxes and h is not None:
                    samples.append((boxes, h, s.truth[label], s.frame))
    if not any(h == 0 for _, h, _, _ in samples) or not any(h == 1 for _, h, _, _ in samples):
        raise ValueError(f"{spec.name}: the lanes' bytes were not seen moving both ways")
    borders = np.arange(0, MAX_BORDER + 1)
    best: tuple[int, float] | None = None
    for border in borders:
        probe.clip = (float(border), nominal)
        res = [round(_wrapped(b - probe.start(bx[-1]), wrap)) for bx, h, b, _ in samples if h == 1]
        top = int(np.bincount(np.asarray(res) + wrap).max())
        if best is None or top > best[0]:
            best = (top, float(border))
    assert best is not None
    probe.clip = (best[1], nominal)
    offsets = []
    for side in (0, 1):
        res = np.asarray([round(_wrapped(b - probe.start(bx[-1] if side else bx[0]), wrap)) for bx, h, b, _ in samples if h == side])
        offsets.append(float(np.bincount(res + wrap).argmax() - wrap))
    feats = [lit_window(f, d, size) for bx, _, _, f in samples for d in bx]
    classes = [h for bx, h, _, _ in samples for _ in bx]
    clf = SpriteClassifier(size, (0, 1), train_softmax(np.asarray(feats), np.asarray(classes), 2))
    return LaneReadout(spec, labels, [list(r) for r in regions], categories, clf, offsets, probe.clip, wrap)


def fit_lane_objects(
    spec: GameSpec,
    episodes: Sequence[Episode],
    labels: Sequence[str],
    regions: Sequence[tuple[float, float]],
    categories: Sequence[str],
    hidden_by: Sequence[str] = (),
    requires: dict[str, Sequence[str]] | None = None,
    tolerance: int = 5,
    wrap: int = 256,
) -> LaneReadout:
    """A lane readout of one object a lane (no classifier: the lane's leftmost box).

    The offset is the commonest byte less box x of the commonest category, each other category's
    offset the commonest further residual of its boxes; the clip border (none, or one of
    0..:data:`MAX_BORDER`) the one with the most reads within ``tolerance`` less those beyond.
    The ``hidden_by`` and ``requires`` rules offered are each kept only when, on the fitting play,
    the reads within ``tolerance`` of the byte less those beyond it grow with the rule (it drops
    more wrong reads than right ones).
    """
    slots = {c: spec.slot_ranges[c] for c in categories}
    sizes = [d.w for e in episodes for s in e for d in s.objects if d.category in slots and d.slot in slots[d.category]]
    if not sizes:
        raise ValueError(f"{spec.name}: no box of {list(categories)} was shown in the fitting play")
    nominal = float(np.median(sizes))
    regions_json = [list(r) for r in regions]

    def make(off: float, clip: tuple[float, float], cat_off: dict[str, float], hid: Sequence[str], req: dict | None) -> LaneReadout:
        return LaneReadout(spec, labels, regions_json, categories, None, [off], clip, wrap, cat_off, hid, req)

    def residuals(r: LaneReadout) -> list[tuple[str, float]]:
        out = []
        for e in episodes:
            for s in e:
                for lane, label in enumerate(labels):
                    boxes = r.lane_boxes(s.objects, lane)
                    if boxes:
                        out.append((boxes[0].category, _wrapped(s.truth[label] - r.start(boxes[0]), wrap)))
        return out

    def mode(values: list[float]) -> float:
        v = np.round(np.asarray(values)).astype(np.int64)
        return float(np.bincount(v + wrap).argmax() - wrap)

    def right(r: LaneReadout) -> int:
        # Reads within tolerance less those beyond: a rule that drops more wrong reads than
        # right ones pays.
        n = 0
        for e in episodes:
            for s in e:
                for label, v in r.read(s.objects, None).items():
                    n += 1 if abs(_wrapped(v - s.truth[label], wrap)) <= tolerance else -1
        return n

    def fitted(border: float, hid: Sequence[str], req: dict[str, Sequence[str]] | None) -> LaneReadout | None:
        probe = make(0.0, (border, nominal), {}, hid, req)
        res = residuals(probe)
        if not res:
            return None
        counts: dict[str, int] = {}
        for c, _ in res:
            counts[c] = counts.get(c, 0) + 1
        base = max(counts, key=lambda c: counts[c])
        off = mode([v for c, v in res if c == base])
        cat_off = {c: mode([v - off for k, v in res if k == c]) for c in counts if c != base}
        return make(off, (border, nominal), {c: v for c, v in cat_off.items() if v}, hid, req)

    # The border first (no rules), then each rule on its own merit.
    best: tuple[int, LaneReadout] | None = None
    for border in [-1.0, *map(float, range(MAX_BORDER + 1))]:
        r = fitted(border, (), None)
        if r is not None and (best is None or right(r) > best[0]):
            best = (right(r), r)
    if best is None:
        raise ValueError(f"{spec.name}: no lane of {list(labels)} showed a box in the fitting play")
    border = best[1].clip[0]
    hid: Sequence[str] = ()
    req: dict[str, Sequence[str]] | None = None
    for h, q in ((tuple(hidden_by), None), ((), requires)):
        if not h and not q:
            continue
        r = fitted(border, h or hid, q or req)
        if r is not None and right(r) > best[0]:
            best = (right(r), r)
            hid, req = h or hid, q or req
    return best[1]
