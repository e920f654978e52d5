"""Data-parallel SPACE+MOC training throughput: 1 process beside N DDP processes (torchrun).

    moc-envs bench ddp-speed [--data data/Pong] [--runs 1x1,2x1,1x2] [--steps 10] [--device cpu]

For each run ``NxT`` (N processes of T torch threads each), launches ``torchrun --standalone --nproc-per-node N`` on this module
(:func:`trainers.detector.distributed.torchrun_command`); every process times the training step of
``trainers.detector.train`` (a batch from its own shard, forward, every loss term, backward with DDP's
gradient averaging, clipping, both optimiser updates, the per-step agreement between ranks)
on ``--batch-stacks`` stacks of T=4 frames. Throughput counts every rank's frames:
N x batch x T frames per step over the wall time of the timed steps (all ranks start and end
them together). N = 1 runs the same command without a process group, as a plain
``trainers.detector.train`` run does. Writes ``benchmarks/results/ddp_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, markdown_table, write_results
from moc_envs.weights.atomic import atomic_write_text

__all__ = ["measure", "worker", "main"]


def worker(argv: Sequence[str]) -> None:
    """One rank of a timed run (started by torchrun); rank 0 writes the timings as JSON."""
    p = argparse.ArgumentParser(prog="moc-envs bench ddp-speed --worker")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--result", required=True)
    p.add_argument("--game", default="Pong")
    p.add_argument("--data", default="")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-stacks", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch

    from moc_envs.model import SpaceModel
    from moc_envs.threads import set_torch_threads
    from trainers.detector import distributed
    from trainers.detector.config import make_config
    from trainers.detector.losses import (
        continuity_loss,
        elbo_terms,
        motion_distance,
        motion_terms,
        total_loss,
    )
    from trainers.detector.train import TrainData, load_train_data, optimizer_step

    set_torch_threads(a.threads)
    dist = distributed.setup(a.device)
    try:
        device = dist.device or torch.device(a.device)
        cfg = make_config(a.game, "cpu", batch_stacks=a.batch_stacks)
        torch.manual_seed(cfg.seed)
        if a.data:
            data, source = load_train_data(a.data), f"dataset {a.data}"
        else:  # random frames: the step's cost hardly depends on the pixels
            g = torch.Generator().manual_seed(cfg.seed)
            s, grid = 16 * dist.world_size, cfg.model.n_cells
            pres = (torch.rand(s, 4, grid, generator=g) < 0.01).float()
            data = TrainData(
                torch.randint(0, 256, (s, 4, 128, 128, 3), dtype=torch.uint8, generator=g),
                pres,
                torch.rand(s, 4, grid, 4, generator=g) * pres[..., None],
                (torch.rand(s, 4, 128, 128, generator=g) < 0.01).to(torch.uint8),
            )
            source = "random frames"
        data = dist.shard(data)
        model = SpaceModel(cfg.model).to(device).to(memory_format=torch.channels_last).train()
        fg_opt = torch.optim.RMSprop(model.foreground_parameters(), lr=cfg.fg_lr)
        bg_opt = torch.optim.Adam(model.background.parameters(), lr=cfg.bg_lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        dist.reseed(cfg.seed, gen)
        forward = dist.wrap(model)
        times: list[float] = []
        for i in range(a.warmup + a.steps):
            if i == a.warmup and dist.active:
                torch.distributed.barrier()  # the timed steps start together
            t0 = time.perf_counter()
            idx = torch.randint(len(data), (cfg.batch_stacks,), generator=gen)
            x, m_pres, m_where, m_mask = data.batch(idx, device)
            out = forward(x)
            terms = elbo_terms(out, 0.1, -2.0, cfg.z_scale_prior_std)
            terms.update(motion_terms(out, m_pres, m_where, m_mask, cfg.weights.pres_loss))
            terms["continuity"] = continuity_loss(
                out, cfg.seq_len, cfg.model.grid, cfg.weights.oc_beta
            )
            loss = total_loss(terms, cfg.weights, 0.5)
            if not dist.all_true(bool(torch.isfinite(loss))):
                raise RuntimeError(f"non-finite loss at step {i}{dist.where}")
            optimizer_step(model, fg_opt, bg_opt, loss, cfg.clip)
            dist.mean(cfg.dynamic_scale * motion_distance(out, m_pres, m_where))
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
        if dist.active:
            torch.distributed.barrier()
        wall = sum(times)
        # Every rank's wall time of the timed steps: the slowest one sets the pace.
        walls = dist.gather(wall)
        if dist.is_main:
            frames = cfg.frames_per_step * dist.world_size * a.steps
            result = {
                "processes": dist.world_size,
                "backend": dist.backend,
                "frames_per_step_per_process": cfg.frames_per_step,
                "steps": a.steps,
                "step_s_median": statistics.median(times),
                "wall_s": max(walls),
                "frames_per_s": frames / max(walls),
                "threads_per_process": torch.get_num_threads(),
                "source": source,
            }
            atomic_write_text(a.result, json.dumps(result))
    finally:
        dist.close()


def measure(
    nproc: int, steps: int, warmup: int, batch_stacks: int, data: str, threads: int, device: str
) -> dict[str, Any]:
    """Launch ``nproc`` processes under torchrun on :func:`worker`; return rank 0's timings."""
    from trainers.detector.distributed import torchrun_command

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        args = [
            "--worker", "--result", str(result), "--steps", str(steps), "--warmup", str(warmup),
            "--batch-stacks", str(batch_stacks), "--threads", str(threads), "--device", device,
            *(["--data", data] if data else []),
        ]  # fmt: skip
        # OMP_NUM_THREADS as --threads: torchrun would set 1 for N > 1 only.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(
            torchrun_command(args, nproc, module="benchmarks.ddp_speed"), check=True, env=env
        )
        return json.loads(result.read_text())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: time each run in turn, print and write the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in argv:
        worker(argv)
        return {}
    p = argparse.ArgumentParser(
        prog="moc-envs bench ddp-speed",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data", default="", help="dataset directory for real frames (default: random frames)"
    )
    p.add_argument(
        "--runs", default="1x1,2x1,1x2", help="comma-separated PROCESSESxTHREADS to time in turn"
    )
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after the warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument(
        "--batch-stacks", type=int, default=4, help="stacks of T=4 frames per process and step"
    )
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and Markdown")
    p.add_argument(
        "--quick", action="store_true", help="2 steps, 1 warm-up (smoke test, not for results)"
    )
    args = p.parse_args(argv)
    try:
        asked = [tuple(int(v) for v in r.split("x")) for r in args.runs.split(",") if r.strip()]
    except ValueError:
        asked = []
    if not asked or any(len(r) != 2 or min(r) < 1 for r in asked):
        p.error(f"--runs must be comma-separated PROCESSESxTHREADS (e.g. 1x1,2x1), got {args.runs!r}")
    if args.quick:
        args.steps, args.warmup = 2, 1
    load_before = os.getloadavg()
    runs = [
        measure(n, args.steps, args.warmup, args.batch_stacks, args.data, t, args.device)
        for n, t in asked
    ]
    base = runs[0]["frames_per_s"]
    rows = [
        [r["processes"], r["backend"] or "- (no process group)", r["threads_per_process"],
         r["frames_per_step_per_process"] * r["processes"], r["step_s_median"], r["frames_per_s"],
         r["frames_per_s"] / base]
        for r in runs
    ]  # fmt: skip
    headers = [
        "processes",
        "backend",
        "threads each",
        "frames per step (all ranks)",
        "step (s, median)",
        "frames/s",
        "vs the first row",
    ]
    table = markdown_table(headers, rows, digits=2)
    notes = (
        f"SPACE+MOC training step of the cpu preset ({args.batch_stacks} stacks x T=4 frames per "
        "process), as `trainers.detector.train` runs it under torchrun: own shard, DDP gradient averaging "
        f"({', '.join(sorted({r['backend'] for r in runs if r['backend']})) or 'none: one process'}), clipping, RMSprop + Adam, the per-step agreement "
        f"between ranks; {args.steps} timed steps after {args.warmup} warm-up steps, "
        f"{runs[0]['source']}. frames/s counts every rank's frames over the slowest rank's wall "
        "time. Each row runs in turn, in one invocation, on the same machine. "
        f"Load average before the run: {', '.join(f'{v:.2f}' for v in load_before)}: the "
        "machine is shared with other developers' jobs, so two processes on its two cores "
        "compete with them; compare the rows of one table, not absolute figures across runs."
    )
    payload = {
        "runs": runs,
        "args": {k: str(v) for k, v in vars(args).items()},
        "load_before": list(load_before),
    }
    write_results(
        args.out,
        "ddp_speed",
        payload,
        table + "\n\n" + notes,
        "Data-parallel training throughput (torch DDP)",
    )
    print(table)
    return payload


if __name__ == "__main__":
    main()
