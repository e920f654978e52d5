"""Fit a :class:`~moc_envs.readouts.count.CountReadout`: the byte as a count of shown boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.count import CountReadout
from trainers.readouts.data import Episode, label_series

__all__ = ["fit_count"]

SCALES = (1.0, -1.0)
"""Slopes tried: a byte that counts the objects up (boxes shown) or down (objects gone)."""


def fit_count(
    spec: GameSpec,
    episodes: Sequence[Episode],
    label: str,
    categories: Sequence[str],
    region: tuple[str, float, float] | None = None,
) -> CountReadout:
    """The slope of :data:`SCALES` and whole bias that make the most counts equal to the byte."""
    truth = label_series(episodes, label)
    probe = CountReadout(spec, label, categories, region=region)
    counts = np.array([probe.count(s.objects) for e in episodes for s in e], dtype=np.int64)
    best: tuple[int, float, float] | None = None
    for scale in SCALES:
        residual = truth - scale * counts
        values, hits = np.unique(residual, return_counts=True)
        bias = float(values[np.argmax(hits)])
        if best is None or hits.max() > best[0]:
            best = (int(hits.max()), scale, bias)
    assert best is not None
    return CountReadout(spec, label, categories, scale=best[1], bias=best[2], region=region)
