"""Every AtariARI label of ``info["labels"]`` against the RAM byte, per label and per game.

``moc-envs bench labels [--games ...] [--steps 1000] [--runs 2] [--seed 1000]``

Plays each game ``runs`` times for ``steps`` steps (random actions held for 4 to 16 steps, ALE
v5 with sticky actions 0.25; seeds ``seed``, ``seed + 1``, ...: every fitting command of the
labels uses seeds below 1000) in the learned env (the shipped weights folder: label links with
its fitted offsets, HUD reader, readouts) and in the RAM oracle env (``detector="ram"``: OCAtari's
RAM objects read by the same label links) on the same actions. Per label of the game's table
(AtariARI's; ours for Asterix and Carnival): where the estimate comes from (a label link, the
HUD reader, a readout, or nothing), the share of steps it is given, and where given the share
exact, within 1 and within 5 of the byte, and right (positions, AtariARI's kinds agent / other /
small, within 5; every other label exact). Per game: labels given, labels right on at least 90%
of the steps they are given, and whether that is at least 90% of the game's labels (issue 29's
target). Writes ``labels.json``, ``.md``, ``.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import bar_plot, markdown_table, write_results
from benchmarks.labels import DEFAULT_GAMES, play_parser

__all__ = ["DEFAULT_GAMES", "BAR", "label_sources", "play_labels", "score_label", "measure_game", "run", "main"]

BAR = 0.9
"""A label counts as right when right on this share of the steps it is given; a game meets the
target when this share of its labels do (issue 29)."""
POSITION_KINDS = frozenset(("agent", "other", "small"))


def label_sources(detector: Any, spec: Any) -> dict[str, str]:
    """Per RAM label of the game, what gives it in ``info["labels"]``: link, hud, readout or none."""
    from moc_envs.hud.reader import detector_hud
    from moc_envs.readouts.registry import detector_readouts

    hud, readouts = detector_hud(detector), detector_readouts(detector)
    links = set(spec.localization_labels)
    out = {}
    for lab in spec.ram_label_names:
        if lab in links:
            out[lab] = "link"
        elif hud is not None and lab in hud.labels:
            out[lab] = "hud"
        elif readouts is not None and lab in readouts.labels:
            out[lab] = "readout"
        else:
            out[lab] = "none"
    return out


def play_labels(
    game: str, detector: str, weights: Path | None, steps: int, seed: int, threads: int | None,
    distractors: str | None = None, bar_filter: bool = True,
) -> tuple[list[dict[str, int]], list[dict[str, int]], dict[str, str]]:
    """One play: per step, ``info["labels"]`` and ``info["ram_labels"]``; and each label's source.

    ``distractors``: bars on the frames (the env's keyword); ``bar_filter=False`` turns the
    learned detector's bar filter off (:class:`moc_envs.perception.distractors.BarFilter`).
    """
    import gymnasium as gym

    import moc_envs  # noqa: F401  (registers MOC/ ids)
    from moc_envs.games import get_game
    from trainers.readouts.data import HeldActions

    kwargs: dict[str, Any] = {"detector": detector, "ram_labels": True, "distractors": distractors}
    if detector == "space":
        kwargs.update(weights=str(weights), threads=threads)
    env = gym.make(f"MOC/{game}-v0", **kwargs)
    if not bar_filter:
        env.get_wrapper_attr("detector").bar_filter = None
    actions = HeldActions(int(env.action_space.n), seed)  # type: ignore[attr-defined]
    got: list[dict[str, int]] = []
    truth: list[dict[str, int]] = []
    try:
        sources = label_sources(env.get_wrapper_attr("detector"), get_game(game))
        _, info = env.reset(seed=seed)
        for _ in range(steps):
            got.append(dict(info["labels"]))
            truth.append(dict(info["ram_labels"]))
            _, _, term, trunc, info = env.step(actions.next())
            if term or trunc:
                _, info = env.reset()
    finally:
        env.close()
    return got, truth, sources


def score_label(got: Sequence[dict[str, int]], truth: Sequence[dict[str, int]], label: str, tolerance: int) -> dict[str, Any]:
    """Given share, and where given exact / within 1 / within 5 / right (error <= ``tolerance``)."""
    err = np.array([g[label] - t[label] for g, t in zip(got, truth, strict=True) if label in g], dtype=np.int64)
    a = np.abs(err)
    n = len(truth)
    if not len(a):
        return {"steps": n, "given": 0.0, "exact": None, "within_1": None, "within_5": None, "right": None, "median_error": None}
    return {
        "steps": n, "given": len(a) / n, "exact": float(np.mean(a == 0)), "within_1": float(np.mean(a <= 1)),
        "within_5": float(np.mean(a <= 5)), "right": float(np.mean(a <= tolerance)), "median_error": float(np.median(err)),
    }  # fmt: skip


def measure_game(game: str, steps: int, runs: int, seed: int, threads: int | None = 1) -> dict[str, Any]:
    """Per label of ``game``: its source and scores for the learned and the RAM detector."""
    from benchmarks.common import learned_weights
    from moc_envs.games import get_game

    spec = get_game(game)
    folder = learned_weights(game)
    kinds = {lab.name: lab.kind for lab in spec.ram_labels}
    result: dict[str, Any] = {"game": game, "weights": str(folder) if folder else None, "labels": {}}
    plays: dict[str, tuple[list, list]] = {}
    sources: dict[str, str] = {}
    for det in ("space", "ram"):
        if det == "space" and folder is None:
            continue
        got, truth = [], []
        for r in range(runs):
            g, t, src = play_labels(game, det, folder, steps, seed + r, threads)
            got += g
            truth += t
            if det == "space":
                sources = src
        plays[det] = (got, truth)
    for lab in spec.ram_label_names:
        tol = 5 if kinds[lab] in POSITION_KINDS else 0
        row: dict[str, Any] = {"kind": kinds[lab], "tolerance": tol, "source": sources.get(lab, "none")}
        for det, (got, truth) in plays.items():
            row["learned" if det == "space" else "ram"] = score_label(got, truth, lab, tol)
        result["labels"][lab] = row
    learned = [v.get("learned", {}) for v in result["labels"].values()]
    n = len(learned)
    given = sum(1 for v in learned if v.get("given"))
    right = sum(1 for v in learned if v.get("given") and v["right"] >= BAR)
    result.update(n_labels=n, given=given, right=right, share_right=right / n if n else 0.0, meets=n > 0 and right >= BAR * n)
    return result


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _summary(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["game", "labels", "given", f"right on >= {BAR:.0%} of steps given", "share of labels", f"target (>= {BAR:.0%} of labels)"],
        [(r["game"], r["n_labels"], r["given"], r["right"], r["share_right"], "met" if r["meets"] else "not met") for r in rows],
    )


def _per_label(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        for lab, v in r["labels"].items():
            le, ra = v.get("learned", {}), v.get("ram", {})
            out.append((
                r["game"], lab, v["kind"], v["source"], _f(le.get("given")), _f(le.get("exact")), _f(le.get("within_1")),
                _f(le.get("within_5")), _f(le.get("right")), _f(ra.get("given")), _f(ra.get("right")),
            ))  # fmt: skip
    return markdown_table(
        ["game", "label", "kind", "source", "given", "exact", "within 1", "within 5", "right", "RAM oracle: given", "RAM oracle: right"],
        out,
    )


def run(games: Sequence[str], steps: int, runs: int, seed: int, out: Path | None = None, threads: int | None = 1) -> dict[str, Any]:
    """Measure every game; write labels.json / .md / .png when ``out``."""
    from tqdm import tqdm

    rows = [measure_game(g, steps, runs, seed, threads) for g in tqdm(games, desc="labels", unit="game")]
    result = {"steps": steps, "runs": runs, "seeds": [seed + r for r in range(runs)], "bar": BAR, "rows": rows}
    if out is not None:
        met = sum(1 for r in rows if r["meets"])
        body = (
            f"{runs} plays of {steps} steps per game (seeds {', '.join(map(str, result['seeds']))}; the label "
            "fitting commands use seeds below 1000), random actions held for 4 to 16 steps, ALE v5 with "
            "sticky actions 0.25. Every label of the game's table (AtariARI's; ours for Asterix and "
            "Carnival) as `info[\"labels\"]` gives it, against the RAM byte. Source: a label link (one "
            "tracked box's position), the HUD reader, a readout (`moc_envs.readouts`), or none (not given). "
            "Given: share of steps the label is in `info[\"labels\"]`. Right: within 5 of the byte for "
            "positions (AtariARI kinds agent, other, small), exact for the rest, over the steps given. "
            "The RAM oracle reads the same links from OCAtari's RAM objects (it has no HUD reader or "
            f"readouts). Target: at least {BAR:.0%} of a game's labels right on at least {BAR:.0%} of "
            f"the steps they are given: met on {met} of {len(rows)} games.\n\n{_summary(rows)}\n\n"
            f"## Per label\n\n{_per_label(rows)}\n\n![share of labels right](labels.png)\n"
        )
        bar_plot(out / "labels.png", [r["game"] for r in rows], [r["share_right"] for r in rows],
                 f"share of labels right on >= {BAR:.0%} of steps given", "info['labels'] against RAM (learned env)")  # fmt: skip
        write_results(out, "labels", result, body, "Labels against RAM")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = play_parser("moc-envs bench labels", __doc__.split("\n")[0])
    args = p.parse_args(argv)
    steps = 50 if args.quick else args.steps
    result = run(args.games, steps, args.runs, args.seed, args.out, args.threads)
    for r in result["rows"]:
        print(f"{r['game']:<14} labels {r['n_labels']:>3}  given {r['given']:>3}  right {r['right']:>3}  {'met' if r['meets'] else 'not met'}")
    return result


if __name__ == "__main__":
    main()
