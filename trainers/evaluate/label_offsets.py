"""Label calibration: fit each label link's offset to a learned detector's own boxes.

    moc-envs label-offsets --game Boxing --weights weights/Boxing

A game's label links (:class:`moc_envs.games.LabelLink`) turn a box into an AtariARI RAM value
with offsets read off OCAtari's RAM-mode boxes. A learned detector's pixel-tight box can start a
pixel before or after OCAtari's (Boxing's black boxer: its labels sat 1 px low in the probe), so
every estimate is off by a constant. This plays the learned env (random actions, RAM labels on)
twice with different seeds: on the first run it picks, per label, the whole-number offset that
makes the most estimates equal to the RAM byte; on the second (held-out) run it scores the game's
offset and the fitted one, and keeps the fitted one only where it is at least as good there
(more exact, or as many exact and more within 2). The chosen offsets go to the folder's
``labels.json`` (JSON, listed in its manifest); the env applies them to ``info["labels"]``
(:func:`moc_envs.perception.detectors.label_spec`). The RAM oracle keeps the game's offsets.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from moc_envs.games import GameSpec, get_game
from moc_envs.perception.labels import LABELS_FILE, LABELS_FORMAT, link_box, link_value
from moc_envs.threads import add_threads_argument, set_torch_threads
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.manifest import refresh_manifest
from moc_envs.weights.safe_read import finite_for_json

__all__ = ["collect_link_values", "label_scores", "fit_offset", "calibrate", "write_labels", "to_markdown", "main"]

SEARCH = 3
"""Whole-number offsets tried on each side of the median residual."""


def collect_link_values(
    game: str | GameSpec,
    weights: str | Path,
    steps: int,
    seed: int,
    num_envs: int = 8,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Play random actions in the learned env; per label link, the value its box gives with offset 0
    (float, RAM scale) and the RAM byte of the same step, over the steps where the box was found."""
    from moc_envs.envs.make import make_vec

    spec = game if isinstance(game, GameSpec) else get_game(game)
    if not spec.label_links:
        raise ValueError(f"{spec.name} has no label links: info['labels'] estimates nothing to calibrate")
    if steps < num_envs:
        raise ValueError(f"steps must be at least num_envs ({num_envs}), got {steps}")
    links = [replace(link, offset=0.0) for link in spec.label_links]
    raw: dict[str, list[float]] = {link.label: [] for link in links}
    ram: dict[str, list[int]] = {link.label: [] for link in links}
    env = make_vec(
        f"MOC/{spec.name}-v0", num_envs, detector="space", weights=weights, ram_labels=True,
        repeat_action_probability=0.0, threads=threads, device=device,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    n_actions = int(env.single_action_space.n)
    try:
        _, infos = env.reset(seed=seed)
        for _ in tqdm(range(steps // num_envs), desc=f"{spec.name} labels (seed {seed})", unit="step", disable=not progress):
            for i, dets in enumerate(infos["objects"]):
                for link in links:
                    box = link_box(link, dets)
                    if box is not None:
                        raw[link.label].append(link_value(link, box))
                        ram[link.label].append(int(infos["ram_labels"][link.label][i]))
            _, _, _, _, infos = env.step(rng.integers(0, n_actions, size=num_envs))
    finally:
        env.close()
    return {lab: (np.asarray(raw[lab], np.float64), np.asarray(ram[lab], np.int64)) for lab in raw}


def _estimates(raw: np.ndarray, offset: float) -> np.ndarray:
    # As moc_envs.perception.labels.labels_from_detections: rounded, clipped to a byte.
    return np.clip(np.round(raw + offset), 0, 255)


def label_scores(raw: np.ndarray, ram: np.ndarray, offset: float) -> dict[str, float]:
    """Samples, exact and within-2 rates, MAE and median signed error (estimate - RAM) of ``offset``."""
    if len(raw) == 0:
        return {"samples": 0, "exact": float("nan"), "within_2": float("nan"), "mae": float("nan"), "median_error": float("nan")}
    err = _estimates(raw, offset) - ram
    return {
        "samples": int(len(raw)),
        "exact": float((err == 0).mean()),
        "within_2": float((np.abs(err) <= 2).mean()),
        "mae": float(np.abs(err).mean()),
        "median_error": float(np.median(err)),
    }


def fit_offset(raw: np.ndarray, ram: np.ndarray) -> float:
    """The whole-number offset that makes the most estimates exact (ties: more within 2, then the
    one nearest the median residual)."""
    if len(raw) == 0:
        raise ValueError("no samples to fit an offset on")
    centre = float(np.median(ram - raw))
    candidates = np.arange(round(centre) - SEARCH, round(centre) + SEARCH + 1, dtype=np.float64)

    def key(c: float) -> tuple[float, float, float]:
        s = label_scores(raw, ram, c)
        return (s["exact"], s["within_2"], -abs(c - centre))

    return float(max(candidates, key=key))


def calibrate(
    game: str,
    weights: str | Path,
    steps: int = 8000,
    seed: int = 0,
    num_envs: int = 8,
    min_samples: int = 200,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit on one run (``seed``), judge on another (``seed + 1``); the content of ``labels.json``."""
    spec = get_game(game)
    fit = collect_link_values(spec, weights, steps, seed, num_envs, threads, progress=progress)
    held = collect_link_values(spec, weights, steps, seed + 1, num_envs, threads, progress=progress)
    offsets: dict[str, float] = {}
    rows: dict[str, Any] = {}
    for link in spec.label_links:
        (f_raw, f_ram), (h_raw, h_ram) = fit[link.label], held[link.label]
        row: dict[str, Any] = {"game_offset": float(link.offset), "fit_samples": int(len(f_raw))}
        if len(f_raw) < min_samples or len(h_raw) < min_samples:
            row["decision"] = f"game's offset kept: fewer than {min_samples} samples (object seldom found)"
            row["held_out"] = {"game": label_scores(h_raw, h_ram, link.offset)}
            rows[link.label] = row
            continue
        fitted = fit_offset(f_raw, f_ram)
        before, after = label_scores(h_raw, h_ram, link.offset), label_scores(h_raw, h_ram, fitted)
        better = (after["exact"], after["within_2"]) > (before["exact"], before["within_2"])
        chosen = fitted if better else float(link.offset)
        offsets[link.label] = chosen
        row.update(
            fitted_offset=fitted,
            offset=chosen,
            held_out={"game": before, "fitted": after},
            decision="fitted" if better else ("same as the game's" if fitted == link.offset else "game's offset kept: fitted not better held out"),
        )
        rows[link.label] = row
    return {
        "format": LABELS_FORMAT,
        "game": spec.name,
        "offsets": offsets,
        "fit": {"steps": steps, "seeds": {"fit": seed, "held_out": seed + 1}, "num_envs": num_envs,
                "policy": "uniform random actions", "min_samples": min_samples},
        "labels": rows,
    }  # fmt: skip


def write_labels(result: dict[str, Any], weights: str | Path) -> Path:
    """Write ``labels.json`` into the weights folder atomically and refresh its manifest."""
    path = Path(weights) / LABELS_FILE
    # A rate over no held-out samples is NaN, which strict JSON (read_label_offsets) refuses.
    atomic_write_text(path, json.dumps(finite_for_json(result), indent=2, allow_nan=False) + "\n")
    refresh_manifest(Path(weights), result["game"], [LABELS_FILE])
    return path


def _f(v: float) -> str:
    return "-" if v != v else f"{v:.3f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The held-out table: each label with the game's offset and the fitted one."""
    lines = [
        f"Held-out run (seed {result['fit']['seeds']['held_out']}, {result['fit']['steps']} steps, random actions):",
        "",
        "| label | game offset | fitted | kept | samples | exact (game -> kept) | within 2 | median error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lab, row in result["labels"].items():
        g = row["held_out"]["game"]
        k = row["held_out"]["fitted"] if row.get("decision") == "fitted" else g
        lines.append(
            f"| {lab} | {row['game_offset']:g} | {row.get('fitted_offset', '-')} | {row.get('offset', row['game_offset']):g} | "
            f"{g['samples']} | {_f(g['exact'])} -> {_f(k['exact'])} | {_f(g['within_2'])} -> {_f(k['within_2'])} | "
            f"{g['median_error']:g} -> {k['median_error']:g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs label-offsets",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. Boxing")
    p.add_argument("--weights", required=True, default=argparse.SUPPRESS, help="weights folder of the learned detector")
    p.add_argument("--steps", type=int, default=8000, help="env steps of each run (fit, held out), over all envs")
    p.add_argument("--seed", type=int, default=0, help="seed of the fitting run; the held-out run uses seed + 1")
    p.add_argument("--num-envs", type=int, default=8, help="envs played at once")
    p.add_argument("--min-samples", type=int, default=200, help="fewer found boxes than this keep the game's offset")
    p.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    result = calibrate(args.game, args.weights, args.steps, args.seed, args.num_envs, args.min_samples, args.threads)
    print(to_markdown(result))
    if not args.dry_run:
        print(f"wrote {write_labels(result, args.weights)}")
    return result


if __name__ == "__main__":
    main()
