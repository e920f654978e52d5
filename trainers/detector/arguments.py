"""The arguments of a SPACE+MOC training run: the :class:`Args` dataclass (one help string a
field) and the command-line parser built from it, whose ``--help`` names what each unset
option falls back to.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from moc_envs.games import game_names
from trainers.detector.config import PRESETS, make_config

__all__ = ["Args", "parse_scale_mean", "parse_args"]


@dataclass
class Args:
    """Command-line arguments of a training run."""

    game: str = field(metadata={"help": "game name, e.g. Pong"})
    data: str = field(metadata={"help": "dataset directory built by trainers.data.dataset"})
    out: str = field(metadata={"help": "run directory (checkpoint, TensorBoard logs, eval)"})
    preset: str = field(default="gpu", metadata={"help": "cpu: short schedule for 2 CPU cores; gpu: MOC's 5000 x 64 frames"})
    steps: int | None = field(default=None, metadata={"help": "optimisation steps (annealing rescaled)"})
    batch_stacks: int | None = field(default=None, metadata={"help": "stacks of T frames per step"})
    fg_lr: float | None = field(default=None, metadata={"help": "foreground RMSprop learning rate"})
    bg_lr: float | None = field(default=None, metadata={"help": "background Adam learning rate"})
    ablation: str | None = field(default=None, metadata={"help": "space | space_m | space_moc"})
    lambda_schedule: str | None = field(default=None, metadata={"help": "linear | dynamic motion->continuity schedule"})
    seed: int | None = field(default=None, metadata={"help": "random seed"})
    z_scale_mean: str | None = field(
        default=None,
        metadata={"help": "pre-sigmoid mean of the z_scale prior, 'START' or 'START,END'"},
    )
    resume: bool = field(default=False, metadata={"help": "continue from <out>/checkpoint.pt"})
    until_step: int | None = field(default=None, metadata={"help": "stop (and checkpoint) at this step, before the end of the schedule"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop (and checkpoint) after this much wall time"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:N]"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (a resumed run should keep the count to stay bit-exact)"})
    eval_split: str = field(default="test", metadata={"help": "split scored at the end ('' to skip)"})
    compile: bool = field(default=True, metadata={"help": "torch.compile the model on CUDA"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    boxes_at_prior: bool = field(default=False, metadata={"help": "start every cell's box at the z_scale prior's size, not the untrained encoder's (moc-envs train's step calibration: what steps cost once training has shrunk the boxes)"})
    nproc: int = field(default=1, metadata={"help": "data-parallel processes (>1: relaunched under torchrun, DDP; --batch-stacks is per process)"})

    def config_overrides(self) -> dict[str, Any]:
        """The TrainConfig fields given on the command line."""
        names = ("steps", "batch_stacks", "fg_lr", "bg_lr", "ablation", "lambda_schedule", "seed")
        out: dict[str, Any] = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.z_scale_mean is not None:
            out["z_scale_mean"] = parse_scale_mean(self.z_scale_mean)
        return out


def parse_scale_mean(text: str) -> tuple[float, float]:
    """'START' or 'START,END' -> (start, end) of the z_scale prior mean; ValueError when malformed."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(v) for v in values):
        raise ValueError(f"--z-scale-mean must be 'START' or 'START,END' (numbers), got {text!r}")
    return values[0], values[-1]


def _none_defaults() -> dict[str, str]:
    """What each option whose dataclass default is None falls back to, for ``--help``."""
    presets = {p: make_config("Pong", p) for p in PRESETS}  # these fields do not depend on the game

    def per_preset(name: str) -> str:
        values = {p: getattr(cfg, name) for p, cfg in presets.items()}
        if len(set(values.values())) == 1:
            return str(next(iter(values.values())))
        return "the preset's: " + ", ".join(f"{p} {v}" for p, v in values.items())

    by_value: dict[str, list[str]] = {}
    for game in game_names():
        z = make_config(game, "gpu").z_scale_prior
        text = f"{z.start_value}" if z.start_value == z.end_value else f"{z.start_value},{z.end_value}"
        by_value.setdefault(text, []).append(game)
    common = max(by_value, key=lambda v: len(by_value[v]))
    scale = "; ".join(f"{v} for {', '.join(g)}" for v, g in by_value.items() if v != common)
    out = {n: per_preset(n) for n in ("steps", "batch_stacks", "fg_lr", "bg_lr", "ablation", "lambda_schedule", "seed")}
    return out | {
        "z_scale_mean": f"the game's: {scale}; {common} for the others",
        "until_step": "the end of the schedule",
        "max_minutes": "no limit",
        "threads": f"torch's choice, {torch.get_num_threads()} here",
    }


def parse_args(argv: Sequence[str] | None, prog: str, description: str) -> Args:
    """The :class:`Args` of command line ``argv`` (None: ``sys.argv``); exits with a usage
    message on bad input, as argparse does."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fallbacks = _none_defaults()
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        if f.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
            continue
        kind = {"int": int, "int | None": int, "float | None": float}.get(str(f.type), str)
        required = f.default is dataclasses.MISSING
        # SUPPRESS: the option is left out of the namespace (the dataclass default applies) and
        # --help shows no "(default: None)"; the help text says what None stands for instead.
        default = argparse.SUPPRESS if required or f.default is None else f.default
        if f.default is None:
            help_ = f"{help_} (default: {fallbacks[f.name]})"
        p.add_argument(flag, type=kind, required=required, default=default, help=help_)
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.preset not in PRESETS:
        p.error(f"--preset must be one of {', '.join(PRESETS)}, got {args.preset!r}")
    if args.nproc < 1:
        p.error(f"--nproc must be >= 1, got {args.nproc}")
    return args
