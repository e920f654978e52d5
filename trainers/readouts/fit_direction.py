"""Fit a :class:`~moc_envs.readouts.direction.DirectionReadout`: a heading byte from a sprite or a side.

Cue ``"sprite"``: the byte's values seen on at least :data:`MIN_SHARE` of the steps that show the
box become the classes of a softmax classifier over the box's lit window (:func:`train_softmax`),
trained on the first :data:`TRAIN_SHARE` of the episodes with the RAM byte as the teacher; the
rest choose ``min_confidence`` and ``hold`` (the pair with the most right reads less wrong ones,
read in episode order as the env does), and the classifier is then trained again on all episodes.

Cue ``"side"``: each side of the reference's box maps to the byte most often seen there. A
classifier of the reference's sprite, for the steps without the box, is trained as above on the
steps that show both boxes (there the byte is the heading the box was launched with; elsewhere it
may lag the reference's heading); it is kept, with the ``min_confidence`` and ``hold`` chosen the
same way, only where it beats the side alone on the held-back episodes. The window is the box
sizes' 95th percentile plus a pixel each side.

Either cue: a ``respawn`` rule (:data:`RESPAWN_GAPS` x :data:`RESPAWN_STEPS`) is kept where it
beats the readout without one on the held-back episodes: how long the byte keeps its value once
the watched box shows again after a life lost is the game's timing, learned here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.direction import DirectionReadout, SpriteClassifier, lit_window, slot_box
from trainers.readouts.data import Episode

__all__ = [
    "CONFIDENCES", "MIN_SHARE", "RESPAWN_GAPS", "RESPAWN_STEPS", "TRAIN_SHARE",
    "train_softmax", "window_size", "fit_direction", "choose_reading", "choose_respawn",
]  # fmt: skip

CONFIDENCES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
"""The ``min_confidence`` values tried."""
MIN_SHARE = 0.02
"""A byte value seen on fewer of the box's steps is no class (a death spin's passing frames)."""
RESPAWN_GAPS = (4, 8, 16)
"""Steps away after which the watched box showing again counts as a respawn, tried."""
RESPAWN_STEPS = (4, 8, 16, 24, 32, 40, 48, 64)
"""Steps a respawn holds the byte, tried."""
TRAIN_SHARE = 0.7
"""Share of the episodes the classifier is first trained on; the rest choose the reading rule."""


def train_softmax(
    features: np.ndarray, classes: np.ndarray, n_classes: int, epochs: int = 400, rate: float = 1.0, l2: float = 1e-3
) -> np.ndarray:
    """(n_classes, dim + 1) weights (bias last) of a softmax classifier fitted by full-batch
    gradient descent on cross-entropy with an L2 penalty; deterministic."""
    x = np.hstack([np.asarray(features, np.float64), np.ones((len(features), 1))])
    target = np.eye(n_classes)[np.asarray(classes, np.int64)]
    w = np.zeros((x.shape[1], n_classes))
    for _ in range(epochs):
        z = x @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        w -= rate * (x.T @ (p - target) / len(x) + l2 * w)
    return w.T


def window_size(boxes: Sequence[tuple[float, float]]) -> tuple[int, int]:
    """(h, w) of the window that holds nearly every box: the 95th percentile of (w, h), plus 2."""
    size = np.percentile(np.asarray(boxes, np.float64), 95, axis=0)
    return int(min(np.ceil(size[1]) + 2, 64)), int(min(np.ceil(size[0]) + 2, 64))


def _score(readout: DirectionReadout, episodes: Sequence[Episode]) -> tuple[int, int]:
    right = wrong = 0
    for episode in episodes:
        readout.reset()
        for s in episode:
            got = readout.read(s.objects, s.frame)
            if readout.label in got:
                if got[readout.label] == s.truth[readout.label]:
                    right += 1
                else:
                    wrong += 1
    readout.reset()
    return right, wrong


def choose_reading(
    make: object, episodes: Sequence[Episode], confidences: Sequence[float]
) -> tuple[float, bool]:
    """The (min_confidence, hold) whose readout ``make(c, h)`` gets the most right reads less
    wrong ones on ``episodes``."""
    best: tuple[int, float, bool] | None = None
    for hold in (False, True):
        for c in confidences:
            right, wrong = _score(make(c, hold), episodes)  # type: ignore[operator]
            if best is None or right - wrong > best[0]:
                best = (right - wrong, c, hold)
    assert best is not None
    return best[1], best[2]


def choose_respawn(spec: GameSpec, readout: DirectionReadout, episodes: Sequence[Episode]) -> DirectionReadout:
    """``readout``, or a copy with the ``respawn`` rule that gets the most right reads less wrong
    ones on ``episodes`` where one beats none."""
    right, wrong = _score(readout, episodes)
    best, best_score = readout, right - wrong
    for gap in RESPAWN_GAPS:
        for steps in RESPAWN_STEPS:
            candidate = DirectionReadout.from_json({**readout.to_json(), "respawn": [gap, steps]}, spec)
            right, wrong = _score(candidate, episodes)
            if right - wrong > best_score:
                best, best_score = candidate, right - wrong
    return best


def _sprite_samples(
    spec: GameSpec, episodes: Sequence[Episode], label: str, category: str, size: tuple[int, int], shown: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    rows = spec.slot_ranges[category]
    also = spec.slot_ranges[shown] if shown is not None else None
    feats, truth = [], []
    for episode in episodes:
        for s in episode:
            box = slot_box(s.objects, rows)
            if box is not None and (also is None or slot_box(s.objects, also) is not None):
                feats.append(lit_window(s.frame, box, size))
                truth.append(s.truth[label])
    return np.asarray(feats, np.float32).reshape(len(feats), size[0] * size[1]), np.asarray(truth, np.int64)


def _classifier(feats: np.ndarray, truth: np.ndarray, values: tuple[int, ...], size: tuple[int, int]) -> SpriteClassifier:
    keep = np.isin(truth, values)
    classes = np.searchsorted(np.asarray(values), truth[keep])
    return SpriteClassifier(size, values, train_softmax(feats[keep], classes, len(values)))


def fit_direction(
    spec: GameSpec,
    episodes: Sequence[Episode],
    label: str,
    category: str,
    cue: str = "sprite",
    reference: str | None = None,
) -> DirectionReadout:
    """A direction readout of ``label`` from the boxes of ``category`` (module docstring)."""
    split = max(1, min(len(episodes) - 1, int(round(TRAIN_SHARE * len(episodes)))))
    readout = _fit_reading(spec, episodes, label, category, cue, reference)
    return choose_respawn(spec, readout, episodes[split:])


def _fit_reading(
    spec: GameSpec, episodes: Sequence[Episode], label: str, category: str, cue: str, reference: str | None
) -> DirectionReadout:
    """The readout without a respawn rule: sides, classifier, ``min_confidence`` and ``hold``."""
    if len(episodes) < 2:
        raise ValueError(f"fit_direction needs at least 2 episodes (train and choose), got {len(episodes)}")
    rows = spec.slot_ranges[category]
    split = max(1, min(len(episodes) - 1, int(round(TRAIN_SHARE * len(episodes)))))
    train, choose = episodes[:split], episodes[split:]
    if cue == "side":
        if reference is None:
            raise ValueError("cue 'side' needs a reference category")
        ref_rows = spec.slot_ranges[reference]
        seen: dict[int, list[int]] = {0: [], 1: []}
        for episode in episodes:
            for s in episode:
                box, ref = slot_box(s.objects, rows), slot_box(s.objects, ref_rows)
                if box is not None and ref is not None and box.center[0] != ref.center[0]:
                    seen[int(box.center[0] > ref.center[0])].append(s.truth[label])
        if not seen[0] or not seen[1]:
            raise ValueError(f"{spec.name}: {category} was never seen on both sides of {reference}")
        sides = [int(np.bincount(seen[i]).argmax()) for i in (0, 1)]
        plain = choose_reading(
            lambda c, h: DirectionReadout(spec, label, category, "side", reference=reference, sides=sides, hold=h),
            choose, (0.0,),
        )  # fmt: skip
        best = _score(DirectionReadout(spec, label, category, "side", reference=reference, sides=sides, hold=plain[1]), choose)
        try:
            size, values, clf = _sprite_classifier(spec, train, label, reference, shown=category)
        except ValueError:
            return DirectionReadout(spec, label, category, "side", reference=reference, sides=sides, hold=plain[1])

        def make(c: float, h: bool, clf: SpriteClassifier = clf) -> DirectionReadout:
            return DirectionReadout(
                spec, label, category, "side", classifier=clf, min_confidence=c, reference=reference, sides=sides, hold=h
            )  # fmt: skip

        confidence, hold = choose_reading(make, choose, CONFIDENCES)
        score = _score(make(confidence, hold), choose)
        if score[0] - score[1] > best[0] - best[1]:
            feats, truth = _sprite_samples(spec, episodes, label, reference, size, shown=category)
            return make(confidence, hold, _classifier(feats, truth, values, size))
        return DirectionReadout(spec, label, category, "side", reference=reference, sides=sides, hold=plain[1])
    size, values, clf = _sprite_classifier(spec, train, label, category)
    confidence, hold = choose_reading(
        lambda c, h: DirectionReadout(spec, label, category, "sprite", classifier=clf, min_confidence=c, hold=h),
        choose, CONFIDENCES,
    )  # fmt: skip
    feats, truth = _sprite_samples(spec, episodes, label, category, size)
    clf = _classifier(feats, truth, values, size)
    return DirectionReadout(spec, label, category, "sprite", classifier=clf, min_confidence=confidence, hold=hold)


def _sprite_classifier(
    spec: GameSpec, episodes: Sequence[Episode], label: str, category: str, shown: str | None = None
) -> tuple[tuple[int, int], tuple[int, ...], SpriteClassifier]:
    """Window, classes and classifier of ``label`` from the sprites of ``category``, taught on
    the steps that show a box of ``shown`` too where given (ValueError when no box is shown or
    fewer than two values are seen)."""
    rows = spec.slot_ranges[category]
    sizes = [(d.w, d.h) for e in episodes for s in e for d in s.objects if d.slot in rows]
    if not sizes:
        raise ValueError(f"{spec.name}: no {category} box was shown in the fitting play")
    size = window_size(sizes)
    feats, truth = _sprite_samples(spec, episodes, label, category, size, shown)
    counts = np.bincount(truth, minlength=256)
    values = tuple(int(v) for v in np.flatnonzero(counts >= MIN_SHARE * max(len(truth), 1)))
    if len(values) < 2:
        raise ValueError(f"{spec.name}: {label} showed fewer than two values with {category} in view: {values}")
    return size, values, _classifier(feats, truth, values, size)
