"""moc-envs train (trainers.pipeline): stage resume, --redo, the state file, budgets, a real smoke run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

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
from trainers.pipeline.state import overrides


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
    return calls, fail, seen


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


def test_minutes_split_over_the_long_stages(tmp_path, monkeypatch, tiny_pong) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    run = pl._start(_cfg(tmp_path, minutes=10.0, data=data), log=lambda _: None)
    monkeypatch.setattr(stages, "_seconds_per_step", lambda *_: 2.0)
    plan = stages._plan_teacher(run)
    # 60% of 10 minutes is 360 s; 90% of that at 2 s a step.
    assert plan["max_minutes"] == 6.0 and plan["steps"] == 162
    assert plan["z_scale_mean"] == [run.state["derived"]["z_scale_prior"][k] for k in ("start", "end")]
    monkeypatch.setattr(stages, "_distill_costs", lambda _: (60.0, 30.0))
    plan = stages._plan_distill(run)
    # 25% of 10 minutes is 150 s; 90% of it less 60 s of passes over the data fits 2 epochs of 30 s.
    assert (plan["epochs"], plan["glimpse_epochs"]) == (2, 5)
    fast = pl._start(_cfg(tmp_path, minutes=600.0, data=data), log=lambda _: None)
    assert stages._plan_distill(fast)["epochs"] == 12  # never more than the full schedule
    with pytest.raises(PipelineError, match="--minutes must be > 0"):
        pl._start(_cfg(tmp_path, minutes=0.0), log=lambda _: None)


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


def test_real_stages_end_to_end_on_a_tiny_dataset(tmp_path, monkeypatch, tiny_pong) -> None:
    """Every real stage on 8 training stacks. The first run trains for real (2 steps) and is
    interrupted at the classifier (an untrained detector finds nothing to label); the second
    redoes the teacher with a stand-in that has boxes, and continues to the card."""
    import gymnasium as gym

    data = tmp_path / "data"
    shutil.copytree(tiny_pong, data)
    cfg = _cfg(
        tmp_path, data=data, threads=1, train_options={"steps": 2, "batch_stacks": 1},
        distill_options={"epochs": 1, "glimpse_epochs": 1, "batch": 16},
        label_options={"steps": 64, "num_envs": 2, "min_samples": 8},
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
    summary = run_pipeline(PipelineConfig(**{**cfg.__dict__, "redo": "teacher"}), log=lambda _: None)
    assert set(_status(cfg.out).values()) == {"done"}
    weights = cfg.out / "weights" / "Pong"
    card = json.loads((weights / "card.json").read_text())
    assert card["ship"]["f1_moving_required"] == 0.95 and card["ship"]["meets_bar"] in (True, False)
    assert card["evaluation"]["ocatari_vision"]["moving"]["f1"] > 0.9  # OCAtari vision ran beside it
    assert card["derived"]["classifier"]["chosen"] and card["derived"]["max_box"]
    assert "Settings derived from the data" in (weights / "card.md").read_text()
    assert set(card["labels"]["labels"]) == {"player_y", "enemy_y", "ball_x", "ball_y"}  # the labels stage's
    assert "## Labels" in (weights / "card.md").read_text()
    assert card["detector"]["image_encoder"] == "lean"
    assert summary["ship"] == card["ship"] and summary["test_moving"]["f1"] is not None
    env = gym.make("MOC/Pong-v0", weights=str(cfg.out / "weights"), threads=1)
    _, info = env.reset(seed=0)
    env.step(0)
    env.close()
    assert "objects" in info
    assert "bar" in format_summary(summary) and 'gym.make("MOC/Pong-v0"' in format_summary(summary)


@pytest.mark.parametrize("game, split", [("Boxing", True), ("Pong", True), ("Seaquest", False), ("Skiing", False)])
def test_the_colour_split_is_an_override_the_card_names(game: str, split: bool) -> None:
    settings = {o["setting"]: o for o in overrides(game)}
    assert ("split_colours" in settings) is split
    if split:
        assert settings["split_colours"]["value"] is True and "COLOUR_SPLIT_GAMES" in settings["split_colours"]["why"]
