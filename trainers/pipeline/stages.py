"""The stages of ``moc-envs train``, one function each, and the long stages' plans.

Each stage function takes the resolved :class:`~trainers.pipeline.state.PipelineRun` and returns
what the state file records of it (:data:`STAGE_FUNCS`). The teacher's steps and the
distillation's epochs are fixed when the stage starts (:func:`_plan_teacher`,
:func:`_plan_distill`), scaled to ``--minutes`` from a few timed steps when there is a budget.
:func:`probe_pairs` plays the random frames the HUD bands are derived from.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moc_envs.games import get_game
from trainers.pipeline.state import (
    PLAN_SLACK,
    STATE_FILE,
    PipelineError,
    PipelineRun,
    budget_lines,
    budget_report,
    distill_seconds,
    fit_distill,
    hardware,
    seconds_left,
    spent_seconds,
    split_stacks,
    teacher_seconds,
)

__all__ = [
    "STAGE_FUNCS",
    "probe_pairs",
    "probe_teacher_step",
    "probe_distill",
    "distill_costs",
]

_DISTILL_EPOCHS = 12
_DISTILL_GLIMPSE_EPOCHS = 30


def probe_pairs(game: str, n: int, seed: int = 0) -> Any:
    """``n`` pairs of consecutive frames (n, 2, 210, 160, 3) uint8 of random play, eight or more episodes.

    The dataset builder's env (ALE v5, frameskip 4, sticky actions 0.25) and policy; after a
    warm-up of 100-500 steps a frame starts a pair with probability 1/4, as for the background.
    """
    import numpy as np

    from trainers.data.collect import make_env
    from trainers.data.policies import make_policy

    spec = get_game(game)
    env_seed, policy_seed, rng_seed = (int(s) for s in np.random.SeedSequence([seed, 12]).generate_state(3))
    rng = np.random.default_rng(rng_seed)
    env = make_env(spec)
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


def _stage_dataset(run: PipelineRun) -> dict[str, Any]:
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
    # The HUD bands above come from clean frames (a bar is no HUD); the dataset gets the bars.
    options = {
        "seed": run.cfg.seed, "distractors": run.cfg.distractors, "distractor_seed": run.cfg.distractor_seed,
        **run.cfg.dataset_options,
    }  # fmt: skip
    meta_path = run.data / META_FILE
    if meta_path.is_file() and not rebuild:
        # An existing dataset (this run's interrupted build, or one given with --data) is
        # finished or continued with the settings it was started with.
        build = json.loads(meta_path.read_text()).get("build", {})
        options = {k: build[k] for k in _BUILD_KEYS if k in build}
        # A dataset built before static targets existed has none: continued as it was built.
        options["static_targets"] = bool(build.get("static_targets", False))
    # --redo dataset rebuilds it; an interrupted rebuild continues when run again without --redo.
    report = build_dataset(
        run.game, run.data, force=rebuild, hud_regions=entry["plan"]["hud_bands"], progress=run.cfg.progress, **options
    )
    return {"data": str(run.data), "splits": {k: v["stacks"] for k, v in report["splits"].items()}}


_BUILD_KEYS = (
    "train", "val", "test", "seed", "policy", "grid", "T", "warmup", "warmup_jitter", "stacks_per_episode",
    "max_gap", "chunk_stacks", "background_frames", "hud_mask", "distractors", "distractor_seed",
)  # fmt: skip
"""Settings in a dataset's meta.json that :func:`trainers.data.dataset.build_dataset` takes back."""


def _train_args(run: PipelineRun, out: Path, steps: int, z_scale: tuple[float, float], **extra: Any) -> Any:
    from trainers.detector.arguments import Args

    fields = {
        "game": run.game, "data": str(run.data), "out": str(out), "preset": run.preset, "steps": steps,
        "z_scale_mean": f"{z_scale[0]},{z_scale[1]}", "seed": run.cfg.seed, "device": run.device,
        "threads": run.threads, "eval_split": "", "progress": run.cfg.progress,
    }  # fmt: skip
    options = {k: v for k, v in run.cfg.train_options.items() if k != "steps"}
    return Args(**{**fields, **options, **extra})


def _plan_teacher(run: PipelineRun) -> dict[str, Any]:
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
    plan: dict[str, Any] = {"steps": steps, "full_steps": steps, "z_scale_mean": [start, end], "max_minutes": None, "calibration": None}
    if run.cfg.minutes is None:
        return plan
    per_step = None if "steps" in run.cfg.train_options else _seconds_per_step(run, steps, (start, end))
    left = seconds_left(run, "teacher")  # after the calibration: its time is spent
    recorded = run.state.get("budget", {})
    need, least = recorded.get("distill_seconds"), float(recorded.get("distill_least_seconds") or 0.0)
    budget = max(teacher_seconds(left, None if need is None else need / PLAN_SLACK, least / PLAN_SLACK), 0.0)
    plan["max_minutes"] = round(budget / 60, 2)
    if per_step is not None:
        plan["steps"] = max(1, min(steps, int(budget * PLAN_SLACK / per_step)))
        plan["calibration"] = {"seconds_per_step": round(per_step, 3), "preset_steps": steps}
    spent = spent_seconds(run)
    if budget <= 0:
        run.log(
            f"teacher: --minutes {run.cfg.minutes:g} leaves the teacher no time ({spent / 60:.1f} minutes spent so far, about "
            f"{(run.cfg.minutes * 60 - spent - left) / 60:.1f} for the stages that are not cut short and {least / 60:.1f} for the "
            f"distillation's least): it trains {plan['steps']} step(s); a larger --minutes is needed for a useful detector"
        )
    elif per_step is not None:
        run.log(
            f"teacher: {per_step:.2f} s a step here; {plan['steps']} of the preset's {steps} steps fit in its "
            f"{budget / 60:.1f} minutes (--minutes {run.cfg.minutes:g} less {spent / 60:.1f} spent so far and about "
            f"{(run.cfg.minutes * 60 - spent - left) / 60:.1f} for the stages that are not cut short, shared with the distillation)"
        )
    return plan


def _seconds_per_step(run: PipelineRun, steps: int, z_scale: tuple[float, float]) -> float:
    """Wall seconds of one training step, from a throw-away run (not compiled).

    Two calls into one scratch folder, to step 2 and then (resumed) to step 10: each call's
    time also holds its checkpoints and pictures at the end, which the difference cancels.
    """
    from trainers.detector.train import train

    scratch = run.out / "teacher_calibration"
    shutil.rmtree(scratch, ignore_errors=True)
    first, second = 2, 10
    try:
        # Boxes at the prior's size: the untrained encoder's half-frame boxes make the first
        # steps 3-4 times dearer than the rest of the run (trainers.detector.train.start_boxes_at).
        quiet = {"compile": False, "progress": False, "boxes_at_prior": True}
        a = train(_train_args(run, scratch, steps, z_scale, until_step=first, **quiet))
        b = train(_train_args(run, scratch, steps, z_scale, until_step=second, resume=True, **quiet))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    done = int(b["step"]) - first
    if done <= 0:  # a schedule of fewer steps than the calibration: its own time is the estimate
        return max(float(a["minutes"]) * 60 / max(int(a["step"]), 1), 1e-3)
    per_step = (float(b["minutes"]) - float(a["minutes"])) * 60 / done
    return per_step if per_step > 0 else float(b["minutes"]) * 60 / done


def _recorded_plan(
    run: PipelineRun,
    stage: str,
    checkpoint: Path,
    planner: Callable[[PipelineRun], dict[str, Any]],
    unrecorded: str,
) -> dict[str, Any]:
    """The stage's plan from the state file, made (and saved) on its first run.

    A checkpoint with no recorded plan belongs to some other run: resuming it would mix two
    runs, so it is refused with ``unrecorded`` saying what to do.
    """
    entry = run.stage(stage)
    if "plan" not in entry:
        if checkpoint.exists():
            raise PipelineError(
                f"{checkpoint} exists, but {run.out / STATE_FILE} does not record {unrecorded}"
            )
        entry["plan"] = planner(run)
        run.save()
    return entry["plan"]


def _stage_teacher(run: PipelineRun) -> dict[str, Any]:
    from trainers.detector.train import CHECKPOINT, train

    checkpoint = run.teacher_dir / CHECKPOINT
    plan = _recorded_plan(
        run, "teacher", checkpoint, _plan_teacher,
        "a teacher run there; move it away, or pass --redo teacher to train a new one",
    )  # fmt: skip
    z_scale = tuple(plan["z_scale_mean"])
    resume = checkpoint.exists()
    args = _train_args(run, run.teacher_dir, plan["steps"], z_scale, resume=resume, max_minutes=plan["max_minutes"])
    if run.cfg.nproc > 1:
        from trainers.detector.checkpoint import load_checkpoint
        from trainers.detector.distributed import launch  # checked importable when the run started

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
        full = plan.get("full_steps", plan["steps"])
        run.log(
            f"teacher: time ran out at step {summary['step']} of the {plan['steps']} planned ({full} in the full schedule) "
            f"after its {plan['max_minutes']} minutes; the later stages go on with this teacher"
        )
    return result


def _train_argv(args: Any) -> list[str]:
    """``moc-envs train-detector`` arguments of a :class:`trainers.detector.train.Args` (for torchrun).

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


def _stage_export(run: PipelineRun) -> dict[str, Any]:
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


def _stage_classifier(run: PipelineRun) -> dict[str, Any]:
    from trainers.classify.classifier import fit_from_weights

    _stage_raw_frames(run)  # a run begun when this stage came later holds the test split's frames only
    report = fit_from_weights(run.game, run.space_dir, run.data, seed=run.cfg.seed, device=run.device, auto=True)
    info = json.loads((run.space_dir / "classifier.json").read_text())["info"]
    run.state["derived"]["classifier"] = info.get("options_search")
    return {"val_accuracy": report["val"]["accuracy"], "test_accuracy": report["test"]["accuracy"]}


def _plan_distill(run: PipelineRun) -> dict[str, Any]:
    """Epochs and time cap of the distillation, fixed before it starts: with a budget, what fits
    in what is left of it."""
    epochs = int(run.cfg.distill_options.get("epochs", _DISTILL_EPOCHS))
    glimpse = int(run.cfg.distill_options.get("glimpse_epochs", _DISTILL_GLIMPSE_EPOCHS))
    plan: dict[str, Any] = {
        "epochs": epochs, "glimpse_epochs": glimpse, "full_epochs": epochs, "full_glimpse_epochs": glimpse,
        "calibration": None, "max_minutes": None, "glimpse_minutes": 0.0,
    }  # fmt: skip
    if run.cfg.minutes is None or {"epochs", "glimpse_epochs"} & set(run.cfg.distill_options):
        return plan
    costs = _distill_costs(run)
    left = seconds_left(run, "distill")
    budget = max(left, 0.0)
    plan["epochs"], plan["glimpse_epochs"] = fit_distill(budget, costs, epochs, glimpse)
    planned = distill_seconds(costs, plan["epochs"], plan["glimpse_epochs"])
    glimpse_part = planned - distill_seconds(costs, plan["epochs"], 0)
    plan["max_minutes"] = round(budget / 60, 2)
    plan["glimpse_minutes"] = round(budget * glimpse_part / planned / 60, 2) if planned > 0 else 0.0
    plan["calibration"] = {k: round(v, 2) for k, v in costs.items()}
    if left <= 0:
        run.log(
            f"distillation: --minutes {run.cfg.minutes:g} is spent ({spent_seconds(run) / 60:.1f} minutes so far): it runs "
            f"{plan['epochs']} epoch(s) and {plan['glimpse_epochs']} of the glimpse encoder; a larger --minutes is needed"
        )
    else:
        run.log(
            f"distillation: about {planned / 60:.1f} minutes here for {plan['epochs']} of {epochs} epochs and "
            f"{plan['glimpse_epochs']} of {glimpse} of the glimpse encoder; {budget / 60:.1f} minutes of --minutes "
            f"{run.cfg.minutes:g} are left for it"
        )
    return plan


def _distill_costs(run: PipelineRun) -> dict[str, float]:
    """:func:`distill_costs` of the exported teacher on the val split's first frames."""
    from moc_envs.perception.space_detector import SpaceDetector
    from trainers.data.reader import load_meta
    from trainers.detector import distill as d

    meta = load_meta(run.data)
    per_split = {s: meta["splits"][s]["stacks"] * meta["T"] for s in ("train", "val")}
    det = SpaceDetector.from_pretrained(run.space_dir, get_game(run.game), allow_unclassified=True)
    options = run.cfg.distill_options
    return distill_costs(
        det.encoder.float(), d._frames(run.data, "val")[:64], per_split["train"], per_split["val"],
        int(options.get("glimpse_pairs", 65536)), int(options.get("batch", 64)),
    )  # fmt: skip


def distill_costs(
    teacher: Any, frames: Any, n_train: int, n_val: int, max_pairs: int, batch: int, objects: float | None = None
) -> dict[str, float]:
    """Seconds of a distillation's parts on this machine, timed on ``frames`` (F, 128, 128, 3) uint8.

    ``targets``: the teacher's posteriors on the train and val frames; ``per_epoch``: an epoch of
    the lean image encoder and its val agreement; ``glimpse_fixed``: collecting the glimpse pairs
    (the teacher and the student on the frames that give them); ``per_glimpse_epoch``: an epoch of
    the lean glimpse encoder over the pairs. ``objects``: objects a frame (None: the teacher's
    present cells on ``frames``).
    """
    import torch

    from trainers.detector import distill as d

    frames = frames[: max(1, min(len(frames), batch))]
    x = d._to_input(frames)
    t0 = time.perf_counter()
    with torch.inference_mode():
        raw = teacher.image_encoder.raw(x).flatten(2).transpose(1, 2)
    teacher_s = (time.perf_counter() - t0) / len(frames)
    if objects is None:
        present = torch.sigmoid(teacher.cfg.pres_squash * torch.tanh(raw[..., 0])) > 0.5
        objects = float(present.sum(1).float().mean())
    targets = raw[..., list(d.TARGET_CHANNELS)].clone()
    student = d._student_of(teacher)
    opt = torch.optim.Adam(student.image_encoder.parameters(), lr=1e-3)
    step_s = _second_of_two(lambda: _step(opt, d._losses(student.image_encoder.raw(x), targets, student)["total"])) / len(frames)
    glimpse = d._with_lean_glimpses(student).glimpse_encoder
    g_opt = torch.optim.Adam(glimpse.parameters(), lr=1e-3)
    g_in = torch.rand(256, 3, teacher.cfg.glimpse, teacher.cfg.glimpse)
    glimpse_s = _second_of_two(lambda: _step(g_opt, glimpse(g_in)[0].square().mean()))
    pairs = min(float(max_pairs), n_train * max(objects, 0.0))
    pair_frames = min(float(n_train), pairs / objects) if objects > 0 else float(n_train)
    return {
        "targets": (n_train + n_val) * teacher_s,
        "per_epoch": n_train * step_s + n_val * step_s / 3,
        "glimpse_fixed": (pair_frames + n_val) * 2 * teacher_s,
        "per_glimpse_epoch": max(math.ceil(pairs / 256), 1) * glimpse_s,
    }


def _step(opt: Any, loss: Any) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _second_of_two(step: Callable[[], None]) -> float:
    """Seconds of the second of two calls of ``step``, past the first call's set-up."""
    step()
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def probe_teacher_step(run: PipelineRun) -> float:
    """Seconds of one teacher training step here, timed before the dataset exists: the training
    loss of :mod:`trainers.detector.train` on an untrained model whose boxes start at the z_scale
    prior's size (:func:`~trainers.detector.train.start_boxes_at`: what a step costs once
    training has shrunk them, most of the run) and random frames; not compiled."""
    import torch

    from moc_envs.model import SpaceModel
    from trainers.detector.config import make_config
    from trainers.detector.losses import continuity_loss, elbo_terms, motion_terms, total_loss
    from trainers.detector.train import optimizer_step, start_boxes_at

    cfg = make_config(run.game, run.preset, **_config_options(run))
    device = torch.device(run.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.cfg.seed)
        model = SpaceModel(cfg.model).to(device).to(memory_format=torch.channels_last)
        start_boxes_at(model, cfg.z_scale_prior(0))
        fg = torch.optim.RMSprop(model.foreground_parameters(), lr=cfg.fg_lr)
        bg = torch.optim.Adam(model.background.parameters(), lr=cfg.bg_lr)
        n, size, cells = cfg.frames_per_step, cfg.model.img_size, cfg.model.n_cells
        x = torch.rand(n, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        pres, where = torch.zeros(n, cells, device=device), torch.zeros(n, cells, 4, device=device)
        mask = torch.zeros(n, size, size, device=device)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model(x)
            terms = elbo_terms(out, cfg.z_pres_prior(0), cfg.z_scale_prior(0), cfg.z_scale_prior_std)
            terms.update(motion_terms(out, pres, where, mask, cfg.weights.pres_loss))
            terms["continuity"] = continuity_loss(out, cfg.seq_len, cfg.model.grid, cfg.weights.oc_beta)
            optimizer_step(model, fg, bg, total_loss(terms, cfg.weights, 0.0), cfg.clip)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return _second_of_two(step)


def probe_distill(run: PipelineRun) -> dict[str, float]:
    """:func:`distill_costs` here: of the exported teacher on the val split once the export stage
    is done, else of an untrained one on random frames with the game's object slots as its
    objects a frame."""
    import numpy as np

    from moc_envs.model import SpaceModel
    from moc_envs.perception.space_detector import WEIGHTS_FILE
    from trainers.detector.config import make_config

    if run.state["stages"].get("export", {}).get("status") == "done" and (run.space_dir / WEIGHTS_FILE).is_file():
        return _distill_costs(run)

    stacks = split_stacks(run)
    T = int(run.cfg.dataset_options.get("T", 4))
    teacher = SpaceModel(make_config(run.game, run.preset).model).encoder.float().eval()
    options = run.cfg.distill_options
    batch = int(options.get("batch", 64))
    frames = np.random.default_rng(run.cfg.seed).integers(0, 256, (min(batch, 64), 128, 128, 3), dtype=np.uint8)
    return distill_costs(
        teacher, frames, stacks["train"] * T, stacks["val"] * T, int(options.get("glimpse_pairs", 65536)), batch,
        objects=float(get_game(run.game).n_slots),
    )  # fmt: skip


def _config_options(run: PipelineRun) -> dict[str, Any]:
    """The :class:`trainers.detector.config.TrainConfig` fields among the run's training options."""
    names = ("steps", "batch_stacks", "fg_lr", "bg_lr", "ablation", "lambda_schedule", "seed")
    return {k: v for k, v in run.cfg.train_options.items() if k in names and v is not None}


def _stage_distill(run: PipelineRun) -> dict[str, Any]:
    from trainers.detector.distill import DISTILL_CHECKPOINT, Args, distill

    checkpoint = run.distill_dir / DISTILL_CHECKPOINT
    plan = _recorded_plan(
        run, "distill", checkpoint, _plan_distill,
        "a distillation there; move it away, or pass --redo distill",
    )  # fmt: skip
    options = {k: v for k, v in run.cfg.distill_options.items() if k not in ("epochs", "glimpse_epochs")}
    if plan.get("max_minutes") is not None:
        options.update(max_minutes=plan["max_minutes"], glimpse_minutes=plan.get("glimpse_minutes", 0.0))
    info = distill(
        Args(
            game=run.game, teacher=str(run.space_dir), data=str(run.data), out=str(run.distill_dir),
            epochs=plan["epochs"], glimpse_epochs=plan["glimpse_epochs"], seed=run.cfg.seed,
            threads=run.threads, resume=checkpoint.exists(), export_to=str(run.weights_dir), **options,
        )
    )  # fmt: skip
    glimpse = info.get("glimpse_encoder")
    result = {
        "weights": info["export"], "epochs": info.get("epochs", plan["epochs"]), "epochs_planned": plan["epochs"],
        "glimpse_epochs": glimpse.get("epochs") if isinstance(glimpse, dict) else 0, "glimpse_epochs_planned": plan["glimpse_epochs"],
        "seconds": info["seconds"],
    }  # fmt: skip
    if info.get("stopped_by_time"):  # distill printed each when it happened
        result["stopped_by_budget"] = "; ".join(info["stopped_by_time"])
    return result


def _stage_raw_frames(run: PipelineRun) -> dict[str, Any]:
    from trainers.data.raw_frames import build_raw_frames

    # build_raw_frames keeps a split's frames that are already there.
    return {"files": {split: str(build_raw_frames(run.data, split, progress=run.cfg.progress)) for split in ("val", "test")}}


def _stage_evaluate(run: PipelineRun) -> dict[str, Any]:
    from trainers.evaluate.detector import evaluate, write_report

    res = evaluate(run.game, run.data, weights=run.weights_dir, split="test", device=run.device, progress=run.cfg.progress)
    j, _ = write_report(res, run.weights_dir)
    return {"report": str(j)}


def _stage_labels(run: PipelineRun) -> dict[str, Any]:
    from trainers.evaluate.label_offsets import calibrate, write_labels

    if not get_game(run.game).label_links:
        return {"labels": None, "why": f"{run.game} has no label links (info['labels'] estimates nothing)"}
    result = calibrate(run.game, run.weights_dir, threads=run.threads, progress=run.cfg.progress, **run.cfg.label_options)
    return {"labels": str(write_labels(result, run.weights_dir)), "offsets": result["offsets"]}


def _stage_extents(run: PipelineRun) -> dict[str, Any]:
    from trainers.classify.extents import (
        collect_named_boxes,
        fit_extents,
        fit_hud_regions,
        withheld_categories,
        write_extents,
    )

    named = collect_named_boxes(run.game, run.weights_dir, device=run.device, **run.cfg.extents_options)
    extents, regions, withheld = fit_extents(named), fit_hud_regions(named), withheld_categories(named, get_game(run.game).category_names)
    details = {"policy": "random", "frames": named.frames, "named_boxes": {c: len(v) for c, v in named.boxes.items()},
               "boxes_given": named.named, "withheld": withheld}  # fmt: skip
    write_extents(run.weights_dir, run.game, extents, details, regions, withheld)
    return {"extents": extents, "hud_regions": regions, **details}


def _stage_hud(run: PipelineRun) -> dict[str, Any]:
    from trainers.hud.data import hud_labels
    from trainers.hud.train import Args, fit_game, write_reader

    if not hud_labels(run.game):
        return {"hud": None, "why": f"{run.game} has no HUD labels to read"}
    reader, report = fit_game(Args(game=run.game, steps=run.cfg.hud_steps), log=lambda _: None)
    if reader is None:
        return {"hud": None, "why": "no HUD label could be read on the held-out plays", "labels": sorted(report)}
    return {"hud": str(write_reader(reader, run.weights_dir)), "labels": sorted(report)}


def _stage_readouts(run: PipelineRun) -> dict[str, Any]:
    from moc_envs.readouts.registry import READOUTS_JSON, save_readouts
    from moc_envs.weights.manifest import refresh_manifest
    from trainers.readouts.cli import fit_readouts
    from trainers.readouts.plans import PLANS

    if run.game not in PLANS:
        return {"readouts": None, "why": f"{run.game} has no readouts to fit (trainers.readouts.plans)"}
    readouts, report = fit_readouts(run.game, run.weights_dir, run.cfg.readouts_steps, seed=0, threads=run.threads, progress=run.cfg.progress)
    path = save_readouts(readouts, run.weights_dir)
    refresh_manifest(run.weights_dir, run.game, [READOUTS_JSON])
    return {"readouts": str(path), "labels": {lab: r["right"] for lab, r in report.items()}}


def _stage_held_out(run: PipelineRun) -> dict[str, Any]:
    from trainers.evaluate.held_out import LEARNED, VISION, collect, evaluate_plays, write_held_out

    result = evaluate_plays(run.game, collect(run.game, "held-out", run.cfg.held_out_frames), run.weights_dir, run.device)
    path = write_held_out(result, run.weights_dir, run.game, run.cfg.held_out_frames)
    mine = result.get(LEARNED) or {}
    return {"file": str(path), "f1": mine.get("f1"), "vision_f1": result[VISION]["f1"], "meets_bar": result["meets_bar"]}


def _stage_card(run: PipelineRun) -> dict[str, Any]:
    from trainers.evaluate.card import build_card, write_card

    trained_on = run.cfg.hardware or hardware(run.device, run.threads)
    if run.cfg.minutes is not None:  # what the budget gave the long stages, for the card's training line
        report = budget_report(run)
        lines = budget_lines(report, None, run.preset)
        run.state["derived"]["budget"] = {**report, "text": "; ".join([lines[0].removeprefix("budget: "), *lines[1:]])}
    else:
        run.state["derived"].pop("budget", None)
    card = build_card(run.game, run.weights_dir, run.teacher_dir, trained_on, derived=run.state["derived"])
    j, m = write_card(card, run.weights_dir)
    return {"card": str(m), "ship": card["ship"]}


STAGE_FUNCS: dict[str, Callable[[PipelineRun], dict[str, Any]]] = {
    # One function per stage, called with the resolved run; returns what the state records.
    "dataset": _stage_dataset,
    "teacher": _stage_teacher,
    "export": _stage_export,
    "classifier": _stage_classifier,
    "distill": _stage_distill,
    "raw_frames": _stage_raw_frames,
    "extents": _stage_extents,
    "evaluate": _stage_evaluate,
    "labels": _stage_labels,
    "hud": _stage_hud,
    "readouts": _stage_readouts,
    "held_out": _stage_held_out,
    "card": _stage_card,
}

