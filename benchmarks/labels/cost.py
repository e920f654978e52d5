"""``moc-envs bench label-cost``: what reading the labels adds to each env step, beside raw ALE.

The learned env reads ``info["labels"]`` on every step: the HUD reader (:mod:`moc_envs.hud`) and the
readouts (:mod:`moc_envs.readouts`) look at the frame, on top of the detector. Per game, one play of
the learned env records each step's tracked objects and frame (random actions held 4 to 16 steps);
then, in rotating rounds so that each sees the same load, the benchmark times

- raw ALE: ``ALE/<Game>-v5`` stepped with random actions, a step;
- the HUD reader: a fresh copy reading every recorded frame in order (reset at each episode);
- the readouts: a fresh copy reading every recorded step in order (reset at each episode);

and gives each in milliseconds a step and as a multiple of the raw ALE step of the same rounds.
The detector itself is not timed here (``moc-envs bench speed`` times the env end to end).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    add_common_args,
    bar_plot,
    learned_weights,
    markdown_table,
    torch_threads,
    write_results,
)

__all__ = ["measure_game", "run", "main"]


def _raw_ale(game: str, seed: int) -> Callable[[int], float]:
    """A timer of ``n`` raw ALE steps (seconds), random actions, resetting at episode ends."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5")
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_actions = int(env.action_space.n)  # type: ignore[attr-defined]

    def timed(n: int) -> float:
        actions = rng.integers(n_actions, size=n).tolist()
        start = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        return time.perf_counter() - start

    return timed


def _replay(episodes: Sequence[Sequence[Any]], fresh: Callable[[], Any], read: Callable[[Any, Any], Any]) -> Callable[[int], float]:
    """A timer of reading every recorded step in order with a fresh reader (seconds)."""

    def timed(_: int) -> float:
        reader = fresh()
        start = time.perf_counter()
        for episode in episodes:
            reader.reset()
            for step in episode:
                read(reader, step)
        return time.perf_counter() - start

    return timed


def measure_game(game: str, steps: int, rounds: int, seed: int) -> dict[str, Any]:
    """Milliseconds a step of raw ALE, the HUD reader and the readouts for ``game`` (module docstring)."""
    from moc_envs.games import get_game
    from moc_envs.hud.reader import HUD_JSON, load_hud
    from moc_envs.readouts import READOUTS_JSON, read_readouts
    from moc_envs.weights.manifest import verify_folder
    from trainers.readouts.data import collect_steps

    spec = get_game(game)
    folder = learned_weights(spec.name)
    if folder is None:
        return {"game": spec.name, "note": f"not available: no weights for {spec.name}"}
    episodes = collect_steps(spec, folder, steps, seed, progress=False)
    n = sum(len(e) for e in episodes)
    timers: dict[str, Callable[[int], float]] = {"raw ALE": _raw_ale(spec.name, seed)}
    if (folder / HUD_JSON).is_file():
        hud = load_hud(folder, spec)
        timers["HUD reader"] = _replay(episodes, hud.fresh, lambda r, s: r.read(s.frame))
    files = verify_folder(folder, spec.name)
    readouts = read_readouts(files, spec) if files.holds(READOUTS_JSON) else None
    if readouts is not None:
        timers["readouts"] = _replay(episodes, readouts.fresh, lambda r, s: r.read(s.objects, s.frame))
    spent = dict.fromkeys(timers, 0.0)
    for _ in range(rounds):
        for name, timed in timers.items():
            spent[name] += timed(n)
    ms = {name: 1e3 * s / (n * rounds) for name, s in spent.items()}
    row: dict[str, Any] = {"game": spec.name, "steps": n, "rounds": rounds, "ms": ms}
    row["x_raw_ale"] = {name: v / ms["raw ALE"] for name, v in ms.items() if name != "raw ALE"}
    return row


def run(games: Sequence[str], steps: int, rounds: int, seed: int, out: Path | None = None) -> dict[str, Any]:
    """Measure every game; write ``label_cost.{json,md,png}`` when ``out`` is set."""
    from tqdm import tqdm

    rows = [measure_game(g, steps, rounds, seed) for g in tqdm(games, desc="label cost", unit="game")]
    result = {"steps": steps, "rounds": rounds, "seed": seed, "rows": rows}
    if out is not None:
        table = markdown_table(
            ["game", "raw ALE ms / step", "HUD reader ms / step", "readouts ms / step", "HUD (x raw ALE step)",
             "readouts (x raw ALE step)"],
            [(r["game"], r["ms"]["raw ALE"], r["ms"].get("HUD reader"), r["ms"].get("readouts"),
              r["x_raw_ale"].get("HUD reader"), r["x_raw_ale"].get("readouts")) for r in rows if "ms" in r],
        )  # fmt: skip
        body = (
            f"{__doc__.split(chr(10) + chr(10), 1)[1].strip()}\n\nOne play of {steps} steps per game (seed {seed}), "
            f"{rounds} rounds; torch one thread.\n\n{table}\n\n![readouts and HUD, x raw ALE step](label_cost.png)\n"
        )
        timed = [r for r in rows if "ms" in r]
        bar_plot(out / "label_cost.png", [r["game"] for r in timed],
                 [r["x_raw_ale"].get("readouts", 0.0) + r["x_raw_ale"].get("HUD reader", 0.0) for r in timed],
                 "HUD reader + readouts, in raw ALE steps", "What the labels add to a step")  # fmt: skip
        write_results(out, "label_cost", result, body, "The cost of info['labels']")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench label-cost", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    add_common_args(p)
    p.add_argument("--games", nargs="+", default=None, help="games (default: every game with weights)")
    p.add_argument("--steps", type=int, default=300, help="steps of the recorded play")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (each times every part once)")
    args = p.parse_args(argv)
    torch_threads(args.threads)
    from moc_envs.games import game_names

    games = args.games or [g for g in game_names() if learned_weights(g) is not None]
    if args.quick:
        args.steps, args.rounds = 20, 1
    result = run(games, args.steps, args.rounds, args.seed, args.out)
    for r in result["rows"]:
        if "ms" in r:
            parts = ", ".join(f"{k} {v:.3f} ms" for k, v in r["ms"].items())
            print(f"{r['game']:<14} {parts}")
    return result


if __name__ == "__main__":
    main()
