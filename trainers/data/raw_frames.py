"""Full-size (210x160) frames of a dataset split, recovered by replaying its build.

The dataset stores 128x128 frames, but OCAtari's vision mode (a hand-written colour detector,
our rival for "objects from pixels") needs the original screens. A dataset build is
deterministic (chunk ``i`` of a split plays episodes seeded from ``(seed, split, i)``), so we
replay the split's chunks with the builder's own collection loop, keep the raw windows, and
check that the replay reproduces the stored RAM and 128x128 frames byte for byte before
writing ``<split>_raw.npz`` (key ``frames``, uint8 (S, T, 210, 160, 3), compressed).

    moc-envs raw-frames --data data/Pong --split test [--split val]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from trainers.data.reader import DatasetError, load_meta, load_split

__all__ = ["raw_file", "has_raw_frames", "load_raw_frames", "build_raw_frames", "main"]


def raw_file(root: str | Path, split: str) -> Path:
    """Path of a split's full-size frames."""
    return Path(root) / f"{split}_raw.npz"


def has_raw_frames(root: str | Path, split: str) -> bool:
    """Whether the split's full-size frames have been recovered."""
    return raw_file(root, split).is_file()


def load_raw_frames(root: str | Path, split: str) -> np.ndarray:
    """Full-size frames (S, T, 210, 160, 3) uint8 of a split (see :func:`build_raw_frames`)."""
    path = raw_file(root, split)
    if not path.is_file():
        raise DatasetError(
            f"{path} is missing; recover the full-size frames with "
            f"`moc-envs raw-frames --data {root} --split {split}`"
        )
    with np.load(path, allow_pickle=False) as z:
        return z["frames"]


def build_raw_frames(root: str | Path, split: str, progress: bool = True, force: bool = False) -> Path:
    """Replay ``split`` of the dataset at ``root`` and save its full-size frames; return the path.

    Raises DatasetError when the replay does not reproduce the stored data (a dataset built by
    another version of the builder, or with a policy that cannot be rebuilt from its name).
    """
    from moc_envs.games import get_game
    from trainers.data.collect import BuildSettings, collect_chunk, make_env
    from trainers.data.motion import HUD_REGIONS, MotionConfig
    from trainers.data.storage import BACKGROUND_FILE, load_png, save_npz_atomic

    root = Path(root)
    out = raw_file(root, split)
    if out.is_file() and not force:
        return out
    meta = load_meta(root)
    build = dict(meta["build"])
    build["max_object_size"] = tuple(build["max_object_size"])
    settings = BuildSettings(**build)
    spec = get_game(settings.game)
    stored = load_split(root, split)
    n = len(stored)
    background = load_png(root / BACKGROUND_FILE)
    # The regions the build left out (derived ones included), as meta.json records them.
    table = HUD_REGIONS.get(spec.name, ()) if settings.hud_mask else ()
    # The motion settings the build recorded, not today's table: a replay must give its targets.
    motion_cfg = MotionConfig(
        max_object_size=settings.max_object_size,
        ignore=tuple(tuple(r) for r in meta.get("hud_regions", table)),
        split_colours=settings.split_colours,
    )
    T = stored.frames.shape[1]
    raw = np.zeros((n, T, 210, 160, 3), np.uint8)
    env = make_env(spec)
    bar = tqdm(total=n, desc=f"{spec.name} {split} raw", unit="stack", disable=not progress)
    try:
        for c in range(max(1, math.ceil(n / settings.chunk_stacks))):
            lo = c * settings.chunk_stacks
            size = min(settings.chunk_stacks, n - lo) if n else 0

            def keep(k: int, window: np.ndarray, lo: int = lo) -> None:
                raw[lo + k] = window

            arrays, _, _ = collect_chunk(
                spec, env, settings, settings.policy, background, motion_cfg, split, c, size,
                on_stack=lambda: bar.update(1), on_window=keep,
            )  # fmt: skip
            same = np.array_equal(arrays["rams"], stored.rams[lo : lo + size]) and np.array_equal(
                arrays["frames"], stored.frames[lo : lo + size]
            )
            if not same:
                raise DatasetError(
                    f"replaying chunk {c} of split '{split}' of '{root}' did not reproduce the "
                    "stored frames and RAM; the dataset was built by another builder version or "
                    "policy. Rebuild it with `moc-envs dataset ... --force`"
                )
    finally:
        bar.close()
        env.close()
    save_npz_atomic(out, frames=raw)
    return out


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Command line: recover the full-size frames of one or more splits."""
    p = argparse.ArgumentParser(
        prog="moc-envs raw-frames",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset directory (trainers.data.dataset output)")
    p.add_argument("--split", action="append", help="split to recover (repeatable; default test)")
    p.add_argument("--force", action="store_true", help="rebuild an existing <split>_raw.npz")
    args = p.parse_args(argv)
    paths = []
    for split in args.split or ["test"]:
        path = build_raw_frames(args.data, split, force=args.force)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        paths.append(path)
    return paths


if __name__ == "__main__":
    main()
