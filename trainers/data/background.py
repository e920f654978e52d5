"""``moc-envs background``: record a game's background (mode) image into a weights folder.

The detector's bar filter (:class:`moc_envs.perception.distractors.BarFilter`) tells the game's
own frame-spanning lines from distractor bars by the colours of this image, and paints bars
over with it. ``moc-envs export`` copies the image of the dataset a run trained on; this verb
adds one to a folder exported without it (or from a dataset that is gone), by the dataset
builder's own recipe (:func:`trainers.data.collect.collect_background`: clean frames kept at
random from several episodes of play, the per-pixel most common colour).

    moc-envs background --game Pong --weights weights/Pong [--data data/Pong] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moc_envs.games import get_game
from moc_envs.perception.distractors import BACKGROUND_FILE, write_background
from moc_envs.weights.manifest import refresh_manifest

__all__ = ["dataset_background", "play_background", "record_background", "main"]


def dataset_background(data: str | Path, game: str) -> np.ndarray | None:
    """The background image a dataset folder recorded (None when it has none)."""
    from trainers.data.storage import BACKGROUND_FILE as PNG
    from trainers.data.storage import load_png

    path = Path(data) / PNG
    return load_png(path, get_game(game).name) if path.is_file() else None


def play_background(game: str, seed: int = 0) -> np.ndarray:
    """A background image played afresh, as the dataset builder plays it (random policy)."""
    from trainers.data.collect import BuildSettings, collect_background

    spec = get_game(game)
    return collect_background(spec, BuildSettings(game=spec.name, train=0, val=0, test=0, seed=seed), "random")


def record_background(weights: str | Path, game: str, data: str | Path | None = None, seed: int = 0) -> Path:
    """Write ``background.safetensors`` into ``weights`` (from ``data``'s image, else played) and
    refresh the folder's manifest."""
    spec = get_game(game)
    weights = Path(weights)
    if not weights.is_dir():
        raise FileNotFoundError(f"weights folder {weights} does not exist")
    image = dataset_background(data, spec.name) if data is not None else None
    if data is not None and image is None:
        raise FileNotFoundError(f"dataset {data} holds no background image")
    path = write_background(weights, spec.name, image if image is not None else play_background(spec.name, seed))
    refresh_manifest(weights, spec.name, written=[BACKGROUND_FILE])
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs background", description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--game", required=True)
    p.add_argument("--weights", type=Path, required=True, help="the weights folder to add the image to")
    p.add_argument("--data", type=Path, default=None, help="take the image of this dataset instead of playing")
    p.add_argument("--seed", type=int, default=0, help="seed of the play (without --data)")
    a = p.parse_args(argv)
    path = record_background(a.weights, a.game, a.data, a.seed)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
