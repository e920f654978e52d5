"""Classifier samples from play: the detector's boxes on frames of random play, named by RAM truth.

``moc-envs classifier --from-play`` fits a weights folder's classifier without its training data
set (which is not shipped): the game is played with random actions (the training data's policy,
on seeds of its own), the detector runs on windows of frames spread over long play
(:func:`trainers.evaluate.held_out.play`), and each box is named with the category of the OCAtari
RAM object it matches (class-agnostic Hungarian matching, the references' relative criterion; ""
when it matches none), as the data set's val split names them. The samples are what the
classifier reads at run time: z_what, the model box's width and height, the object's colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PlaySamples", "play_samples"]


@dataclass
class PlaySamples:
    """One row per detection: z_what (M, D), category ("" unmatched), model box size (M, 2),
    colour (M, 3) and the window it came from (M,), the unit the option search halves."""

    z_what: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    colours: np.ndarray
    groups: np.ndarray
    frames: int


def play_samples(
    game: str, weights: str | Path, frames: int = 400, seeds: Sequence[int] = (6000, 6001), device: str = "cpu"
) -> PlaySamples:
    """Samples of :class:`PlaySamples` from ``frames`` recorded frames of random play per seed."""
    from moc_envs.perception.detectors import make_detector
    from trainers.evaluate.detection_metrics import match_pairs
    from trainers.evaluate.held_out import PolicyRun, play

    det = make_detector("space", game, device, weights=str(weights), allow_unclassified=True)
    det.classifier = None  # every box the detector keeps, whatever a classifier would name it
    dim = det.config.z_what_dim
    z, labels, sizes, colours, groups = [], [], [], [], []
    total = window = 0
    for seed in seeds:
        rec = play(game, PolicyRun("random", int(seed)), frames)
        total += len(rec.records)
        for lo in range(0, len(rec.frames), 32):
            dets, wh, rgb = det.detect_samples(np.ascontiguousarray(rec.frames[lo : lo + 32]))
            k = 0
            for f, frame_dets in enumerate(dets):
                r = rec.records[lo + f]
                window += r.window_start
                boxes = np.array([(d.x, d.y, d.w, d.h) for d in frame_dets], np.float64).reshape(-1, 4)
                names = [""] * len(frame_dets)
                for i, j in zip(*match_pairs(boxes, r.truth, "relative"), strict=True):
                    names[int(i)] = r.truth_cats[int(j)]
                for d, name in zip(frame_dets, names, strict=True):
                    z.append(np.asarray(d.z_what, np.float32).reshape(dim))
                    labels.append(name)
                    groups.append(window)
                sizes.append(wh[k : k + len(frame_dets)])
                colours.append(rgb[k : k + len(frame_dets)])
                k += len(frame_dets)
    return PlaySamples(
        z_what=np.array(z, np.float32).reshape(-1, dim),
        labels=np.array(labels, dtype=object),
        sizes=np.concatenate(sizes).reshape(-1, 2) if sizes else np.zeros((0, 2)),
        colours=np.concatenate(colours).reshape(-1, 3) if colours else np.zeros((0, 3)),
        groups=np.array(groups, np.int64),
        frames=total,
    )
