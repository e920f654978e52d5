"""The settings and the record of a ``moc-envs train`` run: the stages, the configuration, the
preset, and the state file ``<out>/pipeline.json`` that says where a run continues.

:class:`PipelineRun` is one resolved run (paths, settings, the state and how to save it); the
stages (:mod:`trainers.pipeline.stages`) read and extend it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moc_envs.errors import MocEnvsError
from moc_envs.games import get_game
from moc_envs.threads import DEFAULT_THREADS
from moc_envs.weights.atomic import atomic_write_text

__all__ = [
    "STAGES",
    "STATE_FILE",
    "STATE_FORMAT",
    "BUDGET_SHARES",
    "PRESETS",
    "PipelineError",
    "PipelineConfig",
    "PipelineRun",
    "resolve_preset",
    "hardware",
    "read_state",
    "identity",
    "check_identity",
    "clear_from",
    "overrides",
]

STAGES: tuple[str, ...] = ("dataset", "teacher", "export", "raw_frames", "classifier", "distill", "evaluate", "labels", "card")
"""The stages in the order they run."""
STATE_FILE = "pipeline.json"
STATE_FORMAT = "moc_envs.pipeline/1"
BUDGET_SHARES = {"teacher": 0.6, "distill": 0.25}
"""Share of ``--minutes`` each long stage plans for; the remaining 15% is the fixed-cost stages'
(dataset, classifier, raw frames, evaluation), which are not cut short."""
PRESETS = ("auto", "cpu", "gpu")
_SETTING_STAGE = {
    "data": "dataset", "seed": "dataset", "distractors": "dataset", "distractor_seed": "dataset", "preset": "teacher",
}  # fmt: skip
"""The first stage each identity setting of a run feeds: changing it needs --redo there."""
_UNRECORDED = object()
_RECORDED_BEFORE = {"distractors": None, "distractor_seed": None}
"""What a state file written before a setting existed ran with (clean frames, no bars)."""
_DERIVED_BY = {"hud_bands": "dataset", "z_scale_prior": "teacher", "max_box": "export", "classifier": "classifier"}


class PipelineError(MocEnvsError, ValueError):
    """A pipeline run that cannot start or continue as asked."""


@dataclass
class PipelineConfig:
    """What one ``moc-envs train`` run is asked to do (the command line, plus knobs for tests)."""

    game: str
    out: Path | None = None
    """Output folder; None: ``runs/<game>``."""
    preset: str = "auto"
    minutes: float | None = None
    threads: int = DEFAULT_THREADS
    redo: str | None = None
    nproc: int = 1
    data: Path | None = None
    """Dataset folder; None: ``<out>/data``."""
    seed: int = 0
    distractors: str | None = None
    """``"horizontal"``, ``"vertical"`` or ``"both"``: moving bars on the dataset's frames (None: clean)."""
    distractor_seed: int | None = None
    """Seed of the bars, mixed with the dataset's env seeds (None: ``seed`` alone fixes them)."""
    hardware: str | None = None
    progress: bool = True
    probe_pairs: int = 256
    """Pairs of consecutive frames of random play the HUD bands are derived from."""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of :func:`trainers.data.dataset.build_dataset` (split sizes, warm-up)."""
    train_options: dict[str, Any] = field(default_factory=dict)
    """Extra fields of :class:`trainers.detector.train.Args` (``steps``, ``batch_stacks``, ...)."""
    distill_options: dict[str, Any] = field(default_factory=dict)
    """Extra fields of :class:`trainers.detector.distill.Args` (``epochs``, ``glimpse_epochs``, ``batch``, ...)."""
    label_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of :func:`trainers.evaluate.label_offsets.calibrate` (``steps``, ``min_samples``)."""


# ---------------------------------------------------------------------------- settings
def resolve_preset(preset: str) -> tuple[str, str, str]:
    """(preset, device, why): ``auto`` is ``gpu`` where torch sees CUDA and ``cpu`` otherwise."""
    if preset not in PRESETS:
        raise PipelineError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    where = f"CUDA device {torch.cuda.get_device_name(0)}" if cuda else "no CUDA device"
    if preset == "auto":
        chosen = "gpu" if cuda else "cpu"
        return chosen, device, f"preset auto -> {chosen} ({where})"
    why = f"preset {preset} ({where})"
    if preset == "gpu" and not cuda:
        why += ": MOC's full schedule on the CPU takes many hours; --preset cpu is the short one"
    return preset, device, why


def hardware(device: str, threads: int) -> str:
    """What the card says a run was trained on: the GPU's name, or the CPU's cores and threads."""
    if device == "cuda":
        import torch

        return f"1x {torch.cuda.get_device_name(0)}"
    return f"{os.cpu_count()}-core CPU, {threads} torch thread(s)"


@dataclass
class PipelineRun:
    """A resolved run: paths, settings, the state and where to save it."""

    cfg: PipelineConfig
    game: str
    out: Path
    data: Path
    preset: str
    device: str
    threads: int
    state: dict[str, Any]
    log: Callable[[str], None]

    @property
    def teacher_dir(self) -> Path:
        """The teacher's training run (checkpoint, TensorBoard logs)."""
        return self.out / "teacher"

    @property
    def space_dir(self) -> Path:
        """The exported teacher: the SPACE detector the classifier is fitted on."""
        return self.out / "weights" / self.game / "space"

    @property
    def distill_dir(self) -> Path:
        """The distillation's run folder (its checkpoint)."""
        return self.out / "distill"

    @property
    def weights_dir(self) -> Path:
        """The shipped lean detector's folder."""
        return self.out / "weights" / self.game

    def stage(self, name: str) -> dict[str, Any]:
        """The state's record of stage ``name`` (created empty on first use)."""
        return self.state["stages"].setdefault(name, {})

    def save(self) -> None:
        """Write the state file atomically."""
        atomic_write_text(self.out / STATE_FILE, json.dumps(self.state, indent=2) + "\n")


# ---------------------------------------------------------------------------- state
def read_state(out: str | Path, game: str) -> dict[str, Any] | None:
    """The state file of pipeline folder ``out`` for ``game``, None when there is none.

    Raises :class:`PipelineError` for a file that is not a readable pipeline state, or one
    written for another game.
    """
    path = Path(out) / STATE_FILE
    if not path.exists():
        return None
    advice = f"move {path} away (or choose another --out) to start over"
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise PipelineError(f"{path} is not a readable pipeline state file ({type(err).__name__}: {err}); {advice}") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise PipelineError(f"{path} is not a pipeline state file: expected format {STATE_FORMAT!r}, got {found!r}; {advice}")
    stages = state.get("stages")
    if not isinstance(stages, dict) or not isinstance(state.get("settings"), dict) or not isinstance(state.get("derived"), dict):
        raise PipelineError(f"{path} lacks its 'stages', 'settings' or 'derived' record; {advice}")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not all(isinstance(v, dict) for v in stages.values()):
        raise PipelineError(f"{path} names unknown stages {unknown} (expected some of {', '.join(STAGES)}); {advice}")
    if state.get("game") != game:
        raise PipelineError(
            f"{path} records a run for game {state.get('game')!r}, not {game!r}; choose another --out for {game}"
        )
    return state


def identity(run: PipelineRun) -> dict[str, Any]:
    """The settings a continued run must keep (or redo the stage they feed)."""
    return {
        "preset": run.preset, "data": str(run.data), "seed": run.cfg.seed,
        # A seed without bars changes no data: recorded as None, so it cannot block a continued run.
        "distractors": run.cfg.distractors,
        "distractor_seed": run.cfg.distractor_seed if run.cfg.distractors is not None else None,
    }  # fmt: skip


def check_identity(state: dict[str, Any], now: dict[str, Any], redo: str | None, path: Path) -> None:
    """Refuse to continue a run whose settings changed unless ``--redo`` reaches the stage they feed."""
    for key, value in now.items():
        before = state["settings"].get(key, _RECORDED_BEFORE.get(key, _UNRECORDED))
        if before is _UNRECORDED or before == value:
            continue
        stage = _SETTING_STAGE[key]
        if redo is not None and STAGES.index(redo) <= STAGES.index(stage):
            continue
        done = state["stages"].get(stage, {}).get("status") in ("done", "started")
        if done:
            raise PipelineError(
                f"{path} was written with {key} {before!r}, not {value!r}, and its '{stage}' stage has run; "
                f"pass --redo {stage} to redo it (and what follows) with the new {key}, or choose another --out"
            )


def clear_from(run: PipelineRun, first: str) -> None:
    """Forget stage ``first`` and every later one, with their outputs and derived settings."""
    k = STAGES.index(first)
    for name in STAGES[k:]:
        run.state["stages"].pop(name, None)
    for key, stage in _DERIVED_BY.items():
        if STAGES.index(stage) >= k:
            run.state["derived"].pop(key, None)
    # Outputs a later stage would refuse or resume from: a stale checkpoint, a stale teacher.
    if k <= STAGES.index("teacher"):
        shutil.rmtree(run.teacher_dir, ignore_errors=True)
    if k <= STAGES.index("export"):
        shutil.rmtree(run.space_dir, ignore_errors=True)
    if k <= STAGES.index("distill"):
        shutil.rmtree(run.distill_dir, ignore_errors=True)
        if run.weights_dir.is_dir():  # the lean detector's files; its space/ folder stays
            for path in run.weights_dir.iterdir():
                if path.is_file():
                    path.unlink()


def overrides(game: str) -> list[dict[str, Any]]:
    """Per-game settings that stay in code, each with the reason it is there (for the card)."""
    from trainers.data.motion import COLOUR_SPLIT_GAMES
    from trainers.detector.config import make_config

    spec = get_game(game)
    out = [
        {
            "setting": "max_object_size",
            "value": list(spec.max_object_size),
            "why": "moc_envs.games: larger motion boxes are flashes or scrolling artefacts, dropped from the targets",
        }
    ]
    if spec.name in COLOUR_SPLIT_GAMES:
        out.append(
            {
                "setting": "split_colours",
                "value": True,
                "why": "trainers.data.motion.COLOUR_SPLIT_GAMES: its objects are single-coloured sprites that merge "
                "into one motion blob when they touch",
            }
        )
    start = make_config(spec.name, "gpu").z_pres_prior.start_step
    if start:
        out.append(
            {
                "setting": "z_pres_prior start step (of 5000)",
                "value": start,
                "why": "trainers.detector.config: the references' schedule for this game",
            }
        )
    return out
