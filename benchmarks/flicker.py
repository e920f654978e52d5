"""Flicker: which games draw objects on alternate frames, and what the max of two frames recovers.

``moc-envs bench flicker [--games ...] [--steps 600]``

At frameskip 4 the env hands the detector the last of the four emulator frames. Some games draw
some objects only on every other frame (MsPacman's ghosts, shots in SpaceInvaders), so a single
frame can miss them whatever the detector. For every game this steps ALE one emulator frame at a
time (random actions held for 4 frames, sticky actions as in v5), reads the RAM truth of the last
frame (OCAtari RAM mode, HUD off) and asks, for each true object, whether its box shows it: some
pixel in the box differs from the most common colour of a 2-pixel ring around the box. Rows: the
share of true objects visible in the last frame alone and in the pixel-wise maximum of the last
two frames (what a ``flicker`` game's env and dataset give the detector), per game and category.
That share bounds any detector's recall from those frames. Writes ``flicker.json``, ``.md``,
``.png``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_common_args, bar_plot, markdown_table, write_results

__all__ = ["visible", "run", "main"]

DEFAULT_GAMES = (
    "Pong", "Boxing", "Skiing", "Breakout", "Freeway", "Tennis",
    "SpaceInvaders", "MsPacman", "Seaquest", "Asterix", "Carnival",
)  # fmt: skip


def visible(frame: np.ndarray, box: Sequence[float], ring: int = 2) -> bool | None:
    """Whether box (x, y, w, h) of an RGB frame shows anything but its surroundings' colour.

    None when the box has no pixel inside the frame.
    """
    fh, fw = frame.shape[:2]
    x, y, w, h = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + max(w, 1)), min(fh, y + max(h, 1))
    if x1 <= x0 or y1 <= y0:
        return None
    packed = frame.astype(np.int32)
    packed = (packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2]
    outer = packed[max(0, y0 - ring) : min(fh, y1 + ring), max(0, x0 - ring) : min(fw, x1 + ring)]
    inner_mask = np.zeros(outer.shape, dtype=bool)
    inner_mask[y0 - max(0, y0 - ring) : y1 - max(0, y0 - ring), x0 - max(0, x0 - ring) : x1 - max(0, x0 - ring)] = True
    ring_px = outer[~inner_mask]
    inside = outer[inner_mask]
    if not ring_px.size:
        return bool(np.unique(inside).size > 1)
    values, counts = np.unique(ring_px, return_counts=True)
    return bool((inside != values[counts.argmax()]).any())


def measure_game(game: str, steps: int, seed: int) -> dict[str, Any]:
    """Visible share of true objects, last frame vs max of the last two, overall and per category."""
    from moc_envs.envs.registration import make_ale_env
    from moc_envs.envs.wrapper import screen_of
    from moc_envs.games import get_game
    from moc_envs.perception.ram_detector import RamDetector

    spec = get_game(game)
    det = RamDetector(spec)
    env = make_ale_env(spec, frameskip=1)
    rng = np.random.default_rng(seed)
    counts: dict[str, list[int]] = {}
    try:
        env.reset(seed=seed)
        det.reset(0)
        ale = env.unwrapped.ale  # type: ignore[attr-defined]
        n_actions = env.action_space.n  # type: ignore[attr-defined]
        for _ in range(steps):
            action = int(rng.integers(n_actions))
            frames, done = [], False
            for _ in range(4):
                _, _, term, trunc, _ = env.step(action)
                frame = screen_of(ale)
                found = det.detect(frame[None], ale.getRAM()[None])[0]
                frames.append(frame)
                done = done or term or trunc
            if done:
                env.reset()
                det.reset(0)
                continue
            pooled = np.maximum(frames[-2], frames[-1])
            for d in found:
                single = visible(frames[-1], (d.x, d.y, d.w, d.h))
                if single is None:
                    continue
                both = visible(pooled, (d.x, d.y, d.w, d.h))
                c = counts.setdefault(d.category, [0, 0, 0])
                c[0] += 1
                c[1] += int(single)
                c[2] += int(bool(both))
    finally:
        env.close()
    total = np.sum([v for v in counts.values()], axis=0) if counts else np.zeros(3, dtype=int)
    return {
        "game": game,
        "objects": int(total[0]),
        "visible_last_frame": float(total[1] / total[0]) if total[0] else None,
        "visible_max_of_two": float(total[2] / total[0]) if total[0] else None,
        "per_category": {
            k: {"objects": v[0], "visible_last_frame": v[1] / v[0], "visible_max_of_two": v[2] / v[0]}
            for k, v in sorted(counts.items())
        },
    }


def run(games: Sequence[str], steps: int, seed: int = 0, out: Path | None = None) -> dict[str, Any]:
    """Measure every game; write flicker.json / .md / .png when ``out``."""
    from tqdm import tqdm

    rows = [measure_game(g, steps, seed) for g in tqdm(games, desc="flicker", unit="game")]
    result = {"steps": steps, "rows": rows}
    if out is not None:
        table = markdown_table(
            ["game", "true objects", "visible, last frame", "visible, max of last two", "gain"],
            [
                (r["game"], r["objects"], r["visible_last_frame"], r["visible_max_of_two"],
                 None if r["objects"] == 0 else r["visible_max_of_two"] - r["visible_last_frame"])
                for r in rows
            ],
        )  # fmt: skip
        cats = markdown_table(
            ["game", "category", "true objects", "visible, last frame", "visible, max of last two"],
            [
                (r["game"], k, v["objects"], v["visible_last_frame"], v["visible_max_of_two"])
                for r in rows
                for k, v in r["per_category"].items()
            ],
        )
        body = (
            f"{steps} random-action env steps (4 emulator frames each) per game; true objects from "
            "OCAtari RAM mode (HUD off) at the last frame of each step. Visible: some pixel in the "
            "object's box differs from the most common colour of a 2-pixel ring around it. The "
            "share bounds any detector's recall on those frames.\n\n"
            f"{table}\n\n## Per category\n\n{cats}\n\n![visible share](flicker.png)\n"
        )
        measured = [r for r in rows if r["objects"]]
        bar_plot(
            out / "flicker.png",
            [f"{r['game']} {k}" for r in measured for k in ("last", "max2")],
            [r[f] for r in measured for f in ("visible_last_frame", "visible_max_of_two")],
            "share of true objects visible",
            "Objects visible in the last frame vs the max of the last two",
        )
        write_results(out, "flicker", result, body, "Flicker")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench flicker",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--games", nargs="+", default=list(DEFAULT_GAMES), help="games to measure")
    p.add_argument("--steps", type=int, default=600, help="env steps per game")
    args = p.parse_args(argv)
    steps = 40 if args.quick else args.steps
    result = run(args.games, steps, args.seed, args.out)
    for r in result["rows"]:
        print(f"{r['game']:<14} {r['objects']:>6} objects  last frame {r['visible_last_frame']}  max of two {r['visible_max_of_two']}")
    return result


if __name__ == "__main__":
    main()
