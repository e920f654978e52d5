"""Backends: what runs the shipped detector's small encoders fastest on this CPU, and what ale-py's
C++ vector env gives against the per-env emulation.

``moc-envs bench backends [--games Pong SpaceInvaders] [--batches 1 8 32] [--repeats 40]``

Inference, for each game's shipped detector, on N real frames of random play:

- the image encoder: N resized frames (N, 128, 128, 3) in [0, 1] -> the raw head channels
  (N, 11, 16, 16);
- the glimpse path: the glimpses of the present cells of the N frames (cropped in NumPy, the
  same for every backend) -> their z_what means (the lean glimpse encoder).

Each runs as torch eager, a frozen TorchScript graph, ``torch.compile`` (inductor), ONNX
Runtime (CPU provider) and OpenVINO (CPU), and the glimpses also as ``LeanGlimpseKernel``; every
ratio is to what ships on the CPU (the frozen graph for the image encoder, ``LeanGlimpseKernel``
for the lean glimpse encoder). Each runs on
``--threads`` threads; a backend that does not install or compile here gets a row that says
why. The backends are timed in turns (one call each, round after round) so that a change of
load on a shared machine hits them alike; a row gives the median over ``--repeats`` rounds and
the largest absolute difference of its outputs from eager torch's.

Emulation: env steps per second of N ALE v5 envs stepped in Python (``emulator="python"``)
beside ale-py's C++ vector env (``emulator="ale-vector"``), frames read, timed in alternating
blocks; and their parity: the same seeds and actions on both, counting the steps whose frame,
reward, flags or lives differ (see :mod:`moc_envs.envs.emulators` for why they do).

End to end (``--rounds``): raw ALE and the learned env, one env per runtime and ``make_vec(8)``
per emulator and runtime, all stepped in turns (:func:`env_in_turns`), with ratios to raw ALE
of the same rounds.

Runtime parity (``--parity-steps``, ``--parity-games``): every shipped game's learned env played
on ONNX Runtime (the default) and on the frozen TorchScript graph with the same seed and
actions, the steps whose labels, objects or observation differ counted
(:mod:`benchmarks.backends.parity`). Writes ``backends.json``, ``backends.md`` and ``backends.png``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.backends.emulation import emulation_parity, emulation_speed, env_in_turns
from benchmarks.backends.inference import BACKENDS, inference_rows
from benchmarks.backends.parity import runtime_parity
from benchmarks.common import (
    add_common_args,
    bar_plot,
    cpu_model,
    markdown_table,
    torch_threads,
    write_results,
)
from moc_envs.weights.search import bundled_games

__all__ = [
    "BACKENDS", "inference_rows", "emulation_speed", "emulation_parity", "env_in_turns", "runtime_parity", "run", "main",
]  # fmt: skip


def run(
    games: Sequence[str] = ("Pong", "SpaceInvaders"),
    batches: Sequence[int] = (1, 8, 32),
    repeats: int = 40,
    threads: int = 1,
    emulation_steps: int = 400,
    parity_steps: int = 1500,
    out: Path | None = None,
    backends: Sequence[str] = BACKENDS,
    turns: tuple[int, int] = (20, 16),
    parity_games: Sequence[str] = (),
    runtime_steps: int = 600,
) -> dict[str, Any]:
    """Measure the inference and emulation backends and (when ``out``) write backends.*;
    ``turns``: rounds and steps per round of :func:`env_in_turns` ((0, 0): left out);
    ``parity_games``: games of the runtime parity rollouts, ``runtime_steps`` steps each."""

    torch_threads(threads)
    result: dict[str, Any] = {
        "cpu": cpu_model(), "threads": threads, "versions": _versions(),
        "inference": [r for g in games for r in inference_rows(g, batches, repeats, threads, backends=backends)],
        "emulation_speed": [r for g in games for r in emulation_speed(g, (1, 8), emulation_steps)],
        "emulation_parity": [r for g in games for r in emulation_parity(g, parity_steps)],
        "env_in_turns": [r for g in games for r in env_in_turns(g, rounds=turns[0], calls=turns[1])] if turns[0] else [],
        "runtime_parity": runtime_parity(parity_games, ("onnxruntime", "torchscript"), runtime_steps) if runtime_steps else [],
    }  # fmt: skip
    if out is not None:
        _write(result, out)
    return result


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "onnxruntime", "onnx", "openvino", "ale-py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _write(result: dict[str, Any], out: Path) -> None:
    inference = markdown_table(
        ["game", "part", "batch", "inputs", "backend", "ms per call", "ms per frame", "speed-up vs shipped",
         "max abs diff vs eager", "note"],
        [(r["game"], r["part"], r["batch"], r["inputs"], r["backend"] + (" (shipped)" if r["shipped"] else ""),
          r["ms_per_call"], r["ms_per_frame"],
          r["speedup_vs_shipped"], None if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}", r["note"])
         for r in result["inference"]],
    )  # fmt: skip
    speed = markdown_table(
        ["game", "envs", "emulator", "env steps/s", "ratio to python"],
        [(r["game"], r["num_envs"], r["emulator"], r["steps_per_s"], r["ratio_to_python"]) for r in result["emulation_speed"]],
    )
    parity = markdown_table(
        ["game", "sticky", "seeds", "env steps", "episode ends", "end frames differing", "other frames differing",
         "reward/flag/lives differing", "first other differing step"],
        [(r["game"], r["repeat_action_probability"], r["seeds"], r["env_steps"], r["episode_ends"],
          r["end_frames_differing"], r["other_frames_differing"], r["reward_flag_lives_differing"],
          r["first_other_frame_step"]) for r in result["emulation_parity"]],
    )  # fmt: skip
    turns = markdown_table(
        ["game", "configuration", "envs", "env steps/s", "ratio to raw ALE", "ratio to raw ALE x envs"],
        [(r["game"], r["configuration"], r["num_envs"], r["steps_per_s"], r["ratio_to_ale"], r["ratio_to_raw_vector"])
         for r in result["env_in_turns"]],
    )  # fmt: skip
    runtimes = markdown_table(
        ["game", "runtime", "reference", "env steps", "labels differing", "objects differing",
         "observations differing (> 1e-4)", "largest observation difference"],
        [(r["game"], r["runtime"], r["reference"], r["steps"], r["labels_differing"], r["objects_differing"],
          r["obs_differing"], f"{r['max_obs_diff']:.1e}") for r in result.get("runtime_parity", [])],
    )  # fmt: skip
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in result["versions"].items())
    body = (
        f"CPU: {result['cpu']}; {result['threads']} thread(s) per backend; {versions}.\n\n"
        "## Inference\n\nMedian wall time of one call over the rounds (backends timed in turns); "
        "`inputs` is the batch's frames for the image encoder and its glimpses (present cells) for "
        "the glimpse encoder; `speed-up vs shipped` is the shipped path's time over the row's in "
        "the same run (the frozen TorchScript graph for the image encoder, `LeanGlimpseKernel` for "
        f"the lean glimpse encoder).\n\n{inference}\n\n"
        "## Emulation: steps per second\n\nN ALE v5 envs stepped in Python beside ale-py's C++ "
        "vector env, frames read every step, random actions, timed in alternating blocks of 25 "
        f"steps.\n\n{speed}\n\n"
        "## Emulation: parity\n\nThe same seeds and actions on both emulators (4 envs, NEXT_STEP "
        "resets); where and why they part: `moc_envs.envs.emulators`.\n\n"
        f"{parity}\n\n"
        "## End to end, in turns\n\nRaw ALE and the learned env (CPU, shipped detector) built first, then "
        "stepped in rounds, a few steps of each per round in rotating order, so that every row saw the "
        "same load (`env_in_turns`); `ratio to raw ALE x envs` is to the faster raw row of as many "
        f"envs.\n\n{turns}\n\n"
        "## Runtimes: rollout parity\n\nEach game's learned env on both CPU runtimes, the same seed and "
        "actions (random, held 4 steps), compared step by step with the first runtime's: labels "
        "(every value), objects (category, slot, box to 0.01 px) and the observation.\n\n"
        f"{runtimes}\n\n![speed-up vs shipped](backends.png)\n"
    )
    measured = [r for r in result["inference"] if r["speedup_vs_shipped"] is not None]
    bar_plot(
        out / "backends.png",
        [f"{r['game']} {r['part']} x{r['batch']} {r['backend']}" for r in measured],
        [r["speedup_vs_shipped"] for r in measured],
        "speed-up vs the shipped path (same run)",
        f"Inference backends on {result['cpu']}",
    )
    write_results(out, "backends", result, body, "Inference and emulation backends")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench backends",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--games", nargs="+", default=["Pong", "SpaceInvaders"], help="games whose shipped detectors to time")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="frames per call")
    p.add_argument("--repeats", type=int, default=40, help="timed rounds per batch")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="inference backends to time")
    p.add_argument("--rounds", type=int, default=20, help="rounds of the end-to-end comparison in turns (0: none)")
    p.add_argument("--parity-games", nargs="+", default=list(bundled_games()), help="games of the runtime parity rollouts (default: every shipped game)")
    p.add_argument("--parity-steps", type=int, default=600, help="env steps per game and runtime of the parity rollouts (0: none)")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.repeats, args.rounds = [1, 2], 3, min(args.rounds, 1)
    result = run(args.games, args.batches, args.repeats, args.threads,
                 emulation_steps=50 if args.quick else 400, parity_steps=40 if args.quick else 1500, out=args.out,
                 backends=args.backends, turns=(args.rounds, 2 if args.quick else 16),
                 parity_games=args.parity_games[:1] if args.quick else args.parity_games,
                 runtime_steps=min(args.parity_steps, 20) if args.quick else args.parity_steps)  # fmt: skip
    for r in result["inference"]:
        ms = "-" if r["ms_per_call"] is None else f"{r['ms_per_call']:.3f} ms"
        up = "" if r["speedup_vs_shipped"] is None else f"x{r['speedup_vs_shipped']:.2f}"
        print(f"{r['game']:<14} {r['part']:<16} x{r['batch']:<3} {r['backend']:<22} {ms:>10} {up:>7} {r['note']}")
    for r in result["emulation_speed"]:
        print(f"{r['game']:<14} {r['num_envs']} envs {r['emulator']:<11} {r['steps_per_s']:.0f} steps/s x{r['ratio_to_python']:.2f}")
    for r in result["runtime_parity"]:
        print(f"{r['game']:<14} {r['runtime']} vs {r['reference']}: labels differ on {r['labels_differing']} of {r['steps']} steps")
    for r in result["env_in_turns"]:
        print(f"{r['configuration']:<72} {r['steps_per_s']:8.0f} steps/s {r['ratio_to_ale']:.3f}x raw ALE")
    return result
