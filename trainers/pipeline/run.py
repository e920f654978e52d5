"""Running ``moc-envs train``: :func:`run_pipeline` resolves the run, takes its lock, runs the
unfinished stages in order with a progress bar, and returns the summary
(:func:`format_summary` prints it).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moc_envs.games import get_game
from moc_envs.perception.distractors import check_distractors
from moc_envs.threads import check_threads
from trainers.pipeline import stages
from trainers.pipeline.stages import STAGE_FUNCS
from trainers.pipeline.state import (
    NOMINAL_SECONDS,
    PLAN_SLACK,
    STAGES,
    STATE_FILE,
    STATE_FORMAT,
    PipelineConfig,
    PipelineError,
    PipelineRun,
    budget_lines,
    budget_report,
    check_identity,
    clear_from,
    distill_seconds,
    expected_seconds,
    fit_distill,
    hardware,
    identity,
    overrides,
    read_state,
    resolve_preset,
    spent_seconds,
    split_stacks,
    teacher_seconds,
)

__all__ = ["run_pipeline", "forecast", "format_forecast", "format_summary"]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _done(run: PipelineRun, name: str) -> bool:
    return run.state["stages"].get(name, {}).get("status") == "done"


def forecast(run: PipelineRun) -> dict[str, Any]:
    """What each stage of ``run`` is expected to take on this machine, the preset's full schedules
    and what ``--minutes`` gives the long stages; recorded under ``budget`` in the state file.

    The teacher's step and the distillation's parts are timed here unless the state records
    them (:func:`~trainers.pipeline.stages.probe_teacher_step`,
    :func:`~trainers.pipeline.stages.probe_distill`: seconds on a CPU); the other stages are
    two-core estimates until some of them have run (:func:`~trainers.pipeline.state.expected_seconds`).
    """
    from trainers.detector.config import make_config

    t0 = time.perf_counter()
    st = run.state["stages"]
    rows: dict[str, dict[str, Any]] = {n: {"seconds": expected_seconds(run, n), "done": _done(run, n)} for n in NOMINAL_SECONDS}
    built = not rows["dataset"]["done"] and rows["dataset"]["seconds"] == 0  # a given dataset, finished
    rows["dataset"]["what"] = f"{sum(split_stacks(run).values())} stacks" + (", built already" if built else " (two-core estimate)")
    tplan = st.get("teacher", {}).get("plan") or {}
    full_steps = int(tplan.get("full_steps") or run.cfg.train_options.get("steps") or make_config(run.game, run.preset).steps)
    if _done(run, "teacher"):
        ran = int((st["teacher"].get("result") or {}).get("step") or full_steps)
        per_step = float(st["teacher"]["seconds"]) / max(ran, 1)
        rows["teacher"] = {"seconds": float(st["teacher"]["seconds"]), "done": True, "steps": ran, "full_steps": full_steps}
    else:
        recorded = (tplan.get("calibration") or {}).get("seconds_per_step")
        per_step = float(recorded or stages.probe_teacher_step(run))
        rows["teacher"] = {"seconds": full_steps * per_step, "done": False, "steps": full_steps, "full_steps": full_steps, "per_step": per_step}
    dplan = st.get("distill", {}).get("plan") or {}
    full_e = int(dplan.get("full_epochs") or run.cfg.distill_options.get("epochs", stages._DISTILL_EPOCHS))
    full_g = int(dplan.get("full_glimpse_epochs") or run.cfg.distill_options.get("glimpse_epochs", stages._DISTILL_GLIMPSE_EPOCHS))
    costs: dict[str, float] | None = None
    if _done(run, "distill"):
        result = st["distill"].get("result") or {}
        rows["distill"] = {"seconds": float(st["distill"]["seconds"]), "done": True, "epochs": result.get("epochs"), "glimpse_epochs": result.get("glimpse_epochs")}
    else:
        costs = dplan.get("calibration") if "per_epoch" in (dplan.get("calibration") or {}) else None
        if costs is None:
            costs = stages.probe_distill(run)
        rows["distill"] = {"seconds": distill_seconds(costs, full_e, full_g), "done": False, "epochs": full_e, "glimpse_epochs": full_g}
    budget = run.state.setdefault("budget", {})
    budget["probe_seconds"] = round(float(budget.get("probe_seconds", 0.0)) + time.perf_counter() - t0, 2)
    if not _done(run, "dataset"):
        budget["dataset_nominal"] = round(rows["dataset"]["seconds"], 1)
    least = 0.0
    if costs is not None:  # what the teacher's plan leaves the distillation (trainers.pipeline.stages)
        least = distill_seconds(costs, 1, min(full_g, 1))
        budget.update(distill_seconds=round(rows["distill"]["seconds"], 1), distill_least_seconds=round(least, 1))
    fixed = sum(r["seconds"] for n, r in rows.items() if n in NOMINAL_SECONDS)
    long_need = sum(r["seconds"] if r["done"] else r["seconds"] / PLAN_SLACK for n, r in rows.items() if n not in NOMINAL_SECONDS)
    fc: dict[str, Any] = {
        "game": run.game, "preset": run.preset, "hardware": hardware(run.device, run.threads), "minutes": run.cfg.minutes,
        "stages": {n: rows[n] for n in STAGES}, "probe_seconds": budget["probe_seconds"],
        "full_seconds": fixed + budget["probe_seconds"] + sum(r["seconds"] for n, r in rows.items() if n not in NOMINAL_SECONDS),
        "needed_minutes": math.ceil((fixed + budget["probe_seconds"] + long_need) / 60),
    }  # fmt: skip
    fc["expected"] = {n: r["seconds"] for n, r in rows.items()}
    if run.cfg.minutes is not None:
        # The plans the stages will make (trainers.pipeline.stages), as far as they can be told now.
        left = run.cfg.minutes * 60 - spent_seconds(run) - sum(r["seconds"] for n, r in rows.items() if n in NOMINAL_SECONDS and not r["done"])
        if not _done(run, "teacher"):
            need = None if costs is None else rows["distill"]["seconds"] / PLAN_SLACK
            t_budget = max(teacher_seconds(left, need, least / PLAN_SLACK), 0.0)
            if "steps" in tplan:  # a continued run keeps the plan it made
                steps, t_budget = int(tplan["steps"]), 60 * float(tplan.get("max_minutes") or 0.0) or t_budget
            elif "steps" in run.cfg.train_options:
                steps = full_steps
            else:
                steps = max(1, min(full_steps, int(t_budget * PLAN_SLACK / per_step)))
            fc["teacher_steps"] = steps
            fc["expected"]["teacher"] = min(steps * per_step, max(t_budget, per_step))
            left -= fc["expected"]["teacher"]
        if costs is not None:
            if "epochs" in dplan:
                e, g = int(dplan["epochs"]), int(dplan["glimpse_epochs"])
            elif {"epochs", "glimpse_epochs"} & set(run.cfg.distill_options):
                e, g = full_e, full_g
            else:
                e, g = fit_distill(max(left, 0.0), costs, full_e, full_g)
            fc["distill_epochs"], fc["distill_glimpse_epochs"] = e, g
            fc["expected"]["distill"] = distill_seconds(costs, e, g)
        fc["short"] = fc.get("teacher_steps", full_steps) < full_steps or fc.get("distill_epochs", full_e) < full_e
    budget.update(minutes=run.cfg.minutes, expected={n: round(v, 1) for n, v in fc["expected"].items()}, needed_minutes=fc["needed_minutes"])
    return fc


def format_forecast(fc: dict[str, Any]) -> list[str]:
    """The lines :func:`run_pipeline` prints before the first stage: each stage's expected minutes
    here, the full schedules' total and the verdict on ``--minutes``."""
    lines = [f"{fc['game']} on this machine ({fc['hardware']}, {fc['preset']} preset); minutes each stage is expected to take:"]
    for name, row in fc["stages"].items():
        if row["done"]:
            what = "done"
        elif name == "teacher":
            what = f"{row['steps']} steps at {row['per_step']:.2f} s (a step timed here)"
        elif name == "distill":
            what = f"{row['epochs']} epochs and {row['glimpse_epochs']} of the glimpse encoder (timed here)"
        else:
            what = row.get("what") or "(estimate)"
        lines.append(f"  {name:<11}{row['seconds'] / 60:6.1f}  {what}")
    lines.append(
        f"  {'total':<11}{fc['full_seconds'] / 60:6.1f}  the {fc['preset']} preset's full schedules, the dataset stage included "
        "(the shipped detectors were trained with them)"
    )
    minutes, needed = fc["minutes"], fc["needed_minutes"]
    if minutes is None:
        lines.append(f"no --minutes: the full schedules run, about {needed} minutes here")
    elif fc.get("short"):
        t = fc["stages"]["teacher"]
        parts = []
        if "teacher_steps" in fc:
            parts.append(f"the teacher {fc['teacher_steps']} of the {t['full_steps']} steps the {fc['preset']} preset plans")
        if "distill_epochs" in fc:
            d = fc["stages"]["distill"]
            parts.append(f"the distillation {fc['distill_epochs']} of its {d['epochs']} epochs")
        lines.append(
            f"--minutes {minutes:g} is less than the full schedules need: it gives {' and '.join(parts)}; about {needed} "
            f"minutes would run them all on this machine (--minutes {needed})"
        )
    else:
        lines.append(f"--minutes {minutes:g} covers the full schedules (about {needed} minutes here, the dataset stage included)")
    return lines


def _weights(run: PipelineRun) -> dict[str, float]:
    """Expected seconds of each stage (the progress bar's units): as recorded once done."""
    expected = run.state.get("budget", {}).get("expected", {})
    out = {}
    for name in STAGES:
        entry = run.state["stages"].get(name, {})
        if entry.get("status") == "done" and entry.get("seconds") is not None:
            out[name] = float(entry["seconds"])
        else:
            out[name] = float(expected.get(name) or NOMINAL_SECONDS.get(name, (60.0, ()))[0])
    return out


def _start(cfg: PipelineConfig, log: Callable[[str], None]) -> PipelineRun:
    """The run of ``cfg``: its settings checked, its state read (or begun) and its identity kept."""
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
    try:
        check_distractors(cfg.distractors, cfg.distractor_seed)
    except (TypeError, ValueError) as err:
        raise PipelineError(str(err)) from None
    if cfg.probe_pairs < 8:
        raise PipelineError(f"probe_pairs must be >= 8, got {cfg.probe_pairs}")
    preset, device, why = resolve_preset(cfg.preset)
    log(why)
    out = Path(cfg.out) if cfg.out is not None else Path("runs") / spec.name.lower()
    state = read_state(out, spec.name)
    # Without --data, a continued run keeps the dataset it started with.
    recorded = (state or {}).get("settings", {}).get("data")
    data = Path(cfg.data) if cfg.data is not None else Path(recorded) if recorded else out / "data"
    run = PipelineRun(cfg, spec.name, out, data, preset, device, threads, state or {}, log)
    if state is None:
        run.state = {"format": STATE_FORMAT, "game": spec.name, "settings": {}, "stages": {}, "derived": {}}
    else:
        check_identity(state, identity(run), cfg.redo, out / STATE_FILE)
    run.state["settings"] = identity(run)
    run.state["derived"]["overrides"] = overrides(spec.name)
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
            clear_from(run, cfg.redo)
        first = next((s for s in STAGES if run.state["stages"].get(s, {}).get("status") != "done"), None)
        if first is not None:
            # A stage after an unfinished one is redone: its inputs may change.
            later = STAGES[STAGES.index(first) + 1 :]
            for name in later:
                if run.state["stages"].get(name, {}).get("status") == "done":
                    clear_from(run, name)
                    break
        run.save()
        done = [s for s in STAGES if run.state["stages"].get(s, {}).get("status") == "done"]
        if done:
            log(f"{run.out / STATE_FILE}: stages {', '.join(done)} are done; " + (f"continuing at {first}" if first else "nothing left to run"))
        if first is not None:
            for line in format_forecast(forecast(run)):
                log(line)
            run.save()
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
                t0 = run.stage_started = time.perf_counter()
                try:
                    result = STAGE_FUNCS[name](run)
                finally:
                    run.stage_started = None
                seconds = time.perf_counter() - t0
                entry.update(status="done", finished=_now(), seconds=round(seconds, 1), result=result)
                run.save()
                weights = _weights(run)  # the teacher's plan refines its estimate
                bar.total = round(sum(weights.values()))
                bar.update(round(weights[name]))
        finally:
            bar.close()
        return _summary(run)


def _summary(run: PipelineRun) -> dict[str, Any]:
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
        "derived": {k: v for k, v in run.state["derived"].items() if k not in ("overrides", "budget")},
        "budget": budget_report(run),
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
    lines.extend(budget_lines(summary.get("budget") or {}, ship.get("meets_bar") if ship else None, summary.get("preset", "")))
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

