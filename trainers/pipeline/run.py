"""One command from gameplay to shipped weights: ``moc-envs train --game Breakout``.

    moc-envs train --game Breakout [--out runs/breakout] [--preset auto|cpu|gpu] [--minutes N]
                   [--threads 1] [--redo STAGE] [--nproc N] [--data DIR] [--seed 0]
    python -m trainers.pipeline.run ...   (the same command)

Runs the stage modules in this process, one after the other, into ``--out``:

1. ``dataset``: :func:`trainers.data.dataset.build_dataset` into ``<out>/data`` (or ``--data``), with
   the HUD bands derived from a few hundred frames of random play (:func:`trainers.detector.derive.hud_bands`).
2. ``teacher``: SPACE+MOC training (:func:`trainers.detector.train.train`) into ``<out>/teacher``, with the
   z_scale prior derived from the motion boxes (:func:`trainers.detector.derive.z_scale_prior_mean`).
3. ``export``: the teacher to ``<out>/weights/<Game>/space`` (:func:`trainers.evaluate.export.export_run`)
   with ``max_box`` derived from the motion boxes (:func:`trainers.detector.derive.max_box`).
4. ``raw_frames``: full-size frames of the val and test splits
   (:func:`trainers.data.raw_frames.build_raw_frames`): the objects' colours for the classifier and
   OCAtari's vision mode for the evaluation.
5. ``classifier``: its z_what classifier, options chosen on the validation split
   (:func:`trainers.classify.classifier.fit_from_weights` with ``auto=True``).
6. ``distill``: the lean detector (:func:`trainers.detector.distill.distill`) into ``<out>/weights/<Game>``:
   what ships.
7. ``evaluate``: the lean detector on the test split beside OCAtari's vision mode
   (:func:`trainers.evaluate.detector.evaluate`), written beside the weights.
8. ``labels``: the offsets of the game's label links fitted for the lean detector's boxes
   (:func:`trainers.evaluate.label_offsets.calibrate`, two runs of random play: fit and held out) into the
   weights' ``labels.json``; nothing for a game without label links.
9. ``card``: the model card (:mod:`trainers.evaluate.card`) with the derived settings and the bar verdict.

``<out>/pipeline.json`` (written atomically after every change) records the finished stages,
each long stage's plan (its steps or epochs, fixed when it starts) and the derived settings.
Running the same command again continues at the first unfinished stage; the long stages resume
from their own checkpoints (``trainers.detector.train --resume``, ``trainers.detector.distill --resume``).
``--redo STAGE`` runs that stage and every later one again. The whole run holds
``<out>/train.lock`` (:mod:`trainers.run_lock`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moc_envs.errors import MocEnvsError
from moc_envs.games import get_game
from moc_envs.threads import DEFAULT_THREADS, THREADS_HELP, check_threads
from moc_envs.weights.atomic import atomic_write_text

__all__ = [
    "STAGES",
    "STATE_FILE",
    "STATE_FORMAT",
    "BUDGET_SHARES",
    "PipelineError",
    "PipelineConfig",
    "STAGE_FUNCS",
    "resolve_preset",
    "read_state",
    "probe_pairs",
    "run_pipeline",
    "format_summary",
    "build_parser",
    "main",
]

STAGES: tuple[str, ...] = ("dataset", "teacher", "export", "raw_frames", "classifier", "distill", "evaluate", "labels", "card")
"""The stages in the order they run."""
STATE_FILE = "pipeline.json"
STATE_FORMAT = "moc_envs.pipeline/1"
BUDGET_SHARES = {"teacher": 0.6, "distill": 0.25}
"""Share of ``--minutes`` each long stage plans for; the remaining 15% is the fixed-cost stages'
(dataset, classifier, raw frames, evaluation), which are not cut short."""
PRESETS = ("auto", "cpu", "gpu")
_DISTILL_EPOCHS = 12
_DISTILL_GLIMPSE_EPOCHS = 30
_SETTING_STAGE = {"data": "dataset", "seed": "dataset", "preset": "teacher"}
"""The first stage each identity setting of a run feeds: changing it needs --redo there."""
_DERIVED_BY = {"hud_bands": "dataset", "z_scale_prior": "teacher", "max_box": "export", "classifier": "classifier"}
_ESTIMATE_S = {"dataset": 210.0, "export": 5.0, "classifier": 60.0, "raw_frames": 60.0, "evaluate": 120.0, "labels": 90.0, "card": 2.0}
"""Rough duration of the fixed-cost stages on two CPU cores (seconds): the progress bar's weights.
Only their ratios matter; the bar's rate adapts to the machine as stages finish."""


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


def _hardware(device: str, threads: int) -> str:
    if device == "cuda":
        import torch

        return f"1x {torch.cuda.get_device_name(0)}"
    return f"{os.cpu_count()}-core CPU, {threads} torch thread(s)"


@dataclass
class _Run:
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
        return self.out / "teacher"

    @property
    def space_dir(self) -> Path:
        return self.out / "weights" / self.game / "space"

    @property
    def distill_dir(self) -> Path:
        return self.out / "distill"

    @property
    def weights_dir(self) -> Path:
        return self.out / "weights" / self.game

    def stage(self, name: str) -> dict[str, Any]:
        return self.state["stages"].setdefault(name, {})

    def save(self) -> None:
        atomic_write_text(self.out / STATE_FILE, json.dumps(self.state, indent=2) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def _identity(run: _Run) -> dict[str, Any]:
    return {"preset": run.preset, "data": str(run.data), "seed": run.cfg.seed}


def _check_identity(state: dict[str, Any], now: dict[str, Any], redo: str | None, path: Path) -> None:
    """Refuse to continue a run whose settings changed unless ``--redo`` reaches the stage they feed."""
    for key, value in now.items():
        before = state["settings"].get(key)
        if before is None or before == value:
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


def _clear_from(run: _Run, first: str) -> None:
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


# ---------------------------------------------------------------------------- stages
def probe_pairs(game: str, n: int, seed: int = 0) -> Any:
    """``n`` pairs of consecutive frames (n, 2, 210, 160, 3) uint8 of random play, eight or more episodes.

    The dataset builder's env (ALE v5, frameskip 4, sticky actions 0.25) and policy; after a
    warm-up of 100-500 steps a frame starts a pair with probability 1/4, as for the background.
    """
    import numpy as np

    from trainers.data.dataset import _make_env
    from trainers.data.policies import make_policy

    spec = get_game(game)
    env_seed, policy_seed, rng_seed = (int(s) for s in np.random.SeedSequence([seed, 12]).generate_state(3))
    rng = np.random.default_rng(rng_seed)
    env = _make_env(spec)
    policy = make_policy("random", int(env.action_space.n), policy_seed)
    pairs: list[Any] = []
    per_episode = max(1, n // 8)
    obs, _ = env.reset(seed=env_seed)
    steps, max_steps = 0, 2000 * n  # a game whose episodes end before the warm-up would loop forever
    try:
        while len(pairs) < n:
            alive, kept, step = True, 0, 0
            warm = 100 + int(rng.integers(0, 401))
            while alive and kept < per_episode and len(pairs) < n:
                prev = obs
                obs, _, terminated, truncated, _ = env.step(policy(obs))
                alive = not (terminated or truncated)
                step += 1
                steps += 1
                if steps > max_steps:
                    raise PipelineError(f"{spec.name}: {max_steps} steps of random play gave only {len(pairs)} of {n} frame pairs")
                if alive and step > warm and rng.random() < 0.25 and prev.any() and obs.any():
                    # Carnival's screen has 4 more rows of static border: keep the top 210.
                    pairs.append(np.stack([prev[:210], obs[:210]]))
                    kept += 1
            obs, _ = env.reset()
    finally:
        env.close()
    return np.stack(pairs)


def _stage_dataset(run: _Run) -> dict[str, Any]:
    from trainers.data.dataset import build_dataset
    from trainers.data.storage import META_FILE
    from trainers.detector.derive import hud_bands

    entry = run.stage("dataset")
    rebuild = run.cfg.redo == "dataset"
    if "hud_bands" not in entry.get("plan", {}):
        meta_path = run.data / META_FILE
        if meta_path.is_file() and not rebuild:
            meta = json.loads(meta_path.read_text())
            bands = meta.get("hud_regions", [])
            hud = {"bands": bands, "source": f"as recorded in {meta_path}, a dataset this run did not build"}
        else:
            run.log(f"deriving HUD bands from {run.cfg.probe_pairs} pairs of frames of random play")
            pairs = probe_pairs(run.game, run.cfg.probe_pairs, run.cfg.seed)
            found, runs = hud_bands(pairs)
            bands = [list(b) for b in found]
            hud = {
                "bands": bands,
                "source": f"trainers.detector.derive.hud_bands: screen-edge rows that change in place in {2 * len(pairs)} "
                "frames of random play and that no moving object crosses",
                "motion_runs": [r.as_json() for r in runs],
            }
        entry["plan"] = {"hud_bands": bands}
        run.state["derived"]["hud_bands"] = hud
        run.save()
    options = {"seed": run.cfg.seed, **run.cfg.dataset_options}
    meta_path = run.data / META_FILE
    if meta_path.is_file() and not rebuild:
        # An existing dataset (this run's interrupted build, or one given with --data) is
        # finished or continued with the settings it was started with.
        build = json.loads(meta_path.read_text()).get("build", {})
        options = {k: build[k] for k in _BUILD_KEYS if k in build}
    # --redo dataset rebuilds it; an interrupted rebuild continues when run again without --redo.
    report = build_dataset(
        run.game, run.data, force=rebuild, hud_regions=entry["plan"]["hud_bands"], progress=run.cfg.progress, **options
    )
    return {"data": str(run.data), "splits": {k: v["stacks"] for k, v in report["splits"].items()}}


_BUILD_KEYS = (
    "train", "val", "test", "seed", "policy", "grid", "T", "warmup", "warmup_jitter", "stacks_per_episode",
    "max_gap", "chunk_stacks", "background_frames", "hud_mask",
)  # fmt: skip
"""Settings in a dataset's meta.json that :func:`trainers.data.dataset.build_dataset` takes back."""


def _train_args(run: _Run, out: Path, steps: int, z_scale: tuple[float, float], **extra: Any) -> Any:
    from trainers.detector.train import Args

    fields = {
        "game": run.game, "data": str(run.data), "out": str(out), "preset": run.preset, "steps": steps,
        "z_scale_mean": f"{z_scale[0]},{z_scale[1]}", "seed": run.cfg.seed, "device": run.device,
        "threads": run.threads, "eval_split": "", "progress": run.cfg.progress,
    }  # fmt: skip
    options = {k: v for k, v in run.cfg.train_options.items() if k != "steps"}
    return Args(**{**fields, **options, **extra})


def _plan_teacher(run: _Run) -> dict[str, Any]:
    """Steps, z_scale prior and time cap of the teacher run, fixed before it starts."""
    from trainers.detector.config import make_config
    from trainers.detector.derive import Z_SCALE_QUANTILES, motion_box_sizes, z_scale_prior_mean

    sizes = motion_box_sizes(run.data, "train")
    if not len(sizes):
        raise PipelineError(f"the train split of {run.data} has no motion boxes: nothing moved in its frames")
    start, end = z_scale_prior_mean(sizes)
    table = make_config(run.game, run.preset).z_scale_prior
    run.state["derived"]["z_scale_prior"] = {
        "start": start,
        "end": end,
        "source": "trainers.detector.derive.z_scale_prior_mean: the logit of the geometric mean of the "
        f"{Z_SCALE_QUANTILES[0]} and {Z_SCALE_QUANTILES[1]} quantiles of the larger sides of {len(sizes)} training motion boxes as shares of the frame, "
        "the start 0.5 above it",
        "table": [table.start_value, table.end_value],
    }
    steps = int(run.cfg.train_options.get("steps") or make_config(run.game, run.preset).steps)
    plan: dict[str, Any] = {"steps": steps, "z_scale_mean": [start, end], "max_minutes": None, "calibration": None}
    if run.cfg.minutes is not None:
        budget = BUDGET_SHARES["teacher"] * run.cfg.minutes
        plan["max_minutes"] = round(budget, 2)
        if "steps" not in run.cfg.train_options:
            per_step = _seconds_per_step(run, steps, (start, end))
            fit = int(budget * 60 * 0.9 / per_step)
            plan["steps"] = max(1, min(steps, fit))
            plan["calibration"] = {"seconds_per_step": round(per_step, 3), "preset_steps": steps}
            run.log(
                f"teacher: {per_step:.2f} s per step here; {plan['steps']} of the preset's {steps} steps "
                f"fit in {budget:.1f} minutes ({BUDGET_SHARES['teacher']:.0%} of --minutes)"
            )
    return plan


def _seconds_per_step(run: _Run, steps: int, z_scale: tuple[float, float]) -> float:
    """Wall seconds of one training step, from a throw-away run (not compiled).

    Two calls into one scratch folder, to step 2 and then (resumed) to step 10: each call's
    time also holds its checkpoints and pictures at the end, which the difference cancels.
    """
    from trainers.detector.train import train

    scratch = run.out / "teacher_calibration"
    shutil.rmtree(scratch, ignore_errors=True)
    first, second = 2, 10
    try:
        a = train(_train_args(run, scratch, steps, z_scale, until_step=first, compile=False, progress=False))
        b = train(_train_args(run, scratch, steps, z_scale, until_step=second, resume=True, compile=False, progress=False))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    done = int(b["step"]) - first
    if done <= 0:  # a schedule of fewer steps than the calibration: its own time is the estimate
        return max(float(a["minutes"]) * 60 / max(int(a["step"]), 1), 1e-3)
    per_step = (float(b["minutes"]) - float(a["minutes"])) * 60 / done
    return per_step if per_step > 0 else float(b["minutes"]) * 60 / done


def _stage_teacher(run: _Run) -> dict[str, Any]:
    from trainers.detector.train import CHECKPOINT, train

    entry = run.stage("teacher")
    checkpoint = run.teacher_dir / CHECKPOINT
    if "plan" not in entry:
        if checkpoint.exists():
            raise PipelineError(
                f"{checkpoint} exists, but {run.out / STATE_FILE} does not record a teacher run there; "
                "move it away, or pass --redo teacher to train a new one"
            )
        entry["plan"] = _plan_teacher(run)
        run.save()
    plan = entry["plan"]
    z_scale = tuple(plan["z_scale_mean"])
    resume = checkpoint.exists()
    args = _train_args(run, run.teacher_dir, plan["steps"], z_scale, resume=resume, max_minutes=plan["max_minutes"])
    if run.cfg.nproc > 1:
        from trainers.detector.distributed import launch  # checked importable when the run started
        from trainers.detector.train import load_checkpoint

        code = launch(_train_argv(args), run.cfg.nproc)
        if code != 0:
            raise PipelineError(
                f"the {run.cfg.nproc} training processes stopped with exit code {code} (torchrun, see above); "
                "run the same command again to resume from the teacher's last checkpoint"
            )
        summary: dict[str, Any] = {"step": int(load_checkpoint(checkpoint)["step"])}
    else:
        summary = train(args)
    result = {"run": str(run.teacher_dir), "steps": plan["steps"], "step": summary.get("step"), "resumed": resume}
    if run.cfg.nproc > 1:
        result["processes"] = run.cfg.nproc
    if summary.get("step") is not None and summary["step"] < plan["steps"]:
        result["stopped_by_budget"] = f"stopped at step {summary['step']} of {plan['steps']} after {plan['max_minutes']} minutes"
    return result


def _train_argv(args: Any) -> list[str]:
    """``python -m trainers.detector.train`` arguments of a :class:`trainers.detector.train.Args` (for torchrun).

    ``--flag=value`` throughout: a value such as ``-2.0,-2.5`` would read as an option otherwise.
    """
    import dataclasses

    argv: list[str] = []
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        name = f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{name}" if value else f"--no-{name}")
        elif value is not None:
            argv.append(f"--{name}={value}")
    return argv


def _stage_export(run: _Run) -> dict[str, Any]:
    from trainers.detector.derive import MAX_BOX_MARGIN, MAX_BOX_QUANTILE
    from trainers.evaluate.export import export_run

    folder = export_run(run.teacher_dir, run.game, run.space_dir, MAX_BOX_MARGIN, run.data)
    cfg = json.loads((folder / "config.json").read_text())
    run.state["derived"]["max_box"] = {
        "max_box": cfg["max_box"],
        "source": f"trainers.detector.derive.max_box: {MAX_BOX_MARGIN:g} x the {MAX_BOX_QUANTILE} quantile of the training "
        "motion boxes' width and height, at least one grid cell",
    }
    return {"weights": str(folder), "step": cfg.get("step")}


def _stage_classifier(run: _Run) -> dict[str, Any]:
    from trainers.classify.classifier import fit_from_weights

    _stage_raw_frames(run)  # a run begun when this stage came later holds the test split's frames only
    report = fit_from_weights(run.game, run.space_dir, run.data, seed=run.cfg.seed, device=run.device, auto=True)
    info = json.loads((run.space_dir / "classifier.json").read_text())["info"]
    run.state["derived"]["classifier"] = info.get("options_search")
    return {"val_accuracy": report["val"]["accuracy"], "test_accuracy": report["test"]["accuracy"]}


def _plan_distill(run: _Run) -> dict[str, Any]:
    """Epochs of the distillation, fixed before it starts (scaled to the budget when there is one)."""
    epochs = int(run.cfg.distill_options.get("epochs", _DISTILL_EPOCHS))
    glimpse = int(run.cfg.distill_options.get("glimpse_epochs", _DISTILL_GLIMPSE_EPOCHS))
    plan: dict[str, Any] = {"epochs": epochs, "glimpse_epochs": glimpse, "calibration": None}
    if run.cfg.minutes is None or {"epochs", "glimpse_epochs"} & set(run.cfg.distill_options):
        return plan
    budget = BUDGET_SHARES["distill"] * run.cfg.minutes * 60
    fixed, per_epoch = _distill_costs(run)
    fit = math.floor(max(budget * 0.9 - fixed, 0.0) / per_epoch)
    plan["epochs"] = max(1, min(epochs, fit))
    plan["glimpse_epochs"] = max(1, round(glimpse * plan["epochs"] / epochs))
    plan["calibration"] = {"fixed_seconds": round(fixed, 1), "seconds_per_epoch": round(per_epoch, 1)}
    run.log(
        f"distillation: about {fixed / 60:.1f} minutes of teacher passes and {per_epoch / 60:.2f} per epoch here; "
        f"{plan['epochs']} of {epochs} epochs fit in {budget / 60:.1f} minutes ({BUDGET_SHARES['distill']:.0%} of --minutes)"
    )
    return plan


def _distill_costs(run: _Run) -> tuple[float, float]:
    """Seconds of the distillation's passes over the data (teacher posteriors, the glimpse
    pairs) and of one epoch, timed on one batch of the val split's frames."""
    import torch

    from moc_envs.perception.space_detector import SpaceDetector
    from trainers.data.reader import load_meta
    from trainers.detector import distill as d

    meta = load_meta(run.data)
    per_split = {s: meta["splits"][s]["stacks"] * meta["T"] for s in ("train", "val")}
    det = SpaceDetector.from_pretrained(run.space_dir, get_game(run.game), allow_unclassified=True)
    teacher = det.encoder.float()
    frames = d._frames(run.data, "val")[:64]
    student = d._student_of(teacher)
    opt = torch.optim.Adam(student.image_encoder.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    targets = torch.from_numpy(d.teacher_targets(teacher, frames))
    teacher_s = (time.perf_counter() - t0) / len(frames)
    step_s = 0.0
    for _ in range(2):  # the second step, past the first call's set-up
        t0 = time.perf_counter()
        loss = d._losses(student.image_encoder.raw(d._to_input(frames)), targets, student)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_s = (time.perf_counter() - t0) / len(frames)
    total = per_split["train"] + per_split["val"]
    # Teacher posteriors once, the glimpse pairs once more (teacher and student), per-epoch val agreement.
    fixed = total * teacher_s * 2 + per_split["train"] * step_s / 3
    per_epoch = per_split["train"] * step_s + per_split["val"] * step_s / 3
    return fixed, max(per_epoch, 1e-3)


def _stage_distill(run: _Run) -> dict[str, Any]:
    from trainers.detector.distill import DISTILL_CHECKPOINT, Args, distill

    entry = run.stage("distill")
    checkpoint = run.distill_dir / DISTILL_CHECKPOINT
    if "plan" not in entry:
        if checkpoint.exists():
            raise PipelineError(
                f"{checkpoint} exists, but {run.out / STATE_FILE} does not record a distillation there; "
                "move it away, or pass --redo distill"
            )
        entry["plan"] = _plan_distill(run)
        run.save()
    plan = entry["plan"]
    options = {k: v for k, v in run.cfg.distill_options.items() if k not in ("epochs", "glimpse_epochs")}
    info = distill(
        Args(
            game=run.game, teacher=str(run.space_dir), data=str(run.data), out=str(run.distill_dir),
            epochs=plan["epochs"], glimpse_epochs=plan["glimpse_epochs"], seed=run.cfg.seed,
            threads=run.threads, resume=checkpoint.exists(), export_to=str(run.weights_dir), **options,
        )
    )  # fmt: skip
    return {"weights": info["export"], "epochs": plan["epochs"], "glimpse_epochs": plan["glimpse_epochs"], "seconds": info["seconds"]}


def _stage_raw_frames(run: _Run) -> dict[str, Any]:
    from trainers.data.raw_frames import build_raw_frames

    # build_raw_frames keeps a split's frames that are already there.
    return {"files": {split: str(build_raw_frames(run.data, split, progress=run.cfg.progress)) for split in ("val", "test")}}


def _stage_evaluate(run: _Run) -> dict[str, Any]:
    from trainers.evaluate.detector import evaluate, write_report

    res = evaluate(run.game, run.data, weights=run.weights_dir, split="test", device=run.device, progress=run.cfg.progress)
    j, _ = write_report(res, run.weights_dir)
    return {"report": str(j)}


def _stage_labels(run: _Run) -> dict[str, Any]:
    from trainers.evaluate.label_offsets import calibrate, write_labels

    if not get_game(run.game).label_links:
        return {"labels": None, "why": f"{run.game} has no label links (info['labels'] estimates nothing)"}
    result = calibrate(run.game, run.weights_dir, threads=run.threads, progress=run.cfg.progress, **run.cfg.label_options)
    return {"labels": str(write_labels(result, run.weights_dir)), "offsets": result["offsets"]}


def _stage_card(run: _Run) -> dict[str, Any]:
    from trainers.evaluate.card import build_card, write_card

    hardware = run.cfg.hardware or _hardware(run.device, run.threads)
    card = build_card(run.game, run.weights_dir, run.teacher_dir, hardware, derived=run.state["derived"])
    j, m = write_card(card, run.weights_dir)
    return {"card": str(m), "ship": card["ship"]}


STAGE_FUNCS: dict[str, Callable[[_Run], dict[str, Any]]] = {
    # One function per stage, called with the resolved run; returns what the state records.
    "dataset": _stage_dataset,
    "teacher": _stage_teacher,
    "export": _stage_export,
    "classifier": _stage_classifier,
    "distill": _stage_distill,
    "raw_frames": _stage_raw_frames,
    "evaluate": _stage_evaluate,
    "labels": _stage_labels,
    "card": _stage_card,
}


def _overrides(game: str) -> list[dict[str, Any]]:
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


# ---------------------------------------------------------------------------- the run
def _weights(run: _Run) -> dict[str, float]:
    """Estimated seconds of each stage (the progress bar's units)."""
    est = dict(_ESTIMATE_S)
    teacher = run.state["stages"].get("teacher", {}).get("plan") or {}
    steps = teacher.get("steps") or run.cfg.train_options.get("steps")
    if run.cfg.minutes is not None:
        est["teacher"] = BUDGET_SHARES["teacher"] * run.cfg.minutes * 60
        est["distill"] = BUDGET_SHARES["distill"] * run.cfg.minutes * 60
    else:
        from trainers.detector.config import make_config

        steps = steps or make_config(run.game, run.preset).steps
        est["teacher"] = steps * (1.2 if run.device == "cpu" else 0.3)  # measured: 1.0-1.5 s a cpu step
        est["distill"] = 900.0
    return est


def _start(cfg: PipelineConfig, log: Callable[[str], None]) -> _Run:
    spec = get_game(cfg.game)
    threads = check_threads(cfg.threads)
    if cfg.redo is not None and cfg.redo not in STAGES:
        raise PipelineError(f"--redo must name a stage ({', '.join(STAGES)}), got {cfg.redo!r}")
    if cfg.minutes is not None and not cfg.minutes > 0:
        raise PipelineError(f"--minutes must be > 0, got {cfg.minutes}")
    if cfg.nproc < 1:
        raise PipelineError(f"--nproc must be >= 1, got {cfg.nproc}")
    if cfg.nproc > 1:
        try:
            from trainers.detector.distributed import launch  # noqa: F401
        except ImportError as err:
            raise PipelineError(
                f"--nproc {cfg.nproc} needs trainers.detector.distributed.launch(argv, nproc) to run trainers.detector.train under "
                f"torchrun, and this install has none ({err}); train with --nproc 1"
            ) from err
    if cfg.probe_pairs < 8:
        raise PipelineError(f"probe_pairs must be >= 8, got {cfg.probe_pairs}")
    preset, device, why = resolve_preset(cfg.preset)
    log(why)
    out = Path(cfg.out) if cfg.out is not None else Path("runs") / spec.name.lower()
    state = read_state(out, spec.name)
    # Without --data, a continued run keeps the dataset it started with.
    recorded = (state or {}).get("settings", {}).get("data")
    data = Path(cfg.data) if cfg.data is not None else Path(recorded) if recorded else out / "data"
    run = _Run(cfg, spec.name, out, data, preset, device, threads, state or {}, log)
    if state is None:
        run.state = {"format": STATE_FORMAT, "game": spec.name, "settings": {}, "stages": {}, "derived": {}}
    else:
        _check_identity(state, _identity(run), cfg.redo, out / STATE_FILE)
    run.state["settings"] = _identity(run)
    run.state["derived"]["overrides"] = _overrides(spec.name)
    return run


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the pipeline of ``cfg``; ``log`` prints its notes (default: stderr).

    Returns the summary: game, output and weights folders, the card, the preset, each stage's
    seconds, the shipped detector's test figures on moving objects (F1, category accuracy,
    OCAtari vision's F1), the card's verdict and the derived settings. Raises
    :class:`PipelineError` (or the failing stage's own error) when it cannot go on; the state
    file then says where the next run continues.
    """
    from tqdm import tqdm

    from moc_envs.threads import set_torch_threads
    from trainers.run_lock import RunLock

    log = log or (lambda text: tqdm.write(text, file=sys.stderr))
    run = _start(cfg, log)
    run.out.mkdir(parents=True, exist_ok=True)
    set_torch_threads(run.threads)
    with RunLock(run.out):
        if cfg.redo is not None:
            _clear_from(run, cfg.redo)
        first = next((s for s in STAGES if run.state["stages"].get(s, {}).get("status") != "done"), None)
        if first is not None:
            # A stage after an unfinished one is redone: its inputs may change.
            later = STAGES[STAGES.index(first) + 1 :]
            for name in later:
                if run.state["stages"].get(name, {}).get("status") == "done":
                    _clear_from(run, name)
                    break
        run.save()
        done = [s for s in STAGES if run.state["stages"].get(s, {}).get("status") == "done"]
        if done:
            log(f"{run.out / STATE_FILE}: stages {', '.join(done)} are done; " + (f"continuing at {first}" if first else "nothing left to run"))
        weights = _weights(run)
        bar = tqdm(
            total=round(sum(weights.values())), initial=round(sum(weights[s] for s in done)), disable=not cfg.progress or None,
            desc=f"{run.game}", unit="s", bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed} elapsed, about {remaining} left]",
        )  # fmt: skip
        try:
            for k, name in enumerate(STAGES):
                entry = run.stage(name)
                if entry.get("status") == "done":
                    continue
                bar.set_description(f"{run.game} {name} ({k + 1}/{len(STAGES)})")
                entry.update(status="started", started=entry.get("started") or _now())
                run.save()
                t0 = time.perf_counter()
                result = STAGE_FUNCS[name](run)
                seconds = time.perf_counter() - t0
                entry.update(status="done", finished=_now(), seconds=round(seconds, 1), result=result)
                run.save()
                weights = _weights(run)  # the teacher's plan refines its estimate
                bar.total = round(sum(weights.values()))
                bar.update(round(weights[name]))
        finally:
            bar.close()
        return _summary(run)


def _summary(run: _Run) -> dict[str, Any]:
    """What the run produced: folders, the test figures of the shipped detector, the verdict."""
    card_path = run.weights_dir / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    ev = (card.get("evaluation") or {}).get("detector", {}).get("moving", {})
    vision = (card.get("evaluation") or {}).get("ocatari_vision", {}).get("moving", {})
    return {
        "game": run.game,
        "out": str(run.out),
        "weights": str(run.weights_dir),
        "card": str(run.weights_dir / "card.md"),
        "preset": run.preset,
        "stages": {s: run.state["stages"].get(s, {}).get("seconds") for s in STAGES},
        "test_moving": {"f1": ev.get("f1"), "category_accuracy": ev.get("category_accuracy"), "ocatari_vision_f1": vision.get("f1")},
        "ship": card.get("ship"),
        "derived": {k: v for k, v in run.state["derived"].items() if k != "overrides"},
    }


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the few lines printed at the end of a run."""
    ship = summary.get("ship") or {}
    t = summary["test_moving"]
    d = summary["derived"]
    minutes = ", ".join(f"{s} {v / 60:.1f}" for s, v in summary["stages"].items() if v is not None)
    verdict = "met" if ship.get("meets_bar") else "NOT met"
    lines = [
        f"{summary['game']}: lean detector in {summary['weights']} (card: {summary['card']})",
        f"test split, moving objects: F1 {_f(t['f1'])} (bar >= {ship.get('f1_moving_required')}), category accuracy "
        f"{_f(t['category_accuracy'])} (bar >= {ship.get('category_accuracy_required')}): bar {verdict}; "
        f"OCAtari vision F1 {_f(t['ocatari_vision_f1'])}",
        f"minutes per stage: {minutes}",
    ]
    derived = []
    if d.get("hud_bands") is not None:
        derived.append("HUD " + (", ".join(f"rows {b[1]}-{b[1] + b[3] - 1}" for b in d["hud_bands"]["bands"]) or "none"))
    if d.get("z_scale_prior"):
        derived.append(f"z_scale prior {d['z_scale_prior']['start']} -> {d['z_scale_prior']['end']}")
    if d.get("max_box"):
        derived.append(f"max_box {d['max_box']['max_box'][0]} x {d['max_box']['max_box'][1]} px")
    if d.get("classifier"):
        c = d["classifier"].get("chosen") or {}
        derived.append("classifier " + " ".join(f"{k}={v}" for k, v in c.items()))
    lines.append("derived: " + "; ".join(derived))
    root = Path(summary["weights"]).parent
    lines.append(f'use it: gym.make("MOC/{summary["game"]}-v0", weights="{root}")')
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line
class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows every option's default."""


EPILOG = f"""\
stages (each resumable: run the same command again to continue where it stopped):
  {' -> '.join(STAGES)}
  state: <out>/{STATE_FILE}; --redo STAGE runs STAGE and every later one again.

--minutes N splits a wall-time budget over the long stages: the teacher's training plans for
{BUDGET_SHARES['teacher']:.0%} of N (its steps from the speed of ten calibration steps; it stops at that
time in any case), the distillation for {BUDGET_SHARES['distill']:.0%} (its epochs from the speed of one
batch). The other stages (dataset, classifier, raw frames, evaluation, card: minutes on a
CPU) are not cut short. Without --minutes the preset's full schedules run (cpu: 1500 steps,
30-60 minutes of training on 2 cores; gpu: MOC's 5000 steps)."""


def build_parser(prog: str = "python -m trainers.pipeline.run") -> argparse.ArgumentParser:
    """The command line of ``moc-envs train`` (also ``python -m trainers.pipeline.run``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a detector for a game from gameplay alone: dataset, SPACE+MOC teacher, lean\n"
        "detector, test-split evaluation beside OCAtari's vision mode, model card and the bar verdict.",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. Breakout")
    p.add_argument("--out", type=Path, default=argparse.SUPPRESS, help="output folder (default: runs/<game>)")
    p.add_argument("--preset", choices=PRESETS, default="auto", help="auto: gpu where torch sees CUDA, cpu otherwise")
    p.add_argument(
        "--minutes", type=float, default=argparse.SUPPRESS,
        help="wall-time budget split over the long stages, see below (default: none, the preset's full schedules)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=THREADS_HELP)
    p.add_argument("--redo", choices=STAGES, default=argparse.SUPPRESS, help="run this stage and every later one again (default: continue at the first unfinished one)")
    p.add_argument(
        "--nproc", type=int, default=1,
        help="data-parallel processes of the teacher's training (>1: torchrun and DDP, trainers.detector.distributed; "
        "its --batch-stacks is per process)",
    )  # fmt: skip
    p.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="dataset folder, built there when missing (default: <out>/data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset, the training and the classifier")
    p.add_argument("--hardware", default=argparse.SUPPRESS, help="what the card says it was trained on (default: this machine's CPU or GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m trainers.pipeline.run") -> int:
    """Command-line entry point; returns the exit status (0 when the run finished, verdict either way)."""
    args = build_parser(prog).parse_args(argv)
    cfg = PipelineConfig(
        game=args.game, out=getattr(args, "out", None), preset=args.preset, minutes=getattr(args, "minutes", None),
        threads=args.threads, redo=getattr(args, "redo", None), nproc=args.nproc, data=getattr(args, "data", None),
        seed=args.seed, hardware=getattr(args, "hardware", None), progress=not args.no_progress,
    )  # fmt: skip
    try:
        summary = run_pipeline(cfg)
    except MocEnvsError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # a training extra that this install lacks
        print(f"{prog}: error: {err}; install the training dependencies: pip install -e \".[train]\" and OCAtari", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
