"""``moc-envs hud``: fit a game's HUD reader from gameplay and RAM, and ship it in a weights folder.

    moc-envs hud --game Seaquest --weights weights/Seaquest

Plays the game four times (:mod:`trainers.hud.data`): two fitting plays (seeds ``seed`` and
``seed + 1``, random held actions and the game's scripted policy) and two held-out ones (``seed +
2`` and ``seed + 3``, the same policies, half as long) that choose each label's rule
(:mod:`trainers.hud.fit`). Writes ``hud.json`` and ``hud.safetensors`` into the weights folder
(:mod:`moc_envs.hud.reader`), records them in its manifest, and prints each label's held-out
readings. The env then adds the labels to ``info["labels"]``; ``moc-envs bench hud`` measures
them on seeds never fitted on.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.games import get_game
from moc_envs.hud.reader import HUD_FILE, HUD_JSON, HudReader, save_hud
from moc_envs.weights.manifest import refresh_manifest
from trainers.hud.data import (
    PlayPolicy,
    cut_boxes,
    cut_fields,
    field_boxes,
    hud_labels,
    record_play,
)
from trainers.hud.fit import fit_hud

__all__ = ["Args", "fit_game", "write_reader", "to_markdown", "main"]


@dataclass
class Args:
    """Arguments of ``moc-envs hud``."""

    game: str
    """game name, e.g. Seaquest"""
    weights: str | None = None
    """weights folder to write hud.json and hud.safetensors into (None: fit and print only)"""
    steps: int = 3000
    """steps of each fitting play; the held-out plays are half as long"""
    seed: int = 0
    """seed of the first play; the others use seed + 1, + 2, + 3"""
    min_glyph: int = 3
    """times a glyph must be seen to join the alphabet"""
    wrong_cost: float = 4.0
    """a wrong held-out reading costs this many right ones when choosing a label's rule"""


def _policies(game: str) -> tuple[PlayPolicy, PlayPolicy]:
    from trainers.data.scripted import SCRIPTED

    # The scripted policy scores more, so the HUD shows more values; random play where there is none.
    return ("held", "scripted" if game in SCRIPTED else "held")


def fit_game(args: Args, log: Any = print) -> tuple[HudReader | None, dict[str, Any]]:
    """Record the plays and fit the reader (module docstring); the reader and the fit's report."""
    spec = get_game(args.game)
    if not hud_labels(spec):
        raise ValueError(f"{spec.name} has no HUD labels to read")
    if args.steps < 2:
        raise ValueError(f"steps must be >= 2, got {args.steps}")
    random.seed(args.seed)
    np.random.seed(args.seed)
    start = time.time()
    first, second = _policies(spec.name)
    fit = [record_play(spec, args.steps, args.seed, first), record_play(spec, args.steps, args.seed + 1, second)]
    held = [record_play(spec, args.steps // 2, args.seed + 2, first), record_play(spec, args.steps // 2, args.seed + 3, second)]
    cores = field_boxes(fit + held)
    cuts = cut_boxes(cores)
    for play in fit + held:
        cut_fields(play, cuts)
    log(f"{spec.name}: played {2 * args.steps + 2 * (args.steps // 2)} steps in {time.time() - start:.0f} s")
    reader, report = fit_hud(spec, fit, held, cores, cuts, min_glyph=args.min_glyph, wrong_cost=args.wrong_cost, log=log)
    if reader is not None:
        reader.info = {
            "fit": {"steps": args.steps, "held_out_steps": args.steps // 2, "seeds": [args.seed + i for i in range(4)],
                    "policies": [first, second, first, second], "min_glyph": args.min_glyph, "wrong_cost": args.wrong_cost},
            "labels": {lab: {k: v for k, v in row.items() if k != "candidates"} for lab, row in report.items()},
        }  # fmt: skip
    return reader, report


def write_reader(reader: HudReader, weights: str | Path) -> Path:
    """Write ``hud.json`` and ``hud.safetensors`` into ``weights`` and record them in its manifest."""
    path = save_hud(reader, weights)
    refresh_manifest(Path(weights), reader.game, [HUD_JSON, HUD_FILE])
    return path


def _f(v: Any) -> str:
    return "-" if not isinstance(v, int | float) or v != v else f"{v:.3f}"


def to_markdown(report: dict[str, Any]) -> str:
    """Each label's rule and its held-out readings."""
    lines = ["| label | rule | held-out steps | given | exact where given |", "|---|---|---|---|---|"]
    for lab, row in report.items():
        held = row.get("held_out")
        if held is None:
            lines.append(f"| {lab} | {row.get('decision', '-')} | - | - | - |")
        else:
            lines.append(f"| {lab} | {row['kind']} | {held['steps']} | {held['given']} | {_f(held['exact'])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> HudReader | None:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs hud",
        description="Fit a game's HUD reader (scores, lives, clocks, bars) from gameplay and RAM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. Seaquest")
    p.add_argument("--weights", default=None, help="weights folder to write hud.json and hud.safetensors into (omit: fit and print only)")
    p.add_argument("--steps", type=int, default=Args.steps, help="steps of each fitting play; the held-out plays are half as long")
    p.add_argument("--seed", type=int, default=Args.seed, help="seed of the first play; the others use seed + 1, + 2, + 3")
    p.add_argument("--min-glyph", type=int, default=Args.min_glyph, help="times a glyph must be seen to join the alphabet")
    p.add_argument("--wrong-cost", type=float, default=Args.wrong_cost, help="a wrong held-out reading costs this many right ones")
    ns = p.parse_args(argv)
    args = Args(ns.game, ns.weights, ns.steps, ns.seed, ns.min_glyph, ns.wrong_cost)
    reader, report = fit_game(args)
    print(to_markdown(report))
    if reader is None:
        print(f"{args.game}: no HUD label could be read; nothing written")
    elif args.weights is not None:
        print(f"wrote {write_reader(reader, args.weights)}")
    return reader


if __name__ == "__main__":
    main()
