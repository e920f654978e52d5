"""Train a SPACE+MOC detector on a gameplay dataset (CleanRL-style, read top to bottom).

    python -m trainers.train --game Pong --data data/Pong --out runs/pong [--preset cpu|gpu]
        [--steps N] [--resume]

One immutable :class:`trainers.config.TrainConfig` per run, from the game's defaults, the preset
and the command-line overrides. Logs every loss term, lambda, the priors and learning rates to
TensorBoard under ``<out>/tb`` (``loss/``, ``charts/``, reconstructions with boxes under
``images/``); checkpoints ``<out>/checkpoint.pt`` atomically (model, both optimisers, step,
schedule state, every RNG state, config); ``--resume`` continues exactly where it stopped.
At the end the model is scored on the test split (``<out>/eval.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moc_envs.atomic import atomic_path
from moc_envs.errors import CorruptWeightsError, MocEnvsError
from moc_envs.model import SpaceModel
from moc_envs.model.geometry import where_to_boxes
from trainers.config import PRESETS, TrainConfig, lambda_dynamic, lambda_linear, make_config
from trainers.losses import continuity_loss, elbo_terms, motion_distance, motion_terms, total_loss

__all__ = [
    "Args",
    "parse_scale_mean",
    "TrainError",
    "CHECKPOINT",
    "TrainData",
    "load_train_data",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_from_run",
    "train",
    "main",
]

CHECKPOINT = "checkpoint.pt"


class TrainError(MocEnvsError, ValueError):
    """A training run that cannot start or continue as asked."""


@dataclass
class Args:
    """Command-line arguments of a training run."""

    game: str = field(metadata={"help": "game name, e.g. Pong"})
    data: str = field(metadata={"help": "dataset directory built by trainers.dataset"})
    out: str = field(metadata={"help": "run directory (checkpoint, TensorBoard logs, eval)"})
    preset: str = field(default="gpu", metadata={"help": "cpu: short schedule for 2 CPU cores; gpu: MOC's 5000 x 64 frames"})
    steps: int | None = field(default=None, metadata={"help": "optimisation steps (annealing rescaled)"})
    batch_stacks: int | None = field(default=None, metadata={"help": "stacks of T frames per step"})
    fg_lr: float | None = field(default=None, metadata={"help": "foreground RMSprop learning rate"})
    bg_lr: float | None = field(default=None, metadata={"help": "background Adam learning rate"})
    ablation: str | None = field(default=None, metadata={"help": "space | space_m | space_moc"})
    lambda_schedule: str | None = field(default=None, metadata={"help": "linear | dynamic motion->continuity schedule"})
    seed: int | None = field(default=None, metadata={"help": "random seed"})
    z_scale_mean: str | None = field(
        default=None,
        metadata={"help": "pre-sigmoid mean of the z_scale prior, 'START' or 'START,END' (default: the game's)"},
    )
    resume: bool = field(default=False, metadata={"help": "continue from <out>/checkpoint.pt"})
    until_step: int | None = field(default=None, metadata={"help": "stop (and checkpoint) at this step, before the end of the schedule"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop (and checkpoint) after this much wall time"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:N]"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)"})
    eval_split: str = field(default="test", metadata={"help": "split scored at the end ('' to skip)"})
    compile: bool = field(default=True, metadata={"help": "torch.compile the model on CUDA"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def config_overrides(self) -> dict[str, Any]:
        """The TrainConfig fields given on the command line."""
        names = ("steps", "batch_stacks", "fg_lr", "bg_lr", "ablation", "lambda_schedule", "seed")
        out: dict[str, Any] = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.z_scale_mean is not None:
            out["z_scale_mean"] = parse_scale_mean(self.z_scale_mean)
        return out


def parse_scale_mean(text: str) -> tuple[float, float]:
    """'START' or 'START,END' -> (start, end) of the z_scale prior mean; ValueError when malformed."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(v) for v in values):
        raise ValueError(f"--z-scale-mean must be 'START' or 'START,END' (numbers), got {text!r}")
    return values[0], values[-1]


def _parse(argv: Sequence[str] | None) -> Args:
    p = argparse.ArgumentParser(prog="python -m trainers.train", description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        if f.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
            continue
        kind = {"int | None": int, "float | None": float}.get(str(f.type), str)
        required = f.default is dataclasses.MISSING
        p.add_argument(flag, type=kind, required=required, default=None if required else f.default, help=help_)
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.preset not in PRESETS:
        p.error(f"--preset must be one of {', '.join(PRESETS)}, got {args.preset!r}")
    return args


# ---------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """A split held in memory as torch tensors (frames uint8, channels last)."""

    frames: torch.Tensor  # (S, T, 128, 128, 3) uint8
    motion_pres: torch.Tensor  # (S, T, N)
    motion_where: torch.Tensor  # (S, T, N, 4)
    motion_mask: torch.Tensor  # (S, T, 128, 128) uint8

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Stacks ``idx`` as model inputs: x (B*T, 3, S, S) float in [0, 1], then the targets."""
        pin = device.type == "cuda"

        def move(t: torch.Tensor) -> torch.Tensor:
            t = t[idx]
            return (t.pin_memory() if pin else t).to(device, non_blocking=pin)

        frames = move(self.frames).flatten(0, 1)
        x = frames.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        pres = move(self.motion_pres).flatten(0, 1)
        where = move(self.motion_where).flatten(0, 1)
        mask = move(self.motion_mask).flatten(0, 1).float()
        return x, pres, where, mask


def load_train_data(root: str | Path, split: str = "train") -> TrainData:
    """Load a dataset split into memory (see trainers.data.load_split)."""
    from trainers.data import load_split

    d = load_split(root, split)
    mask = torch.from_numpy(np.ascontiguousarray(d.motion_mask))
    if mask.numel() and int(mask.max()) > 1:  # tolerate 0/255 masks
        mask = (mask > 127).to(torch.uint8)
    return TrainData(
        frames=torch.from_numpy(np.ascontiguousarray(d.frames)),
        motion_pres=torch.from_numpy(np.ascontiguousarray(d.motion_pres)).float(),
        motion_where=torch.from_numpy(np.ascontiguousarray(d.motion_where)).float(),
        motion_mask=mask,
    )


# ---------------------------------------------------------------------------- checkpoints
def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batches": gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy(), *n[2:]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["batches"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a temporary file in the same folder, then os.replace."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, expect: TrainConfig | None = None) -> dict[str, Any]:
    """Read a checkpoint (weights-only unpickling) and check it against ``expect``.

    Raises CorruptWeightsError for an unreadable or incomplete file, TrainError when it was
    written for another game or another configuration.
    """
    if not path.is_file():
        raise TrainError(f"no checkpoint to resume from: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated / foreign files
        raise CorruptWeightsError(f"checkpoint {path} is corrupt or not a training checkpoint: {err}") from err
    keys = {"model", "fg_opt", "bg_opt", "step", "config", "rng", "sched"}
    if not isinstance(ckpt, dict) or not keys <= set(ckpt):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CorruptWeightsError(f"checkpoint {path} lacks {sorted(keys)}; found {found}")
    if expect is not None:
        saved = ckpt["config"]
        if saved.get("game") != expect.game:
            raise TrainError(
                f"checkpoint {path} was trained for game '{saved.get('game')}', not '{expect.game}'"
            )
        now = expect.to_dict()
        diff = sorted(k for k in now if saved.get(k) != now[k])
        if diff:
            detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in diff)
            raise TrainError(f"checkpoint {path} was written with a different config ({detail})")
    return ckpt


def load_model_from_run(run: Path, device: str = "cpu") -> SpaceModel:
    """The model of a run's latest checkpoint, in eval mode."""
    ckpt = load_checkpoint(Path(run) / CHECKPOINT)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = SpaceModel(cfg.model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CorruptWeightsError(f"checkpoint in {run} does not fit the model: {err}") from err
    return model.to(device).eval()


# ---------------------------------------------------------------------------- pictures
def _draw_boxes(img: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Draw (x, y, w, h) frame-pixel boxes on a (S, S, 3) uint8 model-size image."""
    s = img.shape[0]
    out = img.copy()
    for x, y, w, h in boxes:
        x0, x1 = int(np.clip(x / 160 * s, 0, s - 1)), int(np.clip((x + w) / 160 * s, 0, s - 1))
        y0, y1 = int(np.clip(y / 210 * s, 0, s - 1)), int(np.clip((y + h) / 210 * s, 0, s - 1))
        out[y0, x0 : x1 + 1] = colour
        out[y1, x0 : x1 + 1] = colour
        out[y0 : y1 + 1, x0] = colour
        out[y0 : y1 + 1, x1] = colour
    return out


def _pictures(x: torch.Tensor, out: Any, n: int = 4) -> np.ndarray:
    """Rows of [input + boxes | reconstruction | foreground | alpha | background], uint8 HWC."""
    rows = []
    for i in range(min(n, x.shape[0])):
        prob = out.pres_prob[i].detach()
        boxes = where_to_boxes(out.where_mean[i].detach()[prob > 0.5]).cpu().numpy()
        inp = (x[i].detach().float().permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        a = out.alpha_map[i].detach().float()
        recon = (a * out.fg[i].detach() + (1 - a) * out.bg_image[i].detach()).float()
        tiles = [
            _draw_boxes(inp, boxes, (255, 0, 255)),
            recon.permute(1, 2, 0).cpu().numpy(),
            out.fg[i].detach().float().permute(1, 2, 0).cpu().numpy(),
            a.expand(3, -1, -1).permute(1, 2, 0).cpu().numpy(),
            out.bg_image[i].detach().float().permute(1, 2, 0).cpu().numpy(),
        ]
        tiles = [t if t.dtype == np.uint8 else (np.clip(t, 0, 1) * 255).astype(np.uint8) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------- training
def _resolve_device(name: str) -> torch.device:
    from moc_envs.device import resolve_device

    return torch.device(resolve_device(name))


def train(args: Args) -> dict[str, Any]:
    """Run (or resume) one training run; return a summary dict."""
    from tqdm import tqdm

    cfg = make_config(args.game, args.preset, **args.config_overrides())  # type: ignore[arg-type]
    out_dir = Path(args.out)
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists() and not args.resume:
        raise TrainError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _resolve_device(args.device)
    cuda = device.type == "cuda"

    # Seeding up front (CleanRL style); a resumed run then overwrites every state below.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    data = load_train_data(args.data, "train")
    if data.frames.shape[1] != cfg.seq_len:
        raise TrainError(f"dataset stacks hold T={data.frames.shape[1]} frames, config expects {cfg.seq_len}")
    if data.motion_pres.shape[-1] != cfg.model.n_cells:
        raise TrainError(
            f"dataset motion targets have {data.motion_pres.shape[-1]} cells, model grid has {cfg.model.n_cells}"
        )

    model = SpaceModel(cfg.model).to(device).to(memory_format=torch.channels_last)
    fg_opt = torch.optim.RMSprop(model.foreground_parameters(), lr=cfg.fg_lr)
    bg_opt = torch.optim.Adam(model.background.parameters(), lr=cfg.bg_lr)
    step = 0
    sched = {"v_ema": None}
    if args.resume:
        ckpt = load_checkpoint(ckpt_path, expect=cfg)
        try:
            model.load_state_dict(ckpt["model"])
            fg_opt.load_state_dict(ckpt["fg_opt"])
            bg_opt.load_state_dict(ckpt["bg_opt"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CorruptWeightsError(f"checkpoint {ckpt_path} does not fit the model: {err}") from err
        step = int(ckpt["step"])
        sched = dict(ckpt["sched"])
        _set_rng_state(ckpt["rng"], gen)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    forward = model
    if cuda and args.compile:
        forward = torch.compile(model)  # type: ignore[assignment]

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tb"))
    writer.add_text("config", "```\n" + json.dumps(cfg.to_dict(), indent=2) + "\n```", step)

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "fg_opt": fg_opt.state_dict(),
                "bg_opt": bg_opt.state_dict(),
                "step": step,
                "sched": sched,
                "rng": _rng_state(gen),
                "config": cfg.to_dict(),
                "data": str(args.data),
            },
        )

    stop = min(cfg.steps, args.until_step) if args.until_step is not None else cfg.steps
    t_start = time.time()
    last: dict[str, float] = {}
    bar = tqdm(total=stop, initial=step, desc=f"{cfg.game} {cfg.preset}", disable=not args.progress, dynamic_ncols=True)
    model.train()
    while step < stop:
        t0 = time.time()
        idx = torch.randint(len(data), (cfg.batch_stacks,), generator=gen)
        x, m_pres, m_where, m_mask = data.batch(idx, device)
        if cfg.lambda_schedule == "linear":
            lam = lambda_linear(step, cfg.lambda_end_step)
        else:
            lam = lambda_dynamic(sched["v_ema"]) if sched["v_ema"] is not None else 0.0
        pres_prior = cfg.z_pres_prior(step)
        scale_prior = cfg.z_scale_prior(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = forward(x)
        terms = elbo_terms(out, pres_prior, scale_prior, cfg.z_scale_prior_std)
        terms.update(motion_terms(out, m_pres, m_where, m_mask, cfg.weights.pres_loss))
        terms["continuity"] = continuity_loss(out, cfg.seq_len, cfg.model.grid, cfg.weights.oc_beta)
        loss = total_loss(terms, cfg.weights, lam)
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {step}; lower the learning rates")
        fg_opt.zero_grad(set_to_none=True)
        bg_opt.zero_grad(set_to_none=True)
        loss.backward()
        fg_norm = torch.nn.utils.clip_grad_norm_(model.foreground_parameters(), cfg.clip)
        bg_norm = torch.nn.utils.clip_grad_norm_(model.background.parameters(), cfg.clip)
        fg_opt.step()
        bg_opt.step()
        v = cfg.dynamic_scale * motion_distance(out, m_pres, m_where)
        sched["v_ema"] = v if sched["v_ema"] is None else 0.9 * sched["v_ema"] + 0.1 * v
        step += 1
        bar.update(1)

        if step % cfg.log_every == 0 or step == stop:
            for k, val in terms.items():
                writer.add_scalar(f"loss/{k}", float(val.detach()), step)
            writer.add_scalar("loss/total", float(loss.detach()), step)
            writer.add_scalar("charts/lambda", lam, step)
            writer.add_scalar("charts/v", v, step)
            writer.add_scalar("charts/z_pres_prior", pres_prior, step)
            writer.add_scalar("charts/z_scale_prior", scale_prior, step)
            writer.add_scalar("charts/fg_lr", fg_opt.param_groups[0]["lr"], step)
            writer.add_scalar("charts/bg_lr", bg_opt.param_groups[0]["lr"], step)
            writer.add_scalar("charts/fg_grad_norm", float(fg_norm), step)
            writer.add_scalar("charts/bg_grad_norm", float(bg_norm), step)
            writer.add_scalar("charts/present_per_frame", float((out.pres_prob > 0.5).float().sum(1).mean()), step)
            writer.add_scalar("charts/frames_per_sec", cfg.frames_per_step / max(time.time() - t0, 1e-9), step)
            last = {k: float(val.detach()) for k, val in terms.items()} | {"total": float(loss.detach()), "lambda": lam}
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}", motion=f"{last['motion_pres']:.3g}", lam=f"{lam:.2f}")
        if step % cfg.image_every == 0 or step == stop:
            writer.add_image("images/input_recon_fg_alpha_bg", _pictures(x, out), step, dataformats="HWC")
        if step % cfg.ckpt_every == 0 or step == stop:
            checkpoint()
        if args.max_minutes is not None and time.time() - t_start > args.max_minutes * 60:
            checkpoint()
            break
    bar.close()
    checkpoint()
    summary: dict[str, Any] = {"step": step, "steps": cfg.steps, "last": last, "minutes": (time.time() - t_start) / 60}
    if (step >= cfg.steps or args.max_minutes is not None) and args.eval_split:
        from trainers.metrics import evaluate_encoder

        result = evaluate_encoder(model.encoder, args.data, args.eval_split, str(device))
        for crit in ("ocatari", "relative"):
            for k in ("precision", "recall", "f1"):
                writer.add_scalar(f"eval/{crit}_{k}", result[crit][k], step)
        (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        summary["eval"] = result
    writer.close()
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    args = _parse(argv)
    summary = train(args)
    print(json.dumps({k: v for k, v in summary.items() if k != "eval"}, indent=2))
    if "eval" in summary:
        e = summary["eval"]
        print(
            f"eval ({e['split']}): ocatari P={e['ocatari']['precision']:.3f} R={e['ocatari']['recall']:.3f}"
            f" | relative P={e['relative']['precision']:.3f} R={e['relative']['recall']:.3f}"
        )
    return summary


if __name__ == "__main__":
    main()
