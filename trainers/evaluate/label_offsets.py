"""Label calibration: fit each label link's offset to a learned detector's own boxes.

    moc-envs label-offsets --game Boxing --weights weights/Boxing

A game's label links (:class:`moc_envs.games.LabelLink`) turn a box into an AtariARI RAM value
with offsets read off OCAtari's RAM-mode boxes. A learned detector's pixel-tight box can start a
pixel before or after OCAtari's (Boxing's black boxer: its labels sat 1 px low in the probe), so
every estimate is off by a constant. This plays the learned env (random actions, RAM labels on)
twice with different seeds: on the first run it picks, per label, the whole-number offset and the
half-pixel one that make the most estimates equal to the RAM byte; on the second (held-out) run it
scores the game's offset and both fitted ones, keeps the half-pixel one only where it beats the
whole one there, and the fitted one only where it beats the game's (more exact, or as many exact
and more within 2). Labels are read as the env reads them: from the boxes
the observation shows (each in its slot), rounded and wrapped by the label link. A label whose
link has a ``frame_error`` cannot be exact on every step whatever the offset (the frame does not
resolve its byte); its row says so. The chosen offsets go to the folder's
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

from moc_envs.games import GameSpec, LabelLink, get_game
from moc_envs.perception.labels import (
    LABELS_FILE,
    LABELS_FORMAT,
    link_box,
    link_value,
    round_labels,
)
from moc_envs.threads import add_threads_argument, set_torch_threads
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.manifest import refresh_manifest
from moc_envs.weights.safe_read import finite_for_json

__all__ = ["collect_link_values", "label_scores", "fit_offset", "choose_offset", "calibrate", "write_labels", "to_markdown", "main"]

SEARCH = 3
"""Offsets tried on each side of the median residual, in half-pixel steps."""


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
    (float, RAM scale, not wrapped) and the RAM byte of the same step, over the steps where the
    observation showed the box (the box the env's ``info["labels"]`` reads)."""
    from moc_envs.envs.make import make_vec

    spec = game if isinstance(game, GameSpec) else get_game(game)
    if not spec.label_links:
        raise ValueError(f"{spec.name} has no label links: info['labels'] estimates nothing to calibrate")
    if steps < num_envs:
        raise ValueError(f"steps must be at least num_envs ({num_envs}), got {steps}")
    links = [replace(link, offset=0.0) for link in spec.label_links]
    raw: dict[str, list[float]] = {link.label: [] for link in links}
    ram: dict[str, list[int]] = {link.label: [] for link in links}
    # The frames too: a link with ``mirror`` reads which way its sprite faces from them.
    env = make_vec(
        f"MOC/{spec.name}-v0", num_envs, detector="space", weights=weights, ram_labels=True,
        repeat_action_probability=0.0, threads=threads, device=device, obs_mode="objects+frame",
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    n_actions = int(env.single_action_space.n)
    try:
        obs, infos = env.reset(seed=seed)
        for _ in tqdm(range(steps // num_envs), desc=f"{spec.name} labels (seed {seed})", unit="step", disable=not progress):
            for i, dets in enumerate(infos["objects"]):
                for link in links:
                    box = link_box(link, dets, spec.slot_ranges)
                    if box is not None:
                        raw[link.label].append(link_value(link, box, obs["frame"][i], dets))
                        ram[link.label].append(int(infos["ram_labels"][link.label][i]))
            obs, _, _, _, infos = env.step(rng.integers(0, n_actions, size=num_envs))
    finally:
        env.close()
    return {lab: (np.asarray(raw[lab], np.float64), np.asarray(ram[lab], np.int64)) for lab in raw}


def _estimates(raw: np.ndarray, offset: float, wrap: int | None) -> np.ndarray:
    # As moc_envs.perception.labels.labels_from_detections: rounded, wrapped, clipped to a byte.
    return round_labels(np.asarray(raw, np.float64) + offset, wrap)


def label_scores(raw: np.ndarray, ram: np.ndarray, offset: float, wrap: int | None = None) -> dict[str, float]:
    """Samples, exact, within-1, -2 and -5 rates, MAE and median signed error (estimate - RAM) of
    ``offset``; ``wrap``: the link's (estimates taken modulo it)."""
    keys = ("exact", "within_1", "within_2", "within_5", "mae", "median_error")
    if len(raw) == 0:
        return {"samples": 0, **{k: float("nan") for k in keys}}
    err = _estimates(raw, offset, wrap) - np.asarray(ram, np.int64)
    return {
        "samples": int(len(raw)),
        "exact": float((err == 0).mean()),
        "within_1": float((np.abs(err) <= 1).mean()),
        "within_2": float((np.abs(err) <= 2).mean()),
        "within_5": float((np.abs(err) <= 5).mean()),
        "mae": float(np.abs(err).mean()),
        "median_error": float(np.median(err)),
    }


def fit_offset(raw: np.ndarray, ram: np.ndarray, wrap: int | None = None, step: float = 0.5) -> float:
    """The offset, in steps of ``step`` pixels (0.5 or 1), that makes the most estimates exact
    (ties: more within 2, then a whole number, then the one nearest the median residual).

    With boxes on whole pixels a half offset is a parity rule: halves round to even, so it adds
    its lower whole neighbour to pixels of one parity and its upper one to the other. That fits
    a game that draws an object on every other row (Pong's enemy paddle), and can also fit
    chance; :func:`calibrate` keeps it only where it beats the best whole offset held out.
    """
    if len(raw) == 0:
        raise ValueError("no samples to fit an offset on")
    if step not in (0.5, 1.0):
        raise ValueError(f"step must be 0.5 or 1.0 pixels, got {step!r}")
    residual = np.asarray(ram, np.float64) - raw
    if wrap is not None:
        # A sprite read across the screen edge is off by the period, not by its offset.
        residual = (residual + wrap / 2) % wrap - wrap / 2
    centre = float(np.median(residual))
    candidates = np.arange(round(centre) - SEARCH, round(centre) + SEARCH + step / 2, step)

    def key(c: float) -> tuple[float, float, bool, float]:
        s = label_scores(raw, ram, c, wrap)
        return (s["exact"], s["within_2"], c == round(c), -abs(c - centre))

    return float(max(candidates, key=key))


def choose_offset(
    link: LabelLink,
    fit: tuple[np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray],
    min_samples: int = 200,
) -> dict[str, Any]:
    """One label's row of ``labels.json``: the offset fitted on ``fit`` and judged on ``held``
    (each the raw values and RAM bytes of :func:`collect_link_values`).

    The best whole offset and the best half-pixel one are fitted; held out, the half one must
    beat the whole one, and the fitted one the game's (more exact, or as many and more within
    2). ``offset`` is left out when either run has fewer than ``min_samples`` values.
    """
    (f_raw, f_ram), (h_raw, h_ram) = fit, held
    row: dict[str, Any] = {"game_offset": float(link.offset), "fit_samples": int(len(f_raw))}
    if link.frame_error:
        row["frame_error"] = link.frame_error
    if len(f_raw) < min_samples or len(h_raw) < min_samples:
        row["decision"] = f"game's offset kept: fewer than {min_samples} samples (object seldom found)"
        row["held_out"] = {"game": label_scores(h_raw, h_ram, link.offset, link.wrap)}
        return row
    whole = fit_offset(f_raw, f_ram, link.wrap, step=1.0)
    half = fit_offset(f_raw, f_ram, link.wrap, step=0.5)
    held_scores = {c: label_scores(h_raw, h_ram, c, link.wrap) for c in (float(link.offset), whole, half)}
    rank = {c: (sc["exact"], sc["within_2"]) for c, sc in held_scores.items()}
    fitted = half if rank[half] > rank[whole] else whole
    better = rank[fitted] > rank[float(link.offset)]
    row.update(
        fitted_offset=fitted,
        fitted_whole=whole,
        fitted_half=half,
        offset=fitted if better else float(link.offset),
        held_out={"game": held_scores[float(link.offset)], "fitted": held_scores[fitted]},
        decision="fitted" if better else ("same as the game's" if fitted == link.offset else "game's offset kept: fitted not better held out"),
    )
    return row


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
        rows[link.label] = row = choose_offset(link, fit[link.label], held[link.label], min_samples)
        if "offset" in row:
            offsets[link.label] = row["offset"]
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
    """The held-out table: each label with the game's offset and the fitted one (frame error: the
    most the frame lets any estimate promise, from the label link)."""
    lines = [
        f"Held-out run (seed {result['fit']['seeds']['held_out']}, {result['fit']['steps']} steps, random actions):",
        "",
        "| label | game offset | fitted | kept | samples | exact (game -> kept) | within 1 | within 2 | within 5 "
        "| median error | frame error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lab, row in result["labels"].items():
        g = row["held_out"]["game"]
        k = row["held_out"]["fitted"] if row.get("decision") == "fitted" else g
        lines.append(
            f"| {lab} | {row['game_offset']:g} | {row.get('fitted_offset', '-')} | {row.get('offset', row['game_offset']):g} | "
            f"{g['samples']} | {_f(g['exact'])} -> {_f(k['exact'])} | {_f(g['within_1'])} -> {_f(k['within_1'])} | "
            f"{_f(g['within_2'])} -> {_f(k['within_2'])} | {_f(g['within_5'])} -> {_f(k['within_5'])} | "
            f"{g['median_error']:g} -> {k['median_error']:g} | {row.get('frame_error', 0)} |"
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
