"""The benchmark verbs of ``moc-envs``: ``moc-envs bench <name>``.

Registered as the entry point ``benchmarks`` of the group ``moc_envs.commands`` (``pyproject.toml``),
through which :mod:`moc_envs.cli` finds them without importing the benchmarks: this module imports
nothing at import time, and a benchmark's module is imported only when it runs.
:data:`BENCHMARKS` maps each name to ``(module, function, help)``, the form of
:data:`COMMANDS`, and :func:`bench` runs one.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BENCHMARKS", "COMMANDS", "bench"]

BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "all": (
        "benchmarks.__main__", "main",
        "speed, detection, probe and agents one after the other, with their wall times",
    ),
    "speed": (
        "benchmarks.speed", "main",
        "env steps per second of raw ALE, OCAtari (RAM / vision) and MOC envs",
    ),
    "detection": (
        "benchmarks.detection", "main",
        "category-aware F1 of every promised object on held-out later-state play, ours beside OCAtari vision",
    ),
    "probe": (
        "benchmarks.probe", "main",
        "AtariARI linear probes on the object observations and z_what features",
    ),
    "agents": (
        "benchmarks.agents", "main",
        "PPO agents on MOC objects: evaluation and a same-budget comparison",
    ),
    "ablation": (
        "benchmarks.ablation.table", "main",
        "MOC's ablation: SPACE vs + motion vs + motion and object continuity, several seeds per game",
    ),
    "label-cost": (
        "benchmarks.labels.cost", "main",
        "what the HUD reader and the readouts add to each env step, in raw ALE steps",
    ),
    "noisy": (
        "benchmarks.noisy", "main",
        "detection on frames with PermaKey's moving bars (Noisy Atari) beside the same frames clean",
    ),
    "flicker": (
        "benchmarks.flicker", "main",
        "which games draw objects on alternate frames, and what the max of two frames recovers",
    ),
    "games": (
        "benchmarks.games", "main",
        "one table across games from the per-game results (nothing re-measured)",
    ),
    "transfer": (
        "benchmarks.transfer", "main",
        "what the learned detector's errors cost an agent: its games seen by both detectors",
    ),
    "train-speed": (
        "benchmarks.train_speed", "main",
        "SPACE+MOC training and inference speed beside the reference implementation's",
    ),
    "ddp-speed": (
        "benchmarks.ddp_speed", "main",
        "data-parallel training throughput: 1 process beside N DDP processes (torchrun)",
    ),
    "backends": (
        "benchmarks.backends", "main",
        "CPU inference backends of the small encoders, and the C++ vector env against per-env emulation",
    ),
    "labels": (
        "benchmarks.labels.accuracy", "main",
        "every label of info['labels'] against RAM, per label and game, learned env beside the RAM oracle",
    ),
    "hud": (
        "benchmarks.labels.hud", "main",
        "HUD labels (scores, lives, clocks, bars) read from the frame against RAM, per label, on unseen play",
    ),
}  # fmt: skip

COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench": (
        "benchmarks.commands", "bench",
        f"run a benchmark: {', '.join(BENCHMARKS)} (all: the four headline ones, timed)",
    ),
}  # fmt: skip


def bench(argv: Sequence[str] | None = None, prog: str = "moc-envs bench") -> int:
    """``moc-envs bench <name> ARGS``: run the benchmark ``name`` (``--help`` lists them)."""
    from moc_envs.cli import Command, run_group

    commands = {name: Command(*entry) for name, entry in BENCHMARKS.items()}
    description = (
        "Run one benchmark; its results go to benchmarks/results of the checkout unless --out\n"
        f'says otherwise. Run "{prog} NAME --help" for its options and their defaults.'
    )
    return run_group(prog, commands, argv, description=description)
