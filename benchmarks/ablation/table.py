"""``moc-envs bench ablation``: SPACE vs SPACE + motion vs SPACE + motion + object continuity.

MOC's ablation (spec section 7) on our model, at one fixed CPU budget for every cell: for each game
and seed, three detectors trained on the same dataset with the same schedule, which differ only in
the loss (``--ablation space``: no motion, no continuity; ``space_m``: + the motion loss;
``space_moc``: + object continuity, what ships). Each is scored on the dataset's test split by
``moc-envs evaluate``: F1 on every object and on moving objects (relative criterion), AP (mean over
IoU 0.1 to 0.9), few-shot ridge accuracy of z_what with 1 / 4 / 16 / 64 labels per category and the
AMI of a KMeans clustering of z_what, twice: at the truth boxes (each object cropped where it is
and encoded by the run's glimpse encoder, so every model is scored on the same objects, whether its
z_pres finds them or not) and, as the spec's protocol has it, over the predictions that overlap a
truth box (IoU > 0; their number: z_what samples; nothing to score when a model predicts no box on
objects of two categories). The tables give mean and spread (std) over seeds.

The scores are of the SPACE+MOC model each loss trains, before distillation: the lean encoder a
weights folder ships is distilled to reproduce that model's posteriors, so the loss acts there.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ablation.runs import DATASET_SPLITS, AblationRun, plan, run_all
from benchmarks.common import _pyplot, _save_figure, add_common_args, markdown_table, write_results
from trainers.detector.config import ABLATIONS

__all__ = ["METRICS", "scores_of", "summarise", "run", "main"]

DEFAULT_GAMES = ("Pong", "Boxing", "SpaceInvaders")
METRICS: tuple[tuple[str, str], ...] = (
    ("f1_all", "F1 all"),
    ("f1_moving", "F1 moving"),
    ("ap", "AP"),
    ("few_shot_1", "few-shot 1"),
    ("few_shot_4", "few-shot 4"),
    ("few_shot_16", "few-shot 16"),
    ("few_shot_64", "few-shot 64"),
    ("ami", "AMI"),
    ("samples", "z_what samples"),
    ("truth_few_shot_1", "few-shot 1"),
    ("truth_few_shot_4", "few-shot 4"),
    ("truth_few_shot_16", "few-shot 16"),
    ("truth_few_shot_64", "few-shot 64"),
    ("truth_ami", "AMI"),
)
"""Each figure of a run: key, column title (``truth_``: z_what at the truth boxes)."""

DETECTION_COLUMNS = ("f1_all", "f1_moving", "ap")
TRUTH_COLUMNS = ("truth_few_shot_1", "truth_few_shot_4", "truth_few_shot_16", "truth_few_shot_64", "truth_ami")
PREDICTION_COLUMNS = ("few_shot_1", "few_shot_4", "few_shot_16", "few_shot_64", "ami", "samples")

VARIANT_NAMES = {"space": "SPACE", "space_m": "SPACE + motion", "space_moc": "SPACE + motion + continuity (MOC)"}


def scores_of(eval_json: dict[str, Any]) -> dict[str, float | None]:
    """The ablation's figures from one ``moc-envs evaluate`` result (None where nothing was scored:
    few-shot and AMI need boxes on at least two categories)."""
    raw = eval_json["detector"]["raw"]
    out: dict[str, float | None] = {
        "f1_all": raw["all"]["relative"]["f1"],
        "f1_moving": raw["moving"]["relative"]["f1"],
        "ap": raw["all"]["ap"]["mean"],
    }
    latent = eval_json.get("latent", {})
    out.update(_latent_scores(latent, ""))
    out["samples"] = float(latent.get("samples", 0))
    truth = eval_json.get("latent_truth")  # absent from evaluations written before it existed
    if truth is not None:
        out.update(_latent_scores(truth, "truth_"))
    return out


def _latent_scores(latent: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Few-shot means and the KMeans AMI of one latent report, keys prefixed with ``prefix``."""
    few = latent.get("few_shot_ridge", {})
    out: dict[str, float | None] = {f"{prefix}few_shot_{n}": few.get(str(n), {}).get("mean") for n in (1, 4, 16, 64)}
    out[f"{prefix}ami"] = latent.get("kmeans", {}).get("ami")
    return out


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every figure, per game and variant (seeds counted per cell)."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["game"], r["ablation"]), []).append(r)
    out = []
    for (game, ablation), rs in cells.items():
        cell: dict[str, Any] = {"game": game, "ablation": ablation, "seeds": sorted(r["seed"] for r in rs)}
        for key, _ in METRICS:
            vals = [r["scores"][key] for r in rs if r["scores"].get(key) is not None]
            cell[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)} if vals else None
        out.append(cell)
    order = {a: i for i, a in enumerate(ABLATIONS)}
    return sorted(out, key=lambda c: (c["game"], order.get(c["ablation"], 99)))


def _cell(stat: dict[str, float] | None, digits: int = 3) -> str:
    return "n/a" if stat is None else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _verdicts(cells: Sequence[dict[str, Any]]) -> list[str]:
    """Per game and figure: does each part help (mean up by more than the larger spread)?"""
    lines = []
    by_game: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells:
        by_game.setdefault(c["game"], {})[c["ablation"]] = c
    for game, cs in by_game.items():
        parts = []
        for a, b, what in (("space", "space_m", "motion"), ("space_m", "space_moc", "continuity")):
            if a not in cs or b not in cs:
                continue
            for key, title in (("f1_all", "F1"), ("truth_few_shot_1", "few-shot 1 at the truth"),
                               ("truth_ami", "AMI at the truth"), ("few_shot_1", "few-shot 1 of predictions"),
                               ("ami", "AMI of predictions")):  # fmt: skip
                x, y = cs[a].get(key), cs[b].get(key)
                if x is None or y is None:
                    continue
                diff = y["mean"] - x["mean"]
                noise = max(x["std"], y["std"])
                word = "helps" if diff > noise else "hurts" if -diff > noise else "no clear change"
                parts.append(f"{what} on {title}: {word} ({diff:+.3f}, spread {noise:.3f})")
        lines.append(f"- **{game}**: " + "; ".join(parts))
    return lines


def _plot(cells: Sequence[dict[str, Any]], path: Path) -> Path:
    plt = _pyplot()
    games = list(dict.fromkeys(c["game"] for c in cells))
    keys = [("f1_all", "F1 all"), ("truth_few_shot_1", "few-shot 1 at the truth boxes"), ("truth_ami", "AMI at the truth boxes")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8))
    width = 0.8 / len(ABLATIONS)
    for ax, (key, title) in zip(np.atleast_1d(axes), keys, strict=True):
        for j, ablation in enumerate(ABLATIONS):
            means, stds = [], []
            for g in games:
                stat = next((c[key] for c in cells if c["game"] == g and c["ablation"] == ablation), None)
                means.append(stat["mean"] if stat else np.nan)
                stds.append(stat["std"] if stat else 0.0)
            x = np.arange(len(games)) + (j - 1) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=VARIANT_NAMES[ablation])
        ax.set_xticks(np.arange(len(games)), games)
        ax.set_title(title)
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper left")
    return _save_figure(plt, fig, path)


def _write(result: dict[str, Any], out: Path) -> None:
    cells = result["cells"]
    titles = dict(METRICS)

    def table(keys: Sequence[str]) -> str:
        return markdown_table(
            ["game", "variant", "seeds", *(titles[k] for k in keys)],
            [(c["game"], VARIANT_NAMES[c["ablation"]], len(c["seeds"]), *(_cell(c.get(k), 0 if k == "samples" else 3) for k in keys))
             for c in cells],
        )  # fmt: skip

    missing = result["missing"]
    body = (
        f"{__doc__.split(chr(10) + chr(10), 1)[1].strip()}\n\n"
        f"Budget per run: {result['steps']} optimisation steps of the `cpu` preset (4 stacks of 4 frames a step, annealing "
        f"scaled to the steps), torch {result['threads']} thread(s), CPU; dataset per game: random play, "
        f"{DATASET_SPLITS['train']} / {DATASET_SPLITS['val']} / {DATASET_SPLITS['test']} stacks (train / val / test), "
        f"seed 0; seeds {', '.join(map(str, result['seeds']))}. Command: `{result['command']}`.\n\n"
        "### Detection and z_what at the truth boxes\n\n"
        f"{table([*DETECTION_COLUMNS, *TRUTH_COLUMNS])}\n\n"
        "### z_what of the predictions (the spec's protocol)\n\n"
        "n/a: nothing to score (the model's boxes overlap objects of fewer than two categories).\n\n"
        f"{table(PREDICTION_COLUMNS)}\n\n"
        "What each part does here (a change counts when the means differ by more than the larger std):\n\n"
        + "\n".join(_verdicts(cells))
        + ("\n\nNot run yet: " + ", ".join(missing) if missing else "")
        + "\n\n![ablation](ablation.png)\n"
    )
    _plot(cells, out / "ablation.png")
    write_results(out, "ablation", result, body, "MOC ablation")


def _recorded(out: Path | None, steps: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The rows of an earlier ``ablation.json`` in ``out`` at the same ``steps``, by (game, variant,
    seed): cells scored in an earlier session whose run folder (not kept in git) is gone."""
    path = out / "ablation.json" if out is not None else None
    if path is None or not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    if doc.get("steps") != steps:
        return {}
    # A row scored before the truth-box figures existed is trained and scored again.
    return {(r["game"], r["ablation"], int(r["seed"])): r for r in doc.get("rows", []) if "truth_ami" in r.get("scores", {})}


def run(games: Sequence[str], seeds: Sequence[int], steps: int, runs: Path, data: Path, jobs: int, threads: int,
        out: Path | None, command: str = "", train: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train and score every missing run (``train`` False: none), then gather every finished one; the
    files when ``out`` is set.

    A cell already in ``out``'s ``ablation.json`` (same steps) is kept from there and not trained
    again, so a benchmark cut short goes on in a later session from what was committed."""
    from tqdm import tqdm

    recorded = _recorded(out, steps)
    todo = plan(games, seeds, steps, runs)

    def kept(r: AblationRun) -> bool:
        return r.done() or (r.game, r.ablation, r.seed) in recorded

    bar = tqdm(total=len(todo), desc="ablation", unit="run", initial=sum(kept(r) for r in todo))

    def on_done(r: AblationRun, err: BaseException | None) -> None:
        bar.update(1)
        if err is not None:
            tqdm.write(f"{r.game} {r.ablation} seed {r.seed}: {err}")

    failures = run_all([r for r in todo if not kept(r)], data, jobs, threads, on_done) if train else []
    bar.close()
    rows = []
    for r in todo:
        if r.done():
            rows.append({"game": r.game, "ablation": r.ablation, "seed": r.seed, "run": str(r.folder),
                         "scores": scores_of(json.loads(r.eval_path.read_text()))})  # fmt: skip
        elif (r.game, r.ablation, r.seed) in recorded:
            rows.append(recorded[(r.game, r.ablation, r.seed)])
    result = {
        "games": list(games), "seeds": list(seeds), "steps": steps, "threads": threads, "command": command,
        "rows": rows, "cells": summarise(rows),
        "missing": [f"{r.game}/{r.ablation}/seed{r.seed}" for r in todo if not kept(r)],
        "failures": [str(e) for e in failures],
    }  # fmt: skip
    if out is not None and rows:
        _write(result, out)
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench ablation", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    add_common_args(p)
    p.add_argument("--games", nargs="+", default=list(DEFAULT_GAMES), help="games")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps per run")
    p.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="folder of the runs (checkpoints, logs)")
    p.add_argument("--data", type=Path, default=Path("data/ablation"), help="folder of the games' datasets")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (each with --threads torch threads)")
    p.add_argument("--gather-only", action="store_true", help="write the table from the runs finished so far; train none")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 4, args.seeds[:1]
    command = "moc-envs bench ablation " + " ".join(
        [f"--games {' '.join(args.games)}", f"--seeds {' '.join(map(str, args.seeds))}", f"--steps {args.steps}",
         f"--jobs {args.jobs}", f"--threads {args.threads}"]
    )  # fmt: skip
    result = run(args.games, args.seeds, args.steps, args.runs, args.data, args.jobs, args.threads, args.out, command,
                 train=not args.gather_only)
    for c in result["cells"]:
        print(f"{c['game']:<14} {c['ablation']:<10} seeds {len(c['seeds'])}  F1 {_cell(c['f1_all'])}  "
              f"few-shot 1 {_cell(c['few_shot_1'])}  AMI {_cell(c['ami'])}")  # fmt: skip
    if result["failures"]:
        raise SystemExit(f"{len(result['failures'])} run(s) failed: " + "; ".join(result["failures"]))
    return result


if __name__ == "__main__":
    main()
