"""``moc-envs readouts``: fit a game's readouts from play and ship them in its weights folder.

    moc-envs readouts --game SpaceInvaders --weights weights/SpaceInvaders

Plays the learned env twice (:func:`trainers.readouts.data.collect_steps`: random actions held
for a few steps; seed ``seed`` to fit, ``seed + 1`` to score), fits every readout the game's plan
names (:mod:`trainers.readouts.plans`) on the first play with its RAM as the teacher, and scores
each label on the second: the share of steps it is given, and where given, exact / within 1 /
within 5 of the RAM byte, and right (positions within 5, everything else exact). Writes
``readouts.json`` (:mod:`moc_envs.readouts.registry`) with those scores into the folder and records it
in the manifest. ``moc-envs bench labels`` measures every label of ``info["labels"]`` on seeds
never fitted on.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.games import GameSpec, get_game
from moc_envs.readouts.registry import READOUTS_JSON, ReadoutSet, save_readouts
from moc_envs.threads import add_threads_argument, set_torch_threads
from moc_envs.weights.manifest import refresh_manifest
from trainers.readouts.data import Episode, collect_steps
from trainers.readouts.plans import plan

__all__ = ["POSITION_KINDS", "fit_readouts", "score_readouts", "to_markdown", "main"]

POSITION_KINDS = frozenset(("agent", "other", "small"))
"""AtariARI label kinds that are positions: right within 5 of the byte (the rest must be exact)."""


def score_readouts(spec: GameSpec, readouts: ReadoutSet, episodes: Sequence[Episode]) -> dict[str, dict[str, Any]]:
    """Per label: steps, share given, and where given exact / within 1 / within 5 / right."""
    kinds = {lab.name: lab.kind for lab in spec.ram_labels}
    errors: dict[str, list[int]] = {lab: [] for lab in readouts.labels}
    steps = 0
    for episode in episodes:
        readouts.reset()
        for s in episode:
            steps += 1
            for lab, value in readouts.read(s.objects, s.frame).items():
                errors[lab].append(int(value) - int(s.truth[lab]))
    report: dict[str, dict[str, Any]] = {}
    for lab, errs in errors.items():
        e = np.abs(np.array(errs, dtype=np.int64))
        tol = 5 if kinds[lab] in POSITION_KINDS else 0
        given = len(e)
        report[lab] = {
            "steps": steps, "given": given / steps if steps else 0.0,
            "exact": float(np.mean(e == 0)) if given else None,
            "within_1": float(np.mean(e <= 1)) if given else None,
            "within_5": float(np.mean(e <= 5)) if given else None,
            "right": float(np.mean(e <= tol)) if given else None,
            "tolerance": tol,
        }  # fmt: skip
    readouts.reset()
    return report


def fit_readouts(
    game: str, weights: str | Path, steps: int, seed: int, threads: int | None = 1, progress: bool = True
) -> tuple[ReadoutSet, dict[str, dict[str, Any]]]:
    """Fit the game's planned readouts on one play and score them on another (module docstring)."""
    spec = get_game(game)
    fitters = plan(spec.name)
    fit = collect_steps(spec, weights, steps, seed, threads=threads, progress=progress)
    held = collect_steps(spec, weights, steps, seed + 1, threads=threads, progress=progress)
    readouts = ReadoutSet(spec, [r for fitter in fitters for r in fitter(spec, fit)])
    report = score_readouts(spec, readouts, held)
    readouts.info = {"fit": {"steps": steps, "seed": seed, "policy": "random actions held 4-16 steps"},
                     "held_out": {"steps": steps, "seed": seed + 1, "labels": report}}  # fmt: skip
    return readouts, report


def _f(v: Any) -> str:
    return "-" if not isinstance(v, int | float) else f"{v:.3f}"


def to_markdown(report: dict[str, dict[str, Any]]) -> str:
    """One row per label of its held-out scores."""
    lines = ["| label | given | exact | within 1 | within 5 | right (tolerance) |", "|---|---|---|---|---|---|"]
    for lab, r in report.items():
        lines.append(
            f"| {lab} | {_f(r['given'])} | {_f(r['exact'])} | {_f(r['within_1'])} | {_f(r['within_5'])} | "
            f"{_f(r['right'])} ({r['tolerance']}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> ReadoutSet:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs readouts",
        description="Fit a game's readouts (counts, identities, headings, brick walls) from play and RAM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. SpaceInvaders")
    p.add_argument("--weights", required=True, default=argparse.SUPPRESS, help="the game's weights folder (its detector plays; readouts.json goes there)")
    p.add_argument("--steps", type=int, default=3000, help="steps of the fitting play and of the held-out play")
    p.add_argument("--seed", type=int, default=0, help="seed of the fitting play; the held-out play uses seed + 1")
    p.add_argument("--dry-run", action="store_true", help="fit and print only; write nothing")
    add_threads_argument(p)
    ns = p.parse_args(argv)
    try:
        plan(get_game(ns.game).name)
    except ValueError as err:  # a game without readouts: say so, before any play
        p.error(str(err))
    set_torch_threads(ns.threads)
    readouts, report = fit_readouts(ns.game, ns.weights, ns.steps, ns.seed, threads=ns.threads)
    print(to_markdown(report))
    if not ns.dry_run:
        path = save_readouts(readouts, ns.weights)
        refresh_manifest(Path(ns.weights), readouts.game, [READOUTS_JSON])
        print(f"wrote {path}")
    return readouts


if __name__ == "__main__":
    main()
