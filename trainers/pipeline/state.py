"""The settings and the record of a ``moc-envs train`` run: the stages, the configuration, the
preset, the state file ``<out>/pipeline.json`` that says where a run continues, and the budget's
arithmetic (what ``--minutes`` leaves each stage, and the report on it).

:class:`PipelineRun` is one resolved run (paths, settings, the state and how to save it); the
stages (:mod:`trainers.pipeline.stages`) read and extend it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
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
    "PLAN_SLACK",
    "NOMINAL_SECONDS",
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
    "split_stacks",
    "expected_seconds",
    "spent_seconds",
    "seconds_left",
    "teacher_seconds",
    "distill_seconds",
    "fit_distill",
    "budget_report",
    "budget_lines",
]

STAGES: tuple[str, ...] = (
    "dataset", "teacher", "export", "raw_frames", "classifier", "distill", "extents", "evaluate", "labels", "hud",
    "readouts", "held_out", "card",
)  # fmt: skip
"""The stages in the order they run."""
STATE_FILE = "pipeline.json"
STATE_FORMAT = "moc_envs.pipeline/1"
BUDGET_SHARES = {"teacher": 0.7, "distill": 0.3}
"""How the long stages share their time: ``--minutes`` (the whole run, the dataset included) less
what the other stages take. The teacher plans for its share, or for all but what the
distillation's full schedule needs when that is more; the distillation gets what is left when it
starts (:func:`seconds_left`)."""
PLAN_SLACK = 0.9
"""A long stage plans the steps or epochs that fill this share of its time; checkpoints, the
pictures and timing noise take the rest."""
NOMINAL_SECONDS: dict[str, tuple[float, tuple[str, ...]]] = {
    "dataset": (210.0, ("train", "val", "test")),
    "export": (5.0, ()),
    "raw_frames": (60.0, ("val", "test")),
    "classifier": (60.0, ()),
    "evaluate": (120.0, ("test",)),
    "extents": (60.0, ()),
    "labels": (90.0, ()),
    "hud": (120.0, ()),
    "readouts": (150.0, ()),
    "held_out": (150.0, ()),
    "card": (2.0, ()),
}
"""The stages that are never cut short: seconds on two CPU cores with the default splits, and the
splits their time grows with (measured on the runs behind the shipped cards). A run scales them
by how fast its own finished stages were (:func:`expected_seconds`)."""
_DEFAULT_SPLITS = {"train": 4096, "val": 512, "test": 512}
"""Stacks of :func:`trainers.data.dataset.build_dataset`'s default splits."""
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
    extents_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of :func:`trainers.classify.extents.collect_named_boxes` (``frames``, ``seeds``)."""
    hud_steps: int = 3000
    """Steps of each fitting play of the HUD reader (:class:`trainers.hud.train.Args`)."""
    readouts_steps: int = 3000
    """Steps of the fitting and of the held-out play of the readouts (:func:`trainers.readouts.cli.fit_readouts`)."""
    held_out_frames: int = 320
    """Recorded frames per policy of the held-out evaluation (:func:`trainers.evaluate.held_out.collect`)."""
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
    stage_started: float | None = None
    """``time.perf_counter()`` when the running stage began (None between stages)."""

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


# ---------------------------------------------------------------------------- budget
def split_stacks(run: PipelineRun) -> dict[str, int]:
    """Stacks of each split of the run's dataset: its meta.json's, or what the build will make."""
    meta = run.data / "meta.json"
    if meta.is_file():
        try:
            splits = json.loads(meta.read_text()).get("splits", {})
            return {k: int(splits[k]["stacks"]) for k in _DEFAULT_SPLITS}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # the dataset stage reports a damaged meta.json
    return {k: int(run.cfg.dataset_options.get(k, n)) for k, n in _DEFAULT_SPLITS.items()}


def _nominal(run: PipelineRun, name: str) -> float:
    """Two-core seconds of fixed-cost stage ``name`` on this run's splits."""
    seconds, splits = NOMINAL_SECONDS[name]
    if not splits:
        return seconds
    stacks = split_stacks(run)
    if name == "dataset" and (run.data / "meta.json").is_file():
        # A dataset this run did not build, or one whose build stopped: its unfinished splits only.
        try:
            meta = json.loads((run.data / "meta.json").read_text()).get("splits", {})
            stacks = {k: 0 if meta.get(k, {}).get("done") else v for k, v in stacks.items()}
        except (OSError, ValueError, AttributeError):
            pass
    return seconds * sum(stacks[k] for k in splits) / sum(_DEFAULT_SPLITS[k] for k in splits)


def _speed(run: PipelineRun) -> float:
    """How much longer than :data:`NOMINAL_SECONDS` this machine's finished fixed-cost stages took
    (1.0 before any has run). The dataset counts when this run built it, against the estimate
    recorded before it started (``budget.dataset_nominal``)."""
    nominal_of = {n: _nominal(run, n) for n in NOMINAL_SECONDS if n != "dataset"}
    nominal_of["dataset"] = float(run.state.get("budget", {}).get("dataset_nominal") or 0.0)
    done = [
        (float(e["seconds"]), nominal_of[n])
        for n, e in run.state["stages"].items()
        if n in nominal_of and nominal_of[n] >= 1.0 and e.get("status") == "done" and e.get("seconds") is not None
    ]
    took, nominal = sum(t for t, _ in done), sum(n for _, n in done)
    return min(max(took / nominal, 0.2), 5.0) if nominal > 0 and took > 0 else 1.0


def expected_seconds(run: PipelineRun, name: str) -> float:
    """Seconds fixed-cost stage ``name`` takes in this run: as recorded once it is done, else
    its nominal time scaled to this machine."""
    entry = run.state["stages"].get(name, {})
    if entry.get("status") == "done" and entry.get("seconds") is not None:
        return float(entry["seconds"])
    return _nominal(run, name) * (1.0 if name == "dataset" else _speed(run))


def spent_seconds(run: PipelineRun) -> float:
    """Wall seconds the run has taken so far: its finished stages, the probes before them and
    the running stage up to now."""
    done = sum(float(e.get("seconds") or 0.0) for e in run.state["stages"].values() if e.get("status") == "done")
    probes = float(run.state.get("budget", {}).get("probe_seconds", 0.0))
    running = time.perf_counter() - run.stage_started if run.stage_started is not None else 0.0
    return done + probes + running


def seconds_left(run: PipelineRun, stage: str) -> float:
    """What ``--minutes`` leaves for ``stage`` and the long stages after it: the budget less the
    time spent and what the fixed-cost stages still to come are expected to take (may be < 0)."""
    if run.cfg.minutes is None:
        raise PipelineError("seconds_left needs a budget (--minutes)")
    later = STAGES[STAGES.index(stage) + 1 :]
    stages = run.state["stages"]
    coming = sum(expected_seconds(run, n) for n in later if n in NOMINAL_SECONDS and stages.get(n, {}).get("status") != "done")
    return run.cfg.minutes * 60 - spent_seconds(run) - coming


def teacher_seconds(left: float, distill_need: float | None = None, distill_least: float = 0.0) -> float:
    """The teacher's time out of ``left`` seconds for the long stages: its share of them, or all
    but ``distill_need`` (what the distillation's full schedule needs) when that is more, and
    never so much that less than ``distill_least`` (one epoch of each part) is left."""
    share = BUDGET_SHARES["teacher"] * left
    if distill_need is not None:
        share = max(share, left - distill_need)
    return min(share, left - distill_least)


def distill_seconds(costs: dict[str, float], epochs: int, glimpse_epochs: int) -> float:
    """Seconds of a distillation of ``epochs`` and ``glimpse_epochs`` at ``costs``
    (:func:`trainers.pipeline.stages.distill_costs`)."""
    glimpse = costs["glimpse_fixed"] + glimpse_epochs * costs["per_glimpse_epoch"] if glimpse_epochs else 0.0
    return costs["targets"] + epochs * costs["per_epoch"] + glimpse


def fit_distill(seconds: float, costs: dict[str, float], epochs: int, glimpse_epochs: int) -> tuple[int, int]:
    """The most epochs (and glimpse epochs, in proportion) of the full schedule whose distillation
    fills :data:`PLAN_SLACK` of ``seconds``; one of each at least."""
    for e in range(epochs, 0, -1):
        g = max(1, round(glimpse_epochs * e / epochs)) if glimpse_epochs else 0
        if distill_seconds(costs, e, g) <= PLAN_SLACK * seconds:
            return e, g
    return 1, min(glimpse_epochs, 1)


def budget_report(run: PipelineRun) -> dict[str, Any]:
    """Whether ``--minutes`` was enough: each long stage's steps or epochs (run, planned, the full
    schedule's), the wall time against the budget, and the budget the full schedules need here,
    from the times this run measured."""
    st = run.state["stages"]
    teacher, distill = st.get("teacher", {}), st.get("distill", {})
    tplan, dplan = teacher.get("plan") or {}, distill.get("plan") or {}
    tres, dres = teacher.get("result") or {}, distill.get("result") or {}
    report: dict[str, Any] = {
        "minutes": run.cfg.minutes,
        "wall_minutes": round(spent_seconds(run) / 60, 1),
        "teacher": {"steps": tres.get("step"), "planned": tplan.get("steps"), "full": tplan.get("full_steps", tplan.get("steps"))},
        "distill": {
            "epochs": dres.get("epochs"), "planned": dplan.get("epochs"), "full": dplan.get("full_epochs", dplan.get("epochs")),
            "glimpse_epochs": dres.get("glimpse_epochs"), "glimpse_full": dplan.get("full_glimpse_epochs", dplan.get("glimpse_epochs")),
        },
        "stopped": [r["stopped_by_budget"] for r in (tres, dres) if r.get("stopped_by_budget")],
    }  # fmt: skip
    t, d = report["teacher"], report["distill"]
    report["short"] = any(
        run_ is not None and full is not None and run_ < full
        for run_, full in ((t["steps"], t["full"]), (d["epochs"], d["full"]), (d["glimpse_epochs"], d["glimpse_full"]))
    )
    # The full schedules at the speeds measured in this run.
    fixed = sum(expected_seconds(run, n) for n in NOMINAL_SECONDS)
    probes = float(run.state.get("budget", {}).get("probe_seconds", 0.0))
    need = None
    if teacher.get("seconds") and t["steps"] and t["full"]:
        need = float(teacher["seconds"]) * t["full"] / t["steps"]
    costs = dplan.get("calibration") if "per_epoch" in (dplan.get("calibration") or {}) else None
    if need is not None and distill.get("seconds") and d["epochs"] and d["full"]:
        ran = float(distill["seconds"])
        if costs is not None:
            ran *= distill_seconds(costs, d["full"], d["glimpse_full"] or 0) / max(
                distill_seconds(costs, d["epochs"], d["glimpse_epochs"] or 0), 1e-9
            )
        else:
            ran *= d["full"] / d["epochs"]
        report["needed_minutes"] = math.ceil((fixed + probes + (need + ran) / PLAN_SLACK) / 60)
    else:
        report["needed_minutes"] = run.state.get("budget", {}).get("needed_minutes")
    return report


def budget_lines(budget: dict[str, Any], meets_bar: bool | None, preset: str) -> list[str]:
    """The summary's lines on the budget: steps and epochs run against planned, the wall time
    against ``--minutes``, and when the budget was too small, what to give instead."""
    if not budget:
        return []
    minutes, wall, needed = budget.get("minutes"), budget.get("wall_minutes"), budget.get("needed_minutes")
    lines = []
    if minutes is None:
        lines.append(f"budget: none (no --minutes), the full schedules; wall time {wall} minutes")
    else:
        over = wall - minutes
        lines.append(
            f"budget: --minutes {minutes:g} (the dataset stage included), wall time {wall} minutes: "
            + (f"{over:.1f} over" if over > 0.05 else f"{-over:.1f} to spare")
        )
    t, d = budget.get("teacher") or {}, budget.get("distill") or {}
    ran = []
    if t.get("steps") is not None:
        text = f"teacher {t['steps']} steps" + (f" of {t['planned']} planned" if t.get("planned") is not None else "")
        ran.append(text + (f" ({t['full']} in the {preset} preset's schedule)" if t.get("full") is not None else ""))
    if d.get("epochs") is not None:
        text = f"distillation {d['epochs']} epochs" + (f" of {d['planned']} planned" if d.get("planned") is not None else "")
        text += f" ({d['full']} in the full schedule)" if d.get("full") is not None else ""
        if d.get("glimpse_full"):
            text += f", glimpse encoder {d['glimpse_epochs']} of {d['glimpse_full']}"
        ran.append(text)
    if ran:
        lines.append("ran: " + "; ".join(ran))
    lines.extend(f"stopped early: {s}" for s in budget.get("stopped") or [])
    more = f"about --minutes {needed} runs the full schedules on this machine" if needed else "a larger --minutes runs more of them"
    if minutes is not None and budget.get("short"):
        if meets_bar is None:  # before the evaluation: the card's own verdict follows
            lines.append(f"less than the full schedules ran; {more}")
        elif meets_bar:
            lines.append(f"the bar was met in less than the full schedules; {more}")
        else:
            lines.append(
                f"the budget was too small: the bar was missed after less than the full schedules; a larger budget is "
                f"the first thing to try: {more}"
            )
    elif meets_bar is False and (t.get("steps") is not None or d.get("epochs") is not None):
        lines.append("the full schedules ran: a larger budget would not help; the card says where the detector goes wrong")
    return lines


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
