"""moc-envs train (trainers.pipeline): stage resume, --redo, the state file, budgets, a real smoke run."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainers.pipeline import (
    STAGE_FUNCS,
    STAGES,
    STATE_FILE,
    STATE_FORMAT,
    PipelineConfig,
    PipelineError,
    format_summary,
    main,
    read_state,
    resolve_preset,
    run_pipeline,
    stages,
)
from trainers.pipeline import run as pl  # run_pipeline looks its stages up here
from trainers.pipeline.state import expected_seconds, overrides


def _cfg(tmp_path: Path, **kw) -> PipelineConfig:
    return PipelineConfig(**{"game": "Pong", "out": tmp_path / "run", "preset": "cpu", "progress": False, **kw})


@pytest.fixture
def fake_stages(monkeypatch):
    """Every stage replaced by a recorder; ``fail[name] = n`` makes that stage fail n times."""
    calls: list[str] = []
    fail: dict[str, int] = {}
    seen: dict[str, dict] = {}

    def make(name: str):
        def stage(run) -> dict:
            calls.append(name)
            seen[name] = json.loads(json.dumps(run.state["derived"]))
            if fail.get(name):
                fail[name] -= 1
                raise RuntimeError(f"{name} stopped")
            if name == "export":
                run.state["derived"]["max_box"] = {"max_box": [10.0, 20.0], "source": "test"}
            return {"stage": name}

        return stage

    monkeypatch.setattr(pl, "STAGE_FUNCS", {n: make(n) for n in STAGES})
    _fake_probes(monkeypatch)
    return calls, fail, seen


_COSTS = {"targets": 60.0, "per_epoch": 30.0, "glimpse_fixed": 30.0, "per_glimpse_epoch": 5.0}
"""Distillation costs (seconds) that the fake probes report: 600 s for 12 + 30 epochs."""


def _fake_probes(monkeypatch, per_step: float = 1.2) -> None:
    """The timed probes before the first stage, replaced by fixed speeds: 1.2 s a teacher step."""
    monkeypatch.setattr(stages, "probe_teacher_step", lambda run: per_step)
    monkeypatch.setattr(stages, "probe_distill", lambda run: dict(_COSTS))


def _status(out: Path) -> dict[str, str]:
    return {k: v["status"] for k, v in json.loads((out / STATE_FILE).read_text())["stages"].items()}


def test_an_interrupted_run_continues_at_the_next_stage(tmp_path, fake_stages) -> None:
    calls, fail, _ = fake_stages
    cfg = _cfg(tmp_path)
    fail["distill"] = 1
    with pytest.raises(RuntimeError, match="distill stopped"):
        run_pipeline(cfg, log=lambda _: None)
    d = STAGES.index("distill")
    assert calls == list(STAGES[: d + 1])
    assert _status(cfg.out) == {**{s: "done" for s in STAGES[:d]}, "distill": "started"}
    calls.clear()
    summary = run_pipeline(cfg, log=lambda _: None)
    assert calls == list(STAGES[d:])  # nothing before the distillation runs again
    assert set(_status(cfg.out).values()) == {"done"} and summary["game"] == "Pong"
    calls.clear()
    run_pipeline(cfg, log=lambda _: None)
    assert calls == []


def test_redo_runs_a_stage_and_every_later_one_again(tmp_path, fake_stages) -> None:
    calls, _, seen = fake_stages
    cfg = _cfg(tmp_path)
    run_pipeline(cfg, log=lambda _: None)
    teacher_file = cfg.out / "teacher" / "checkpoint.pt"
    teacher_file.parent.mkdir(parents=True)
    teacher_file.write_bytes(b"kept")
    calls.clear()
    run_pipeline(_cfg(tmp_path, redo="export"), log=lambda _: None)
    assert calls == list(STAGES[2:])
    assert "max_box" not in seen["export"]  # the stage's derived setting was forgotten first
    assert teacher_file.read_bytes() == b"kept"  # an earlier stage's output stays
    calls.clear()
    run_pipeline(_cfg(tmp_path, redo="teacher"), log=lambda _: None)
    assert calls == list(STAGES[1:]) and not teacher_file.exists()
    with pytest.raises(PipelineError, match="--redo must name a stage"):
        run_pipeline(_cfg(tmp_path, redo="nope"), log=lambda _: None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable pipeline state file"),
        ("[1, 2]", "not a pipeline state file: expected format"),
        (json.dumps({"format": "someone/else"}), "not a pipeline state file: expected format"),
        (json.dumps({"format": STATE_FORMAT, "game": "Pong", "stages": {}}), "lacks its 'stages', 'settings' or 'derived'"),
        (
            json.dumps({"format": STATE_FORMAT, "game": "Pong", "stages": {"train": {}}, "settings": {}, "derived": {}}),
            r"unknown stages \['train'\]",
        ),
        (
            json.dumps({"format": STATE_FORMAT, "game": "Boxing", "stages": {}, "settings": {}, "derived": {}}),
            "records a run for game 'Boxing', not 'Pong'",
        ),
    ],
)
def test_a_corrupt_or_foreign_state_file_is_refused(tmp_path, fake_stages, capsys, content, message) -> None:
    calls, _, _ = fake_stages
    out = tmp_path / "run"
    out.mkdir()
    (out / STATE_FILE).write_text(content)
    with pytest.raises(PipelineError, match=message):
        read_state(out, "Pong")
    assert main(["--game", "Pong", "--out", str(out), "--preset", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(out / STATE_FILE) in err and "Traceback" not in err
    assert calls == []


def test_changed_settings_need_a_redo_of_the_stage_they_feed(tmp_path, fake_stages) -> None:
    calls, _, _ = fake_stages
    run_pipeline(_cfg(tmp_path), log=lambda _: None)
    with pytest.raises(PipelineError, match="preset 'cpu', not 'gpu'.*--redo teacher"):
        run_pipeline(_cfg(tmp_path, preset="gpu"), log=lambda _: None)
    with pytest.raises(PipelineError, match="--redo dataset"):
        run_pipeline(_cfg(tmp_path, data=tmp_path / "other"), log=lambda _: None)
    calls.clear()
    run_pipeline(_cfg(tmp_path, preset="gpu", redo="teacher"), log=lambda _: None)
    assert calls == list(STAGES[1:])
    assert json.loads((tmp_path / "run" / STATE_FILE).read_text())["settings"]["preset"] == "gpu"


def test_preset_auto_follows_cuda(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_preset("auto") == ("cpu", "cpu", "preset auto -> cpu (no CUDA device)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Test GPU")
    assert resolve_preset("auto") == ("gpu", "cuda", "preset auto -> gpu (CUDA device Test GPU)")
    with pytest.raises(PipelineError, match="--preset must be one of auto, cpu, gpu"):
        resolve_preset("tpu")


def test_minutes_cover_the_whole_run_the_dataset_included(tmp_path, monkeypatch, tiny_pong) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    run = pl._start(_cfg(tmp_path, minutes=17.0, data=data), log=lambda _: None)
    monkeypatch.setattr(stages, "_seconds_per_step", lambda *_: 2.0)
    fixed = ("export", "raw_frames", "classifier", "extents", "evaluate", "labels", "hud", "readouts", "held_out", "card")
    after = sum(expected_seconds(run, n) for n in fixed)
    assert 632 < after < 642  # two-core estimates; the raw frames and the evaluation scaled to the tiny splits
    plan = stages._plan_teacher(run)
    # 70% of what the stages that are not cut short leave of 1020 s; 90% of that at 2 s a step.
    teacher = 0.7 * (1020 - after)
    assert plan["max_minutes"] == round(teacher / 60, 2) and plan["steps"] == int(teacher * 0.9 / 2.0)
    assert plan["full_steps"] == 1500 and plan["calibration"]["seconds_per_step"] == 2.0
    assert plan["z_scale_mean"] == [run.state["derived"]["z_scale_prior"][k] for k in ("start", "end")]
    # A dataset stage that took 5 minutes comes out of the same budget.
    run.state["stages"]["dataset"] = {"status": "done", "seconds": 300.0}
    assert stages._plan_teacher(run)["steps"] == int(0.7 * (720 - after) * 0.9 / 2.0)
    # The teacher leaves the distillation one epoch of each part (50 s, with 10% to spare).
    run.state["budget"] = {"distill_seconds": 100.0, "distill_least_seconds": 50.0}
    run.state["stages"]["dataset"] = {"status": "done", "seconds": 250.0}
    assert stages._plan_teacher(run)["max_minutes"] == round((770 - after - 50 / 0.9) / 60, 2)

    long = pl._start(_cfg(tmp_path, minutes=44.70, data=data), log=lambda _: None)
    took = {"dataset": 300.0, "teacher": 120.0, "export": 5.0, "raw_frames": 20.0, "classifier": 90.0}
    long.state["stages"].update({n: {"status": "done", "seconds": t} for n, t in took.items()})
    costs = {"targets": 60.0, "per_epoch": 100.0, "glimpse_fixed": 30.0, "per_glimpse_epoch": 5.0}
    monkeypatch.setattr(stages, "_distill_costs", lambda _: dict(costs))
    # What is left after the time spent and the three stages to come, scaled by how slow the finished ones were.
    coming = sum(expected_seconds(long, n) for n in ("extents", "evaluate", "labels", "hud", "readouts", "held_out", "card"))
    assert coming == pytest.approx(572.47 * 95 / 65, abs=0.01)  # two-core estimates; export and classifier took 95 s of 65
    left = 44.70 * 60 - sum(took.values()) - coming
    plan = stages._plan_distill(long)
    # 9 epochs and 22 of the glimpse encoder take 60 + 900 + 30 + 110 s, within 90% of what is left; 10 would not.
    assert (plan["epochs"], plan["glimpse_epochs"]) == (9, 22) and (plan["full_epochs"], plan["full_glimpse_epochs"]) == (12, 30)
    assert plan["max_minutes"] == round(left / 60, 2) and plan["glimpse_minutes"] == round(left * 140 / 1100 / 60, 2)
    fast = pl._start(_cfg(tmp_path, minutes=600.0, data=data), log=lambda _: None)
    assert stages._plan_distill(fast)["epochs"] == 12  # never more than the full schedule
    with pytest.raises(PipelineError, match="--minutes must be > 0"):
        pl._start(_cfg(tmp_path, minutes=0.0), log=lambda _: None)


def test_the_plan_before_the_first_stage_names_the_numbers(tmp_path, fake_stages) -> None:
    calls, _, _ = fake_stages
    lines: list[tuple[int, str]] = []
    run_pipeline(_cfg(tmp_path, minutes=23.0), log=lambda text: lines.append((len(calls), text)))
    plan = "\n".join(text for n, text in lines if n == 0)  # printed before the first stage ran
    # The fake probes: 1.2 s a teacher step, 600 s of distillation; the other stages' two-core estimates (1027 s).
    assert "Pong on this machine" in plan and "cpu preset" in plan
    assert "  dataset       3.5  5120 stacks (two-core estimate)" in plan
    assert "  teacher      30.0  1500 steps at 1.20 s (a step timed here)" in plan
    assert "  distill      10.0  12 epochs and 30 of the glimpse encoder (timed here)" in plan
    assert "  total        57.1  the cpu preset's full schedules, the dataset stage included" in plan
    # 1380 s less 1027 s leave 353 s: the teacher's 70% (247 s), less what leaves the distillation its
    # least (125 s / 0.9), is 214 s: 160 steps; the 161 s left fit 1 epoch. The full schedules:
    # 1027 s + (1800 s + 600 s) / 0.9 = 62 minutes.
    assert (
        "--minutes 23 is less than the full schedules need: it gives the teacher 160 of the 1500 steps the cpu preset "
        "plans and the distillation 1 of its 12 epochs; about 62 minutes would run them all on this machine (--minutes 62)"
    ) in plan
    state = read_state(tmp_path / "run", "Pong")
    assert state["budget"]["needed_minutes"] == 62 and state["budget"]["expected"]["teacher"] == pytest.approx(192.0)

    lines.clear()
    run_pipeline(_cfg(tmp_path, out=tmp_path / "long", minutes=65.0), log=lambda text: lines.append((0, text)))
    assert any("--minutes 65 covers the full schedules (about 62 minutes here, the dataset stage included)" in t for _, t in lines)
    lines.clear()
    run_pipeline(_cfg(tmp_path, out=tmp_path / "free"), log=lambda text: lines.append((0, text)))
    assert any("no --minutes: the full schedules run, about 62 minutes here" in t for _, t in lines)


def test_a_teacher_whose_time_runs_out_says_so_when_it_stops(tmp_path, tiny_pong) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    lines: list[str] = []
    cfg = _cfg(tmp_path, data=data, threads=1, minutes=5.0, train_options={"steps": 3, "batch_stacks": 1})
    run = pl._start(cfg, log=lines.append)
    # A plan whose time is spent: the training stops after its first step.
    run.stage("teacher")["plan"] = {"steps": 3, "full_steps": 1500, "z_scale_mean": [-2.0, -2.5], "max_minutes": 0.0, "calibration": None}
    result = stages._stage_teacher(run)
    assert result["step"] == 1 and result["stopped_by_budget"].startswith("stopped at step 1 of 3")
    assert lines[1:] == [
        "teacher: time ran out at step 1 of the 3 planned (1500 in the full schedule) after its 0.0 minutes; "
        "the later stages go on with this teacher"
    ]


def _clocked_stages(monkeypatch, took: dict[str, float], teacher_steps: int, epochs: int, meets_bar: bool) -> None:
    """Fake stages that each take ``took[name]`` seconds of a fake clock and record what the real
    ones would: the teacher's and the distillation's plans and results, and a card."""
    clock = [0.0]
    monkeypatch.setattr(pl, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def make(name: str):
        def stage(run) -> dict:
            clock[0] += took[name]
            if name == "teacher":
                run.stage(name)["plan"] = {"steps": 762, "full_steps": 1500, "max_minutes": 9.0}
                done = {"step": teacher_steps, "steps": 762}
                if teacher_steps < 762:
                    done["stopped_by_budget"] = f"stopped at step {teacher_steps} of 762 after 9.0 minutes"
                return done
            if name == "distill":
                run.stage(name)["plan"] = {
                    "epochs": 4, "glimpse_epochs": 10, "full_epochs": 12, "full_glimpse_epochs": 30, "calibration": dict(_COSTS),
                }  # fmt: skip
                return {"epochs": epochs, "glimpse_epochs": round(epochs * 2.5)}
            if name == "card":
                run.weights_dir.mkdir(parents=True, exist_ok=True)
                ship = {"meets_bar": meets_bar, "f1_moving_required": 0.95, "category_accuracy_required": 0.95}
                card = {"ship": ship, "evaluation": {"detector": {"moving": {"f1": 0.817, "category_accuracy": 0.97}}}}
                (run.weights_dir / "card.json").write_text(json.dumps(card))
            return {}

        return stage

    monkeypatch.setattr(pl, "STAGE_FUNCS", {n: make(n) for n in STAGES})
    _fake_probes(monkeypatch)


_TOOK = {"dataset": 200, "teacher": 560, "export": 4, "raw_frames": 40, "classifier": 50, "distill": 240, "extents": 0, "evaluate": 40,
         "labels": 30, "hud": 0, "readouts": 0, "held_out": 0, "card": 0}
"""Seconds of each stage of a 15-minute budget that ran 19.4 minutes, as the issue's Freeway run."""


def test_the_summary_says_when_the_budget_was_too_small(tmp_path, monkeypatch) -> None:
    _clocked_stages(monkeypatch, _TOOK, teacher_steps=633, epochs=4, meets_bar=False)
    summary = run_pipeline(_cfg(tmp_path, minutes=15.0), log=lambda _: None)
    budget = summary["budget"]
    assert budget["wall_minutes"] == 19.4 and budget["short"]
    assert budget["teacher"] == {"steps": 633, "planned": 762, "full": 1500}
    # The full schedules at this run's speeds: 364 s of the other stages, the teacher's 560 s x 1500 / 633
    # and the distillation's 240 s x 600 / 260 (its costs at 12 + 30 and at 4 + 10 epochs), 10% to spare.
    assert budget["needed_minutes"] == math.ceil((364 + (560 * 1500 / 633 + 240 * 600 / 260) / 0.9) / 60) == 41
    text = format_summary(summary)
    assert "budget: --minutes 15 (the dataset stage included), wall time 19.4 minutes: 4.4 over" in text
    assert "teacher 633 steps of 762 planned (1500 in the cpu preset's schedule)" in text
    assert "distillation 4 epochs of 4 planned (12 in the full schedule), glimpse encoder 10 of 30" in text
    assert "stopped early: stopped at step 633 of 762 after 9.0 minutes" in text
    assert (
        "the budget was too small: the bar was missed after less than the full schedules; a larger budget is the first "
        "thing to try: about --minutes 41 runs the full schedules on this machine"
    ) in text


def test_the_summary_says_when_the_budget_was_not_the_limit(tmp_path, monkeypatch) -> None:
    _clocked_stages(monkeypatch, _TOOK, teacher_steps=1500, epochs=12, meets_bar=False)
    text = format_summary(run_pipeline(_cfg(tmp_path, minutes=25.0), log=lambda _: None))
    assert "wall time 19.4 minutes: 5.6 to spare" in text and "too small" not in text and "stopped early" not in text
    assert "the full schedules ran: a larger budget would not help" in text


def test_distill_takes_a_time_limit() -> None:
    from trainers.detector.distill import _parse

    argv = ["--game", "Pong", "--teacher", "t", "--data", "d", "--out", "o"]
    args = _parse([*argv, "--max-minutes", "2.5", "--glimpse-minutes", "0.5"])
    assert (args.max_minutes, args.glimpse_minutes) == (2.5, 0.5) and _parse(argv).max_minutes is None
    with pytest.raises(SystemExit):
        _parse([*argv, "--max-minutes", "-1"])


def test_nproc_trains_the_teacher_through_the_launcher(tmp_path, monkeypatch, tiny_pong) -> None:
    import trainers.detector.distributed
    from trainers.detector.train import _parse

    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    launched: list = []
    monkeypatch.setattr(trainers.detector.distributed, "launch", lambda argv, nproc: launched.append((argv, nproc)) or 3)
    cfg = _cfg(tmp_path, nproc=2, data=data, train_options={"steps": 2, "batch_stacks": 1})
    with pytest.raises(PipelineError, match="2 training processes stopped with exit code 3"):
        run_pipeline(cfg, log=lambda _: None)
    (argv, nproc), = launched
    args = _parse(argv)
    assert nproc == 2 and args.out == str(cfg.out / "teacher") and args.steps == 2 and not args.resume
    assert args.z_scale_mean == "{},{}".format(*read_state(cfg.out, "Pong")["stages"]["teacher"]["plan"]["z_scale_mean"])
    monkeypatch.setitem(sys.modules, "trainers.detector.distributed", None)
    with pytest.raises(PipelineError, match="--nproc 2 needs trainers.detector.distributed"):
        run_pipeline(cfg, log=lambda _: None)


def test_a_checkpoint_the_state_does_not_know_is_not_resumed(tmp_path, tiny_pong) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    (tmp_path / "run" / "teacher").mkdir(parents=True)
    (tmp_path / "run" / "teacher" / "checkpoint.pt").write_bytes(b"someone else's")
    with pytest.raises(PipelineError, match="does not record a teacher run there"):
        run_pipeline(_cfg(tmp_path, data=data), log=lambda _: None)
    assert _status(tmp_path / "run") == {"dataset": "done", "teacher": "started"}


def _random_teacher(run) -> dict:
    """Stands in for minutes of training: a checkpoint of an untrained SPACE+MOC model whose
    heads put a few small boxes in every frame (the export, classifier, distillation and
    evaluation stages then have predictions to work on)."""
    import torch

    from moc_envs.model import SpaceModel
    from trainers.detector.config import make_config
    from trainers.detector.train import CHECKPOINT, save_checkpoint

    cfg = make_config("Pong", "cpu", steps=1)
    torch.manual_seed(0)
    model = SpaceModel(cfg.model)
    with torch.no_grad():
        model.encoder.image_encoder.heads.bias[0] = -0.03  # some cells above z_pres 0.5
        model.encoder.image_encoder.heads.bias[3:5] = -3.0  # boxes of about 8 x 10 px
    run.teacher_dir.mkdir(parents=True, exist_ok=True)
    fg = torch.optim.RMSprop(model.foreground_parameters())
    bg = torch.optim.Adam(model.background.parameters())
    payload = {"model": model.state_dict(), "fg_opt": fg.state_dict(), "bg_opt": bg.state_dict(), "step": 1,
               "sched": {"v_ema": None}, "rng": {}, "config": cfg.to_dict(), "data": str(run.data)}  # fmt: skip
    save_checkpoint(run.teacher_dir / CHECKPOINT, payload)
    return {"run": str(run.teacher_dir), "steps": 1, "step": 1}


def test_real_stages_end_to_end_on_a_tiny_dataset(tmp_path, monkeypatch, capsys, tiny_pong) -> None:
    """Every real stage on 8 training stacks. The first run trains for real (2 steps) and is
    interrupted at the classifier (an untrained detector finds nothing to label); the second
    redoes the teacher with a stand-in that has boxes, and continues to the card. The
    distillation's time limit is spent: it stops each part after its first epoch, and says so."""
    import gymnasium as gym

    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    cfg = _cfg(
        tmp_path, data=data, threads=1, train_options={"steps": 2, "batch_stacks": 1},
        distill_options={"epochs": 2, "glimpse_epochs": 2, "batch": 16, "max_minutes": 0.0},
        label_options={"steps": 64, "num_envs": 2, "min_samples": 8},
        extents_options={"frames": 16, "seeds": [5000]}, held_out_frames=8, hud_steps=200, readouts_steps=64,
    )  # fmt: skip

    def interrupted(run):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(pl, "STAGE_FUNCS", {**STAGE_FUNCS, "classifier": interrupted})
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(cfg, log=lambda _: None)
    c = STAGES.index("classifier")
    assert _status(cfg.out) == {**{s: "done" for s in STAGES[:c]}, "classifier": "started"}
    state = read_state(cfg.out, "Pong")
    assert state["stages"]["teacher"]["result"]["step"] == 2
    assert (cfg.out / "weights" / "Pong" / "space" / "detector.safetensors").is_file()
    derived = state["derived"]
    assert derived["hud_bands"]["bands"] == [[0, 0, 160, 24]]  # the given dataset's own (meta.json)
    assert derived["z_scale_prior"]["end"] == derived["z_scale_prior"]["start"] - 0.5
    assert derived["max_box"]["max_box"][0] >= 10.0  # never below one grid cell

    def no_dataset(run):
        raise AssertionError("the finished dataset stage ran again")

    monkeypatch.setattr(pl, "STAGE_FUNCS", {**STAGE_FUNCS, "dataset": no_dataset, "teacher": _random_teacher})
    summary = run_pipeline(PipelineConfig(**{**cfg.__dict__, "redo": "teacher", "minutes": 30.0}), log=lambda _: None)
    assert set(_status(cfg.out).values()) == {"done"}
    weights = cfg.out / "weights" / "Pong"
    card = json.loads((weights / "card.json").read_text())
    assert card["ship"]["f1_moving_required"] == 0.95 and card["ship"]["meets_bar"] in (True, False)
    assert card["evaluation"]["ocatari_vision"]["moving"]["f1"] > 0.9  # OCAtari vision ran beside it
    assert card["derived"]["classifier"]["chosen"] and card["derived"]["max_box"]
    assert "Settings derived from the data" in (weights / "card.md").read_text()
    assert set(card["labels"]["labels"]) == {"player_x", "player_y", "enemy_x", "enemy_y", "ball_x", "ball_y"}
    assert "## Labels" in (weights / "card.md").read_text()
    assert card["detector"]["image_encoder"] == "lean"
    # The held-out evaluation ran on the lean detector with its extents, and the card leads with it.
    assert card["held_out"]["frames"] == 3 * 8 and card["ship"]["meets_held_out_bar"] in (True, False)
    assert "What users get: held-out later-state play" in (weights / "card.md").read_text()
    assert "extents_fit" in json.loads((weights / "classifier.json").read_text())["info"]
    assert summary["ship"] == card["ship"] and summary["test_moving"]["f1"] is not None
    env = gym.make("MOC/Pong-v0", weights=str(cfg.out / "weights"), threads=1)
    _, info = env.reset(seed=0)
    env.step(0)
    env.close()
    assert "objects" in info
    assert "bar" in format_summary(summary) and 'gym.make("MOC/Pong-v0"' in format_summary(summary)
    out = capsys.readouterr().out
    image = "distillation: time ran out after epoch 1 of 2 of the image encoder"
    glimpse = "distillation: time ran out after epoch 1 of 2 of the glimpse encoder"
    assert image in out and glimpse in out
    assert card["detector"]["distillation"]["epochs"] == 1 and card["detector"]["distillation"]["glimpse_encoder"]["epochs"] == 1
    assert summary["budget"]["distill"] == {"epochs": 1, "planned": 2, "full": 2, "glimpse_epochs": 1, "glimpse_full": 2}
    assert f"stopped early: {image}" in format_summary(summary)
    # The card says what the budget gave the long stages.
    budget = next(line for line in (weights / "card.md").read_text().splitlines() if line.startswith("- Training budget: "))
    assert "--minutes 30 (the dataset stage included), wall time" in budget and "to spare" in budget
    assert "distillation 1 epochs of 2 planned (2 in the full schedule), glimpse encoder 1 of 2" in budget
    assert f"stopped early: {image}" in budget and "less than the full schedules ran" in budget


@pytest.mark.parametrize("game, split", [("Boxing", True), ("Pong", True), ("Seaquest", False), ("Skiing", False)])
def test_the_colour_split_is_an_override_the_card_names(game: str, split: bool) -> None:
    settings = {o["setting"]: o for o in overrides(game)}
    assert ("split_colours" in settings) is split
    if split:
        assert settings["split_colours"]["value"] is True and "COLOUR_SPLIT_GAMES" in settings["split_colours"]["why"]


@pytest.mark.parametrize("built_with", [None, True, False])
def test_the_dataset_stage_continues_a_dataset_with_its_own_static_setting(tmp_path, tiny_pong, built_with) -> None:
    """A dataset built before static targets existed (no key) is continued without them, not refused."""
    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    meta = json.loads((data / "meta.json").read_text())
    if built_with is None:
        del meta["build"]["static_targets"]
    else:
        meta["build"]["static_targets"] = built_with
    (data / "meta.json").write_text(json.dumps(meta))
    run = pl._start(_cfg(tmp_path, data=data), log=lambda _: None)
    result = stages._stage_dataset(run)
    assert result["splits"] == {"train": 8, "val": 2, "test": 2}
    assert json.loads((data / "meta.json").read_text())["build"].get("static_targets") == built_with
