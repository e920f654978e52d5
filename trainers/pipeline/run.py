"""Running ``moc-envs train``: :func:`run_pipeline` resolves the run, takes its lock, runs the
unfinished stages in order with a progress bar, and returns the summary
(:func:`format_summary` prints it).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moc_envs.games import get_game
from moc_envs.perception.distractors import check_distractors
from moc_envs.threads import check_threads
from trainers.pipeline.stages import STAGE_FUNCS
from trainers.pipeline.state import (
    BUDGET_SHARES,
    STAGES,
    STATE_FILE,
    STATE_FORMAT,
    PipelineConfig,
    PipelineError,
    PipelineRun,
    check_identity,
    clear_from,
    identity,
    overrides,
    read_state,
    resolve_preset,
)

__all__ = ["run_pipeline", "format_summary"]

_ESTIMATE_S = {"dataset": 210.0, "export": 5.0, "classifier": 60.0, "raw_frames": 60.0, "evaluate": 120.0, "labels": 90.0, "card": 2.0}
"""Rough duration of the fixed-cost stages on two CPU cores (seconds): the progress bar's weights.
Only their ratios matter; the bar's rate adapts to the machine as stages finish."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _weights(run: PipelineRun) -> dict[str, float]:
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

