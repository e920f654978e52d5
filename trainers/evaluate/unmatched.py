"""Where a detector's false positives are: its unmatched predictions on a split, grouped.

    moc-envs unmatched --game Carnival --data runs/carnival/data --weights weights/Carnival

Runs the detector as the env does (``SpaceDetector.detect`` on the split's full-size frames,
:mod:`trainers.data.raw_frames`), matches its boxes one-to-one to the frame's non-HUD OCAtari
objects with the references' criterion (:func:`trainers.evaluate.detection_metrics.match_pairs`), sets
aside predictions on HUD objects, and counts the rest by the category the detector gave them,
the 10-row band of the screen they sit in and their size: a card's precision says how many
false positives there are, this says what they are (a wheel found in pieces, a score digit).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from moc_envs.threads import add_threads_argument, set_torch_threads
from trainers.evaluate.detection_metrics import match_pairs

__all__ = ["unmatched_predictions", "to_markdown", "main"]

BAND = 10
"""Rows per screen band of the grouping."""


def unmatched_predictions(
    game: str, data: str | Path, weights: str | Path, split: str = "test", every: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Unmatched predictions of the detector in ``weights`` on every ``every``-th stack of ``split``.

    Returns the frames scored, the predictions, the unmatched ones, and ``groups``: a list of
    ``{"category", "rows", "size", "count", "per_frame"}`` sorted by count.
    """
    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector
    from trainers.data.raw_frames import load_raw_frames
    from trainers.data.reader import load_ground_truth

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    spec = get_game(game)
    raw = load_raw_frames(data, split)
    truth = load_ground_truth(data, split)
    detector = SpaceDetector.from_pretrained(Path(weights), spec)
    groups: Counter[tuple[str, int, str]] = Counter()
    frames = predictions = 0
    for stack in tqdm(range(0, len(raw), every), desc="unmatched", unit="stack", disable=not progress):
        for t, dets in enumerate(detector.detect(raw[stack])):
            frames += 1
            predictions += len(dets)
            pred = np.array([[d.x, d.y, d.w, d.h] for d in dets], np.float64).reshape(-1, 4)
            gt, _ = truth.boxes(stack, t)
            rows = truth.rows(stack, t)
            hud_idx = rows[truth.hud[rows]]
            hud = np.stack([truth.x[hud_idx], truth.y[hud_idx], truth.w[hud_idx], truth.h[hud_idx]], axis=1)
            matched = set(match_pairs(pred, gt)[0].tolist()) | set(match_pairs(pred, hud)[0].tolist())
            for i, d in enumerate(dets):
                if i not in matched:
                    band = int(d.y) // BAND * BAND
                    groups[(d.category, band, f"{round(d.w)} x {round(d.h)}")] += 1
    total = sum(groups.values())
    return {
        "game": spec.name,
        "split": split,
        "frames": frames,
        "predictions": predictions,
        "unmatched": total,
        "groups": [
            {"category": c, "rows": [band, band + BAND - 1], "size": size, "count": n, "per_frame": n / max(frames, 1)}
            for (c, band, size), n in groups.most_common()
        ],
    }


def to_markdown(result: dict[str, Any], top: int = 15) -> str:
    """The ``top`` largest groups as a Markdown table, under a line of totals."""
    lines = [
        f"{result['game']} {result['split']} split, {result['frames']} frames: {result['predictions']} predictions, "
        f"{result['unmatched']} unmatched (not on an object or a HUD object)",
        "",
        "| category given | rows | w x h px | count | per frame |",
        "|---|---|---|---|---|",
    ]
    for g in result["groups"][:top]:
        lines.append(f"| {g['category']} | {g['rows'][0]}-{g['rows'][1]} | {g['size']} | {g['count']} | {g['per_frame']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs unmatched",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. Carnival")
    p.add_argument("--data", required=True, default=argparse.SUPPRESS, help="dataset folder with the split's raw frames")
    p.add_argument("--weights", required=True, default=argparse.SUPPRESS, help="exported detector folder")
    p.add_argument("--split", default="test", help="dataset split")
    p.add_argument("--every", type=int, default=1, help="score every N-th stack")
    p.add_argument("--top", type=int, default=15, help="groups shown")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    result = unmatched_predictions(args.game, args.data, args.weights, args.split, args.every)
    print(to_markdown(result, args.top))
    return result


if __name__ == "__main__":
    main()
