"""Immutable per-game training configurations (SPACE+MOC) and the annealing schedules.

One frozen :class:`TrainConfig` per run, built by :func:`make_config` from a game, a preset and
command-line overrides. Defaults come from ../shared/spec/space-moc.md sections 4-5:

- ``gpu`` preset: the MOC schedule, 5000 steps of 16 stacks x T=4 frames, foreground RMSprop
  lr 3e-5, background Adam lr 1e-3, clip 1.0, z_pres prior 0.1 -> 1e-10 ending at 5000
  (start 1000 for Pong/MsPacman/Carnival, 0 otherwise), z_scale prior mean -2.0 -> -2.5 over
  0-5000 (Boxing/Skiing -1.0 constant, Tennis -2.5 -> -3.0), lambda linear over 3000 steps.
- ``cpu`` preset (ours): the same schedule compressed to fit in under an hour on two CPU
  cores: fewer steps, 4 stacks (16 frames) a step, every annealing step scaled by
  steps/5000, a higher foreground learning rate; the motion loss carries the short schedule.

The schedules are pure functions of the step so that they are trivially resumable and testable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from moc_envs.games import get_game
from moc_envs.model.config import ModelConfig

__all__ = [
    "Preset",
    "Ablation",
    "LambdaSchedule",
    "Anneal",
    "LossWeights",
    "TrainConfig",
    "PRESETS",
    "ABLATIONS",
    "LAMBDA_SCHEDULES",
    "make_config",
    "linear_anneal",
    "lambda_linear",
    "lambda_dynamic",
    "top_k_for",
]

Preset = Literal["cpu", "gpu"]
Ablation = Literal["space", "space_m", "space_moc"]
LambdaSchedule = Literal["linear", "dynamic"]
PRESETS: tuple[str, ...] = ("cpu", "gpu")
ABLATIONS: tuple[str, ...] = ("space", "space_m", "space_moc")
LAMBDA_SCHEDULES: tuple[str, ...] = ("linear", "dynamic")

_REFERENCE_STEPS = 5000


def linear_anneal(step: int, start_value: float, end_value: float, start_step: int, end_step: int) -> float:
    """The start value until ``start_step``, linear to ``end_value`` at ``end_step``, then constant."""
    if step <= start_step:
        return start_value
    if step >= end_step:
        return end_value
    frac = (step - start_step) / (end_step - start_step)
    return start_value + frac * (end_value - start_value)


def lambda_linear(step: int, end_step: int) -> float:
    """MOC's linear motion -> continuity weight: 0 at step 0, rising to 1 at ``end_step``."""
    if end_step <= 0:
        return 1.0
    return min(1.0, max(0.0, step / end_step))


def lambda_dynamic(v: float) -> float:
    """MOC's dynamic weight 2^(-v): v measures how far predictions still are from motion objects."""
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"v must be a finite non-negative number, got {v}")
    return 2.0 ** (-v)


def top_k_for(game: str) -> int:
    """Glimpses decoded per frame for a game: at least twice its object slots, at least 8."""
    return min(128, max(8, 2 * get_game(game).n_slots))


@dataclass(frozen=True)
class Anneal:
    """A linear annealing schedule (see :func:`linear_anneal`)."""

    start_value: float
    end_value: float
    start_step: int
    end_step: int

    def __call__(self, step: int) -> float:
        """Value at ``step``."""
        return linear_anneal(step, self.start_value, self.end_value, self.start_step, self.end_step)

    def scaled(self, factor: float) -> Anneal:
        """The same schedule with its step boundaries multiplied by ``factor``."""
        return Anneal(self.start_value, self.end_value, round(self.start_step * factor), round(self.end_step * factor))


@dataclass(frozen=True)
class LossWeights:
    """Multipliers of every loss term; 0 removes a term (ablations, tests)."""

    recon: float = 1.0
    kl_pres: float = 1.0
    kl_depth: float = 1.0
    kl_where: float = 1.0
    kl_what: float = 1.0
    kl_bg: float = 1.0
    motion: float = 100.0
    """motion_weight: scale of L_M = w_pres L_pres + w_alpha L_alpha + w_where L_where."""
    motion_pres: float = 10.0
    motion_alpha: float = 1.0
    motion_where: float = 100.0
    continuity: float = 10.0
    """area_object_weight: scale of the object-continuity loss."""
    oc_beta: float = 4.0
    """The most similar neighbour is rewarded with weight beta + 1 (5)."""
    pres_loss: Literal["bce", "mse"] = "bce"
    """Form of L_pres: binary cross-entropy on logits (ours) or MOC's squared error."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run. Immutable; saved in every checkpoint."""

    game: str
    preset: Preset = "gpu"
    ablation: Ablation = "space_moc"
    steps: int = 5000
    batch_stacks: int = 16
    """Stacks per step; each stack holds T consecutive frames."""
    seq_len: int = 4
    fg_lr: float = 3e-5
    bg_lr: float = 1e-3
    clip: float = 1.0
    z_pres_prior: Anneal = Anneal(0.1, 1e-10, 0, 5000)
    z_scale_prior: Anneal = Anneal(-2.0, -2.5, 0, 5000)
    z_scale_prior_std: float = 0.2
    lambda_schedule: LambdaSchedule = "linear"
    lambda_end_step: int = 3000
    dynamic_scale: float = 4.0
    """v of the dynamic schedule is this times (mean L1 distance + over-count)."""
    weights: LossWeights = field(default_factory=LossWeights)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    log_every: int = 20
    image_every: int = 250
    ckpt_every: int = 250

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_stacks < 1:
            raise ValueError(f"batch_stacks must be >= 1, got {self.batch_stacks}")
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be >= 2 for object continuity, got {self.seq_len}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if self.lambda_schedule not in LAMBDA_SCHEDULES:
            raise ValueError(
                f"lambda_schedule must be one of {LAMBDA_SCHEDULES}, got {self.lambda_schedule!r}"
            )

    @property
    def frames_per_step(self) -> int:
        """Frames in one optimisation step."""
        return self.batch_stacks * self.seq_len

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (nested dataclasses become dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output."""
        d = dict(data)
        d["z_pres_prior"] = Anneal(**d["z_pres_prior"])
        d["z_scale_prior"] = Anneal(**d["z_scale_prior"])
        d["weights"] = LossWeights(**d["weights"])
        d["model"] = ModelConfig.from_dict(d["model"])
        return cls(**d)


def _game_anneals(name: str) -> tuple[Anneal, Anneal]:
    pres_start = 1000 if name in ("Pong", "MsPacman", "Carnival") else 0
    z_pres = Anneal(0.1, 1e-10, pres_start, _REFERENCE_STEPS)
    if name in ("Boxing", "Skiing"):
        z_scale = Anneal(-1.0, -1.0, 0, _REFERENCE_STEPS)
    elif name == "Tennis":
        z_scale = Anneal(-2.5, -3.0, 0, _REFERENCE_STEPS)
    else:
        z_scale = Anneal(-2.0, -2.5, 0, _REFERENCE_STEPS)
    return z_pres, z_scale


_CPU_STEPS = 1500


def make_config(game: str, preset: Preset = "gpu", **overrides: Any) -> TrainConfig:
    """The default config of ``game`` under ``preset``, with keyword overrides applied.

    Overrides name TrainConfig fields (``steps``, ``fg_lr``, ...); a changed ``steps``
    rescales the annealing steps of the preset proportionally unless those are given too.
    ``z_scale_mean=(start, end)`` replaces the values of the game's z_scale prior schedule and
    keeps its steps.
    """
    spec = get_game(game)
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    z_pres, z_scale = _game_anneals(spec.name)
    overrides = dict(overrides)
    scale_mean = overrides.pop("z_scale_mean", None)
    if scale_mean is not None:
        start, end = (float(v) for v in scale_mean)
        z_scale = dataclasses.replace(z_scale, start_value=start, end_value=end)
    model = ModelConfig(top_k=top_k_for(spec.name))
    if preset == "gpu":
        base = dict(steps=_REFERENCE_STEPS, batch_stacks=16, fg_lr=3e-5, lambda_end_step=3000)
    else:
        # lambda reaches 1 only at the last step: the short schedule leans on motion throughout.
        base = dict(steps=_CPU_STEPS, batch_stacks=4, fg_lr=2e-4, lambda_end_step=_CPU_STEPS)
    steps = int(overrides.get("steps", base["steps"]))
    factor = steps / _REFERENCE_STEPS
    base.update(
        z_pres_prior=z_pres.scaled(factor),
        z_scale_prior=z_scale.scaled(factor),
        lambda_end_step=round(base["lambda_end_step"] * steps / base["steps"]),
        steps=steps,
        ckpt_every=max(1, min(250, steps // 4)),
        image_every=max(1, min(250, steps // 4)),
    )
    base.update(overrides)
    ablation = base.get("ablation", "space_moc")
    weights = base.get("weights", LossWeights())
    if ablation == "space":
        weights = dataclasses.replace(weights, motion=0.0, continuity=0.0)
    elif ablation == "space_m":
        weights = dataclasses.replace(weights, continuity=0.0)
    base["weights"] = weights
    base.setdefault("model", model)
    return TrainConfig(game=spec.name, preset=preset, **base)
