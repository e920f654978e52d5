"""SPACE+MOC training and inference speed, ours next to the reference implementation's figures.

    moc-envs bench train-speed [--steps 10] [--threads 2]

Measures, on this machine:

- training: frames per second of full optimisation steps of 16 frames (4 stacks x T=4):
  forward (encoder, top-K glimpse encoding/decoding, compositing, background), all loss terms,
  backward, gradient clipping and both optimiser updates, exactly as ``trainers.detector.train`` does;
- inference: latency of the exported encoder path (image encoder, heads, glimpse encoder,
  posterior means) on one frame and on a batch of 64 frames, and of the full
  ``SpaceDetector.detect`` on one raw 210x160 frame (resize included).

The reference figures (anchors.md) were measured on the same 2-core machine: 47 s per
16-frame training step (0.34 frames/s) and 0.45 s for a single-frame forward pass.
Writes ``benchmarks/results/train_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    learned_weights,
    markdown_table,
    torch_threads,
    write_results,
)

__all__ = ["REFERENCE", "measure_training", "measure_distillation", "measure_inference", "main"]

REFERENCE = {
    "train_step_s": 47.0,
    "train_frames_per_s": 0.34,
    "single_frame_forward_s": 0.45,
    "encoder_prototype_frame_s": 0.010,
}
"""The reference SPACE implementation on this 2-core CPU (../shared/anchors.md)."""


def _frames(data: str | None, n_stacks: int, seed: int) -> tuple[Any, ...]:
    """Training batches: real Pong stacks when a dataset is given, else random frames."""
    import torch

    if data:
        from trainers.detector.train import load_train_data

        d = load_train_data(data)
        return d, "dataset " + data
    g = torch.Generator().manual_seed(seed)
    s = max(n_stacks, 8)
    frames = torch.randint(0, 256, (s, 4, 128, 128, 3), dtype=torch.uint8, generator=g)
    pres = (torch.rand(s, 4, 256, generator=g) < 0.01).float()
    where = torch.rand(s, 4, 256, 4, generator=g) * pres[..., None]
    mask = (torch.rand(s, 4, 128, 128, generator=g) < 0.01).to(torch.uint8)
    from trainers.detector.train import TrainData

    return TrainData(frames, pres, where, mask), "random frames"


def measure_training(
    game: str = "Pong",
    steps: int = 10,
    warmup: int = 3,
    data: str | None = None,
    seed: int = 0,
    image_encoder: str = "space",
) -> dict[str, Any]:
    """Time full 16-frame training steps of the cpu preset model; return per-step seconds.

    ``image_encoder="lean"`` times the same SPACE+MOC step with the lean image encoder.
    """
    import dataclasses

    import torch

    from moc_envs.model import SpaceModel
    from trainers.detector.config import make_config
    from trainers.detector.losses import continuity_loss, elbo_terms, motion_terms, total_loss
    from trainers.detector.train import optimizer_step

    cfg = make_config(game, "cpu", seed=seed)
    torch.manual_seed(seed)
    train_data, source = _frames(data, cfg.batch_stacks, seed)
    model = SpaceModel(dataclasses.replace(cfg.model, image_encoder=image_encoder))
    model = model.to(memory_format=torch.channels_last).train()
    fg_opt = torch.optim.RMSprop(model.foreground_parameters(), lr=cfg.fg_lr)
    bg_opt = torch.optim.Adam(model.background.parameters(), lr=cfg.bg_lr)
    gen = torch.Generator().manual_seed(seed)
    times: list[float] = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        idx = torch.randint(len(train_data), (cfg.batch_stacks,), generator=gen)
        x, pres, where, mask = train_data.batch(idx, torch.device("cpu"))
        out = model(x)
        terms = elbo_terms(out, 0.1, -2.0, cfg.z_scale_prior_std)
        terms.update(motion_terms(out, pres, where, mask, cfg.weights.pres_loss))
        terms["continuity"] = continuity_loss(out, cfg.seq_len, cfg.model.grid, cfg.weights.oc_beta)
        loss = total_loss(terms, cfg.weights, 0.5)
        optimizer_step(model, fg_opt, bg_opt, loss, cfg.clip)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {
        "frames_per_step": cfg.frames_per_step,
        "top_k": cfg.model.top_k,
        "glimpse": cfg.model.glimpse,
        "source": source,
        "step_s_median": statistics.median(times),
        "step_s_mean": statistics.fmean(times),
        "step_s_all": times,
        "frames_per_s": cfg.frames_per_step / statistics.median(times),
    }


def measure_distillation(steps: int = 10, warmup: int = 3, batch: int = 64, seed: int = 0) -> dict[str, Any]:
    """Time ``trainers.detector.distill``'s optimisation step of the lean image encoder on ``batch`` frames."""
    import torch

    from moc_envs.model import SpaceEncoder
    from moc_envs.model.config import ModelConfig
    from trainers.detector.distill import _losses

    torch.manual_seed(seed)
    student = SpaceEncoder(ModelConfig(image_encoder="lean"))
    opt = torch.optim.Adam(student.image_encoder.parameters(), lr=2e-3)
    x = torch.rand(batch, 3, 128, 128)
    target = torch.randn(batch, 256, 5)
    times: list[float] = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = _losses(student.image_encoder.raw(x), target, student)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"batch": batch, "step_s_median": statistics.median(times), "frames_per_s": batch / statistics.median(times)}


def _latency(fn: Any, repeats: int) -> float:
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _raw_frames(game: str, n: int, seed: int) -> np.ndarray:
    """n real frames (210, 160, 3) of the game under a random policy, after a warm-up."""
    import ale_py
    import gymnasium as gym

    from moc_envs.games import get_game

    gym.register_envs(ale_py)
    env = gym.make(get_game(game).ale_id)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = []
    for i in range(100 + 4 * n):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
        if i >= 100 and i % 4 == 0:
            frames.append(obs)
    env.close()
    return np.stack(frames[:n])


def measure_inference(game: str = "Pong", repeats: int = 30, seed: int = 0) -> dict[str, Any]:
    """Median latency of the encoder path (1 and 64 frames) and of detect() on one raw frame.

    Uses the shipped weights of ``game`` on real frames when they exist (the number of present
    cells, hence of encoded glimpses, is then realistic); otherwise a randomly initialised
    encoder whose presence head is biased so that few cells are present.
    """
    import torch

    from moc_envs.games import get_game
    from moc_envs.model import SpaceEncoder
    from moc_envs.perception.preprocess import resize_frames
    from moc_envs.perception.space_detector import SpaceDetector
    from trainers.detector.config import make_config

    spec = get_game(game)
    weights = learned_weights(spec.name)
    if weights is not None:
        det = SpaceDetector.from_pretrained(weights, spec, allow_unclassified=True)
        source = f"trained weights {weights.name}/, real frames"
    else:
        torch.manual_seed(seed)
        encoder = SpaceEncoder(make_config(game, "cpu", seed=seed).model)
        with torch.no_grad():
            encoder.image_encoder.heads.bias[0] = -3.0
        det = SpaceDetector(encoder, spec)
        source = "random init (no weights), real frames"
    raw = _raw_frames(spec.name, 64, seed)
    x64 = torch.from_numpy(resize_frames(raw)).permute(0, 3, 1, 2).float().div(255.0)
    x64 = x64.contiguous(memory_format=torch.channels_last)
    x1 = x64[:1].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        one = _latency(lambda: det.encoder.infer(x1), repeats)
        batch = _latency(lambda: det.encoder.infer(x64), max(3, repeats // 5))
        present = int(det.encoder.infer(x64)[0].numel())
    detect = _latency(lambda: det.detect(raw[:1]), repeats)
    return {
        "encoder_1_frame_s": one,
        "encoder_64_frames_s": batch,
        "detect_1_raw_frame_s": detect,
        "present_cells_per_frame": present / 64,
        "source": source,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: measure under each thread count, print and write the table."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench train-speed",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", default="Pong", help="game whose cpu-preset config is timed")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (after 3 warm-up steps)")
    p.add_argument("--repeats", type=int, default=30, help="timed single-frame inference calls")
    p.add_argument("--data", default=None, help="dataset directory for real frames (default: random frames)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch CPU thread counts to measure")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and Markdown")
    p.add_argument("--quick", action="store_true", help="2 steps, 5 repeats (smoke test, not for results)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 2, 5
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not threads or min(threads) < 1:
        p.error(f"--threads needs at least one count >= 1, got {args.threads!r}")
    load_before = os.getloadavg()
    runs: dict[int, dict[str, Any]] = {}
    for n in threads:
        torch_threads(n)
        warm = 1 if args.quick else 3
        runs[n] = {
            "training": measure_training(args.game, args.steps, warm, args.data),
            "training_lean": measure_training(args.game, args.steps, warm, args.data, image_encoder="lean"),
            "distillation": measure_distillation(args.steps, warm),
            "inference": measure_inference(args.game, args.repeats),
        }
    ref = REFERENCE

    def row(label: str, ref_value: float, key: tuple[str, str], scale: float, higher: bool) -> list[Any]:
        vals = [runs[n][key[0]][key[1]] * scale for n in threads]
        best = max(vals) if higher else min(vals)
        speedup = (best / ref_value if higher else ref_value / best) if np.isfinite(ref_value) else float("nan")
        return [label, ref_value, *vals, speedup]

    rows = [
        row("training step, 16 frames (s)", ref["train_step_s"], ("training", "step_s_median"), 1.0, False),
        row("training throughput (frames/s)", ref["train_frames_per_s"], ("training", "frames_per_s"), 1.0, True),
        row("training throughput, lean image encoder (frames/s)", ref["train_frames_per_s"], ("training_lean", "frames_per_s"), 1.0, True),
        row("distillation of the lean encoder, 64-frame steps (frames/s)", float("nan"), ("distillation", "frames_per_s"), 1.0, True),
        row("single-frame encoder forward (ms)", ref["single_frame_forward_s"] * 1e3, ("inference", "encoder_1_frame_s"), 1e3, False),
        row("detect(), 1 raw 210x160 frame (ms)", ref["single_frame_forward_s"] * 1e3, ("inference", "detect_1_raw_frame_s"), 1e3, False),
        row("encoder, 64 frames in one batch (ms)", float("nan"), ("inference", "encoder_64_frames_s"), 1e3, False),
    ]
    headers = ["measure", "reference SPACE", *[f"ours, {n} thread{'s' if n > 1 else ''}" for n in threads], "speed-up, best (x)"]
    table = markdown_table(headers, rows, digits=2)
    first = runs[threads[0]]
    train, infer = first["training"], first["inference"]
    notes = (
        f"Training: cpu-preset model ({train['glimpse']}x{train['glimpse']} glimpses, top-K = "
        f"{train['top_k']} decoded cells per frame), {train['frames_per_step']} frames a step "
        f"(4 stacks x T=4), forward + every loss term + backward + clipping + both optimiser "
        f"updates, median of {len(train['step_s_all'])} steps after warm-up, {train['source']}; "
        "the lean row runs the same step with the lean image encoder (`moc_envs.model.lean`). "
        "Distillation: one `trainers.detector.distill` step of the lean image encoder (forward, losses "
        "against cached teacher posteriors, backward, Adam) on 64 frames; the shipped detectors "
        "are distilled this way from their SPACE encoders (the teacher's posteriors are "
        "computed once per frame beforehand). "
        f"Inference ({infer['source']}, {infer['present_cells_per_frame']:.1f} present cells per "
        "frame): the exported encoder path (image encoder, heads, glimpse encoder of the "
        "present cells, posterior means); detect() adds the resize, duplicate suppression and "
        "the Detection records. The reference's single-frame figure is its full forward pass "
        "(it decodes all 256 glimpses). Bars: >= 20x the reference's training throughput "
        "(>= 7 frames/s), <= 10 ms per single-frame encoder pass. The 64-frame H100 figure "
        "needs the GPU machine: not measured here. The machine is shared with other "
        f"developers' jobs (1/5/15-min load average before this run: "
        f"{', '.join(f'{v:.2f}' for v in load_before)}): with another busy process, two OpenMP "
        "threads can be several times slower than one, so both are reported."
    )
    payload = {"reference": ref, "threads": threads, "runs": {str(n): r for n, r in runs.items()}}
    write_results(args.out, "train_speed", payload, table + "\n\n" + notes, "SPACE+MOC training and inference speed")
    print(table)
    return payload


if __name__ == "__main__":
    main()
