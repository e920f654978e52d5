"""Data-parallel training (trainers.detector.distributed): 2 CPU processes over gloo, gradient averaging,
rank 0 alone writing, resume with another process count, the torchrun launcher."""

from __future__ import annotations

import copy
import os
import socket
import sys

import pytest
import torch

from trainers.detector import distributed
from trainers.detector.config import make_config
from trainers.detector.distributed import (
    Dist,
    DistributedError,
    parameter_digest,
    strip_nproc,
    torchrun_command,
)
from trainers.detector.train import CHECKPOINT, TrainWarning, load_model_from_run, main


def _argv(data, out, *extra: str) -> list[str]:
    return [
        "--game", "Pong", "--data", str(data), "--out", str(out), "--preset", "cpu",
        "--batch-stacks", "1", "--device", "cpu", "--no-progress", "--eval-split", "",
        "--threads", "1", *extra,
    ]  # fmt: skip


# ---------------------------------------------------------------- the launcher and its checks
def test_torchrun_command_and_nproc_stripping():
    cmd = torchrun_command(["--game", "Pong"], 3)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=3" in cmd
    assert cmd[-4:] == ["-m", "trainers.detector.train", "--game", "Pong"]
    assert strip_nproc(["--nproc", "2", "--steps", "4", "--nproc=8", "--resume"]) == ["--steps", "4", "--resume"]
    with pytest.raises(DistributedError, match="nproc must be >= 1, got 0"):
        torchrun_command([], 0)
    with pytest.raises(TypeError, match="nproc must be an int >= 1, got str '2'"):
        torchrun_command([], "2")  # type: ignore[arg-type]


def test_setup_outside_and_inside_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    one = distributed.setup("cpu")
    assert (one.rank, one.world_size, one.active, one.is_main, one.where) == (0, 1, False, True, "")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="--nproc 4 under torchrun, which started 2 processes"):
        distributed.setup("cpu", nproc=4)


def test_each_local_rank_takes_its_own_gpu(monkeypatch):
    import moc_envs.device

    # A machine with two GPUs, as far as the device choice can tell.
    monkeypatch.setattr(moc_envs.device, "resolve_device", lambda d: "cuda" if d == "auto" else d)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed._device_for("auto", 1, 2) == torch.device("cuda:1")
    assert distributed._device_for("cuda", 0, 2) == torch.device("cuda:0")
    assert distributed._device_for("cuda:1", 0, 1) == torch.device("cuda:1")  # one process: as asked
    assert distributed._device_for("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(DistributedError, match="--device cuda:1 names one GPU, but torchrun starts 2"):
        distributed._device_for("cuda:1", 0, 2)
    with pytest.raises(DistributedError, match="local rank 2 needs cuda:2, but torch sees 2 GPU"):
        distributed._device_for("cuda", 2, 3)


def test_one_process_leaves_everything_as_it_is():
    d, model, data = Dist(), torch.nn.Linear(2, 2), torch.zeros(3)
    assert d.wrap(model) is model and d.shard(data) is data
    assert d.all_true(False) is False and d.any_true(True) is True and d.mean(2.5) == 2.5
    assert d.gather({"a": 1}) == [{"a": 1}]


def test_shards_are_disjoint_and_cover_the_split(tiny_pong):
    from trainers.detector.train import load_train_data

    data = load_train_data(tiny_pong)
    parts = [distributed.shard(data, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 2]
    for r, p in enumerate(parts):
        assert torch.equal(p.frames, data.frames[r::3]) and torch.equal(p.motion_mask, data.motion_mask[r::3])
    with pytest.raises(DistributedError, match="holds 8 stacks, fewer than the 9 processes"):
        distributed.shard(data, 0, 9)


# ---------------------------------------------------------------- one step, two ranks
def _loss(model, batch, cfg) -> torch.Tensor:
    """The training loss of trainers.detector.train at step 0 (linear lambda 0)."""
    from trainers.detector.losses import continuity_loss, elbo_terms, motion_terms, total_loss

    x, pres, where, mask = batch
    out = model(x)
    terms = elbo_terms(out, cfg.z_pres_prior(0), cfg.z_scale_prior(0), cfg.z_scale_prior_std)
    terms.update(motion_terms(out, pres, where, mask, cfg.weights.pres_loss))
    terms["continuity"] = continuity_loss(out, cfg.seq_len, cfg.model.grid, cfg.weights.oc_beta)
    return total_loss(terms, cfg.weights, 0.0)


def _step(model, forward, batch, cfg) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Gradients and parameter change of one optimiser step as trainers.detector.train takes it."""
    fg = torch.optim.RMSprop(model.foreground_parameters(), lr=cfg.fg_lr)
    bg = torch.optim.Adam(model.background.parameters(), lr=cfg.bg_lr)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    torch.manual_seed(123)  # the same sampling noise for the local and the DDP step
    _loss(forward, batch, cfg).backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    torch.nn.utils.clip_grad_norm_(model.foreground_parameters(), cfg.clip)
    torch.nn.utils.clip_grad_norm_(model.background.parameters(), cfg.clip)
    fg.step()
    bg.step()
    return grads, {k: p.detach() - before[k] for k, p in model.named_parameters()}


def _rank_worker(rank: int, port: int, data: str, out: str) -> None:
    """One of two gloo processes: a local step and a DDP step from the same weights and noise."""
    from moc_envs.model import SpaceModel
    from trainers.detector.train import load_train_data

    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    dist = distributed.setup("cpu")
    try:
        cfg = make_config("Pong", "cpu")
        shard = dist.shard(load_train_data(data))
        batch = shard.batch(torch.arange(2), torch.device("cpu"))
        torch.manual_seed(0)
        model = SpaceModel(cfg.model)
        local = copy.deepcopy(model)
        local_grads, local_move = _step(local, local, batch, cfg)
        ddp_grads, ddp_move = _step(model, dist.wrap(model), batch, cfg)
        torch.save(
            {"local_grads": local_grads, "local_move": local_move, "ddp_grads": ddp_grads,
             "ddp_move": ddp_move, "frames": shard.frames[:2].clone()},
            os.path.join(out, f"rank{rank}.pt"),
        )  # fmt: skip
    finally:
        dist.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_ddp_step_averages_the_gradients_of_both_shards(tiny_pong, tmp_path):
    torch.multiprocessing.start_processes(
        _rank_worker, args=(_free_port(), str(tiny_pong), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(r0["frames"], r1["frames"])  # the ranks read different shards
    assert r0["ddp_grads"].keys() == r0["local_grads"].keys() and len(r0["ddp_grads"]) > 10
    for k, g in r0["ddp_grads"].items():
        assert torch.equal(g, r1["ddp_grads"][k]), k  # both ranks hold one gradient
        mean = (r0["local_grads"][k] + r1["local_grads"][k]) / 2
        torch.testing.assert_close(g, mean, rtol=1e-4, atol=1e-6 * float(mean.abs().max()) + 1e-12)
    moved = [k for k, d in r0["ddp_move"].items() if d.abs().max() > 0]
    assert len(moved) > 10
    for k in r0["ddp_move"]:
        assert torch.equal(r0["ddp_move"][k], r1["ddp_move"][k]), k  # the same update on both
    for local in (r0["local_move"], r1["local_move"]):  # not either rank's own step
        assert any(not torch.equal(r0["ddp_move"][k], local[k]) for k in moved)
        assert any(not torch.equal(r0["ddp_grads"][k], g) for k, g in local.items() if k in r0["ddp_grads"])


# ---------------------------------------------------------------- trainers.detector.train --nproc 2
def test_two_process_run_stays_in_sync_and_resumes_on_one(tiny_pong, tmp_path):
    run = tmp_path / "ddp"
    summary = main(_argv(tiny_pong, run, "--steps", "3", "--until-step", "2", "--nproc", "2"))
    assert summary == {"processes": 2, "out": str(run)}
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert ckpt["step"] == 2 and ckpt["world_size"] == 2 and len(ckpt["rank_rng"]) == 1
    # Each rank hashed its own parameters at the checkpoint: identical, and those rank 0 saved.
    rank0, rank1 = ckpt["rank_params"]
    assert rank0 == rank1 == parameter_digest(load_model_from_run(run))
    # Rank 0 alone wrote: one TensorBoard event file, no per-rank files.
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "tb"]
    assert len(list((run / "tb").iterdir())) == 1
    with pytest.warns(TrainWarning, match="with 1 process\\(es\\), but it was written by 2"):
        main(_argv(tiny_pong, run, "--steps", "3", "--resume"))
    resumed = torch.load(run / CHECKPOINT, weights_only=True)
    assert resumed["step"] == 3 and "world_size" not in resumed  # a one-process checkpoint again
    assert any(not torch.equal(resumed["model"][k], v) for k, v in ckpt["model"].items())


# ---------------------------------------------------------------- the throughput benchmark
def test_ddp_speed_benchmark_arguments(capsys):
    from benchmarks import ddp_speed

    with pytest.raises(SystemExit):
        ddp_speed.main(["--runs", "2x0"])
    assert "--runs must be comma-separated PROCESSESxTHREADS (e.g. 1x1,2x1), got '2x0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        ddp_speed.main(["--help"])
    assert exit_.value.code == 0 and "(default: 1x1,2x1,1x2)" in capsys.readouterr().out
