"""Training: schedules, the per-game config, checkpoints and exact resume, a short real run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from moc_envs.errors import CorruptWeightsError
from moc_envs.games import get_game
from trainers.detector.config import (
    Anneal,
    LossWeights,
    TrainConfig,
    lambda_dynamic,
    lambda_linear,
    linear_anneal,
    make_config,
    top_k_for,
)
from trainers.detector.train import (
    CHECKPOINT,
    TrainError,
    load_checkpoint,
    main,
    parse_scale_mean,
    start_boxes_at,
)


def _argv(data, out, *extra: str) -> list[str]:
    return [
        "--game", "Pong", "--data", str(data), "--out", str(out), "--preset", "cpu",
        "--batch-stacks", "1", "--device", "cpu", "--no-progress", "--eval-split", "", *extra,
    ]


# ---------------------------------------------------------------- schedules
def test_linear_anneal_values():
    assert linear_anneal(0, 0.1, 1e-10, 1000, 5000) == 0.1
    assert linear_anneal(1000, 0.1, 1e-10, 1000, 5000) == 0.1
    assert linear_anneal(3000, 0.1, 1e-10, 1000, 5000) == pytest.approx(0.05, rel=1e-6)
    assert linear_anneal(5000, 0.1, 1e-10, 1000, 5000) == 1e-10
    assert linear_anneal(9000, 0.1, 1e-10, 1000, 5000) == 1e-10
    assert linear_anneal(2500, -2.0, -2.5, 0, 5000) == pytest.approx(-2.25)


def test_lambda_schedules():
    assert lambda_linear(0, 3000) == 0.0
    assert lambda_linear(1500, 3000) == pytest.approx(0.5)
    assert lambda_linear(4000, 3000) == 1.0
    assert lambda_dynamic(0.0) == 1.0
    assert lambda_dynamic(1.0) == pytest.approx(0.5)
    assert lambda_dynamic(10.0) == pytest.approx(2**-10)
    with pytest.raises(ValueError, match="finite non-negative"):
        lambda_dynamic(-1.0)


@pytest.mark.parametrize(
    ("game", "step", "pres", "scale"),
    [
        ("Pong", 500, 0.1, -2.05),
        ("Pong", 3000, 0.05, -2.3),
        ("Pong", 5000, 1e-10, -2.5),
        ("Freeway", 2500, 0.05, -2.25),
        ("Boxing", 2500, 0.05, -1.0),
        ("Tennis", 5000, 1e-10, -3.0),
    ],
)
def test_gpu_preset_priors_at_given_steps(game, step, pres, scale):
    cfg = make_config(game, "gpu")
    assert cfg.z_pres_prior(step) == pytest.approx(pres, rel=1e-6)
    assert cfg.z_scale_prior(step) == pytest.approx(scale, rel=1e-6)


def test_gpu_preset_is_the_moc_schedule():
    cfg = make_config("Pong", "gpu")
    assert (cfg.steps, cfg.batch_stacks, cfg.seq_len, cfg.frames_per_step) == (5000, 16, 4, 64)
    assert (cfg.fg_lr, cfg.bg_lr, cfg.clip) == (3e-5, 1e-3, 1.0)
    assert cfg.z_pres_prior == Anneal(0.1, 1e-10, 1000, 5000)
    assert make_config("Boxing", "gpu").z_pres_prior.start_step == 0
    assert cfg.lambda_end_step == 3000
    assert (cfg.model.fg_sigma, cfg.model.bg_sigma, cfg.model.tau, cfg.model.bg_components) == (0.2, 0.1, 2.5, 3)
    assert cfg.model.top_k == top_k_for("Pong") >= get_game("Pong").n_slots


def test_z_scale_mean_override_keeps_the_schedule_steps():
    base = make_config("Skiing", "cpu", steps=2000)
    cfg = make_config("Skiing", "cpu", steps=2000, z_scale_mean=(-2.0, -2.5))
    assert (cfg.z_scale_prior.start_value, cfg.z_scale_prior.end_value) == (-2.0, -2.5)
    assert (cfg.z_scale_prior.start_step, cfg.z_scale_prior.end_step) == (
        base.z_scale_prior.start_step, base.z_scale_prior.end_step
    )
    assert parse_scale_mean("-1.5") == (-1.5, -1.5)
    assert parse_scale_mean(" -2, -2.5 ") == (-2.0, -2.5)
    for bad in ("", "a", "1,2,3", "nan"):
        with pytest.raises(ValueError, match="--z-scale-mean must be"):
            parse_scale_mean(bad)


def test_cpu_preset_scales_the_schedule():
    cfg = make_config("Pong", "cpu")
    f = cfg.steps / 5000
    assert cfg.steps < 5000 and cfg.frames_per_step == 16
    assert cfg.z_pres_prior.start_step == round(1000 * f)
    assert cfg.z_pres_prior.end_step == cfg.steps
    short = make_config("Pong", "cpu", steps=100)
    assert short.z_pres_prior.end_step == 100 and short.lambda_end_step == 100


def test_config_is_immutable_and_round_trips():
    cfg = make_config("Pong", "cpu", fg_lr=1e-3, seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 3  # type: ignore[misc]
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert make_config("Pong", "gpu", ablation="space").weights.motion == 0.0
    m = make_config("Pong", "gpu", ablation="space_m").weights
    assert m.continuity == 0.0 and m.motion == LossWeights().motion
    with pytest.raises(ValueError, match="preset must be one of"):
        make_config("Pong", "tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ablation must be one of"):
        make_config("Pong", "cpu", ablation="moc")
    with pytest.raises(ValueError, match="lambda_schedule must be one of"):
        make_config("Pong", "cpu", lambda_schedule="cosine")
    assert all(top_k_for(g) >= get_game(g).n_slots for g in ("Pong", "Seaquest", "Carnival"))


# ---------------------------------------------------------------- training runs
def _params(run) -> dict[str, torch.Tensor]:
    return torch.load(run / CHECKPOINT, weights_only=True)["model"]


def test_resume_reproduces_an_uninterrupted_run(tiny_pong, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(_argv(tiny_pong, a, "--steps", "4"))
    main(_argv(tiny_pong, b, "--steps", "4", "--until-step", "2"))
    assert torch.load(b / CHECKPOINT, weights_only=True)["step"] == 2
    main(_argv(tiny_pong, b, "--steps", "4", "--resume"))
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    ca = torch.load(a / CHECKPOINT, weights_only=True)
    cb = torch.load(b / CHECKPOINT, weights_only=True)
    assert ca["step"] == cb["step"] == 4
    assert ca["sched"] == cb["sched"]
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])


def test_boxes_start_at_the_prior_size_for_the_step_calibration(tiny_pong, tmp_path):
    from moc_envs.model import SpaceModel

    cfg = make_config("Pong", "cpu")
    model = SpaceModel(cfg.model)
    x = torch.rand(2, 3, cfg.model.img_size, cfg.model.img_size)
    plain = model.encoder.mean_where(model.encoder.image_encoder(x))[..., :2]
    start_boxes_at(model, -3.0)
    started = model.encoder.mean_where(model.encoder.image_encoder(x))[..., :2]
    # Every cell of any frame proposes the prior's box; the untrained encoder's are about half the frame.
    assert torch.allclose(started, torch.full_like(started, torch.sigmoid(torch.tensor(-3.0)).item()))
    assert plain.mean() > 0.3
    # The calibration's option reaches the run: its first checkpoint's heads start there.
    run = tmp_path / "calibration"
    main(_argv(tiny_pong, run, "--steps", "4", "--until-step", "1", "--boxes-at-prior"))
    heads = _params(run)["encoder.image_encoder.heads.bias"][3:5]
    assert torch.allclose(heads, torch.full_like(heads, cfg.z_scale_prior(0)), atol=0.05)


def test_dynamic_lambda_schedule_runs_and_is_checkpointed(tiny_pong, tmp_path):
    run = tmp_path / "dyn"
    main(_argv(tiny_pong, run, "--steps", "2", "--lambda-schedule", "dynamic"))
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert ckpt["config"]["lambda_schedule"] == "dynamic"
    assert isinstance(ckpt["sched"]["v_ema"], float) and ckpt["sched"]["v_ema"] >= 0.0


def test_checkpoint_errors(tiny_pong, tmp_path):
    run = tmp_path / "run"
    main(_argv(tiny_pong, run, "--steps", "1"))
    with pytest.raises(TrainError, match="exists; pass --resume"):
        main(_argv(tiny_pong, run, "--steps", "1"))
    with pytest.raises(TrainError, match="different config.*fg_lr"):
        main(_argv(tiny_pong, run, "--steps", "1", "--fg-lr", "0.5", "--resume"))
    with pytest.raises(TrainError, match="trained for game 'Pong', not 'Boxing'"):
        load_checkpoint(run / CHECKPOINT, expect=make_config("Boxing", "cpu"))
    (run / CHECKPOINT).write_bytes((run / CHECKPOINT).read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match="corrupt or not a training checkpoint"):
        main(_argv(tiny_pong, run, "--steps", "1", "--resume"))
    torch.save({"model": {}}, run / CHECKPOINT)
    with pytest.raises(CorruptWeightsError, match="lacks"):
        main(_argv(tiny_pong, run, "--steps", "1", "--resume"))
    with pytest.raises(TrainError, match="no checkpoint to resume from"):
        main(_argv(tiny_pong, tmp_path / "nothing", "--steps", "1", "--resume"))


def test_short_training_lowers_total_and_motion_loss(tiny_pong, tmp_path):
    """A few dozen steps on a tiny real Pong dataset lower the total and the motion loss."""
    from moc_envs.model import SpaceModel
    from trainers.detector.losses import elbo_terms, motion_terms, total_loss
    from trainers.detector.train import load_model_from_run, load_train_data

    data = load_train_data(tiny_pong)
    x, pres, where, mask = data.batch(torch.arange(len(data)), torch.device("cpu"))
    cfg = make_config("Pong", "cpu", steps=40, batch_stacks=2)

    def losses(model: SpaceModel) -> tuple[float, float]:
        with torch.no_grad():
            out = model.eval()(x, sample=False)
            terms = elbo_terms(out, 0.1, -2.0, cfg.z_scale_prior_std)
            terms.update(motion_terms(out, pres, where, mask))
            w = cfg.weights
            motion = w.motion_pres * terms["motion_pres"] + w.motion_alpha * terms["motion_alpha"]
            motion = motion + w.motion_where * terms["motion_where"]
            return float(total_loss(terms, dataclasses.replace(w, continuity=0.0), 0.0)), float(motion)

    run = tmp_path / "short"
    main(_argv(tiny_pong, run, "--steps", "1", "--batch-stacks", "2"))
    torch.manual_seed(cfg.seed)
    before = losses(SpaceModel(cfg.model))
    main(_argv(tiny_pong, tmp_path / "long", "--steps", "40", "--batch-stacks", "2"))
    after = losses(load_model_from_run(tmp_path / "long"))
    assert after[0] < before[0]
    assert after[1] < 0.7 * before[1]
    assert (tmp_path / "long" / "tb").is_dir() and any((tmp_path / "long" / "tb").iterdir())
