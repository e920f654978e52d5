"""Train a SPACE+MOC detector on a gameplay dataset (CleanRL-style, read top to bottom).

    moc-envs train-detector --game Pong --data data/Pong --out runs/pong [--preset cpu|gpu]
        [--steps N] [--resume]

One immutable :class:`trainers.detector.config.TrainConfig` per run, from the game's defaults, the preset
and the command-line overrides. Logs every loss term, lambda, the priors and learning rates to
TensorBoard under ``<out>/tb`` (``loss/``, ``charts/``, reconstructions with boxes under
``images/``); checkpoints ``<out>/checkpoint.pt`` atomically (model, both optimisers, step,
schedule state, every RNG state, config, thread count and a SHA-256 digest of it all);
``--resume`` continues exactly where it stopped. At the end the model is scored on the test
split (``<out>/eval.json``).

A run holds ``<out>/train.lock`` (:mod:`trainers.run_lock`) from start to end, so two runs never
share an output folder, and removes the temporaries that killed runs left behind there. A
checkpoint whose digest does not match its contents is reported as corrupted; one written
before digests existed still loads, with a note. Resuming with another thread count or device
warns that the result will not be bit-identical to an uninterrupted run. Checkpoints and resuming
are :mod:`trainers.detector.checkpoint`; the arguments are :class:`trainers.detector.arguments.Args`.

``--nproc N`` (or ``torchrun --nproc_per_node N -m trainers.detector.train ...``) trains with N
DistributedDataParallel processes, each on its own shard of the dataset, ``--batch-stacks``
stacks per process; see :mod:`trainers.detector.distributed` for the batch, the learning rates and
resuming with another N.
"""

from __future__ import annotations

import json
import random
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moc_envs.errors import CorruptWeightsError, MocEnvsError
from moc_envs.model import SpaceModel
from moc_envs.model.geometry import where_to_boxes
from moc_envs.weights.atomic import (
    atomic_write_text,
    remove_stale_temporaries,
    temporary_owner,
)
from trainers.detector import distributed
from trainers.detector.arguments import Args, parse_args, parse_scale_mean
from trainers.detector.checkpoint import (
    CHECKPOINT,
    TrainError,
    TrainWarning,
    checkpoint_digest,
    load_checkpoint,
    load_model_from_run,
    restore_rng,
    rng_state,
    save_checkpoint,
    warn_if_not_exact,
    warn_if_other_world,
)
from trainers.detector.config import (
    TrainConfig,
    lambda_dynamic,
    lambda_linear,
    make_config,
)
from trainers.detector.losses import (
    continuity_loss,
    elbo_terms,
    motion_distance,
    motion_terms,
    total_loss,
)
from trainers.run_lock import RunLock, RunLockWarning

__all__ = [
    "Args",
    "parse_scale_mean",
    "TrainError",
    "TrainWarning",
    "CHECKPOINT",
    "EVAL_FILE",
    "CONFIG_FILE",
    "TrainData",
    "load_train_data",
    "checkpoint_digest",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_from_run",
    "start_boxes_at",
    "train",
    "main",
]

EVAL_FILE = "eval.json"
CONFIG_FILE = "config.json"


def _parse(argv: Sequence[str] | None) -> Args:
    """The arguments of command line ``argv`` (see :func:`trainers.detector.arguments.parse_args`)."""
    return parse_args(argv, prog="moc-envs train-detector", description=__doc__.split("\n")[0])


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
    """Load a dataset split into memory (see trainers.data.reader.load_split)."""
    from trainers.data.reader import load_split

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


def _remove_leftovers(out_dir: Path) -> None:
    """Delete the temporaries of checkpoint / eval / config writes whose process died, and say so."""
    for path in remove_stale_temporaries(out_dir, (CHECKPOINT, EVAL_FILE, CONFIG_FILE)):
        owner = temporary_owner(path)
        pid = owner[1] if owner else "?"
        warnings.warn(
            f"removed {path}: a half-written temporary left when its process (pid {pid}) died",
            TrainWarning,
            stacklevel=3,
        )



def optimizer_step(
    model: Any, fg_opt: torch.optim.Optimizer, bg_opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of both optimisers from ``loss``, each part's gradient norm clipped to ``clip``.

    Returns the foreground's and the background's gradient norms before clipping.
    """
    fg_opt.zero_grad(set_to_none=True)
    bg_opt.zero_grad(set_to_none=True)
    loss.backward()
    fg_norm = torch.nn.utils.clip_grad_norm_(model.foreground_parameters(), clip)
    bg_norm = torch.nn.utils.clip_grad_norm_(model.background.parameters(), clip)
    fg_opt.step()
    bg_opt.step()
    return fg_norm, bg_norm


def start_boxes_at(model: SpaceModel, z_scale_logit: float) -> None:
    """Make every cell of the untrained ``model`` propose a box of the size ``z_scale_logit``
    (pre-sigmoid, as the z_scale prior is written) whatever the frame.

    A training step's cost follows the boxes' sizes (each glimpse is pasted over a window of its
    box's size), and an untrained encoder proposes boxes about half the frame wide: its first
    steps cost 3-4 times what the steps cost once the z_scale prior has pulled the boxes to object
    size. ``moc-envs train`` times its forecast and calibration steps with the boxes started here,
    at the prior's size; a training run does not (its recipe starts from the plain initialisation).
    """
    heads = model.encoder.image_encoder.heads  # channels 3-4: the z_scale means (latents.cell_latents)
    with torch.no_grad():
        heads.weight[3:5] = 0.0
        heads.bias[3:5] = float(z_scale_logit)


def train(args: Args) -> dict[str, Any]:
    """Run (or resume) one training run; return a summary dict.

    Holds ``<out>/train.lock`` throughout (released on return, on errors and on Ctrl-C);
    raises :class:`trainers.run_lock.RunLockedError` when another run holds it. Under torchrun
    every process calls this (:mod:`trainers.detector.distributed`); rank 0 alone takes the lock.
    """
    cfg = make_config(args.game, args.preset, **args.config_overrides())  # type: ignore[arg-type]
    out_dir = Path(args.out)
    dist = distributed.setup(args.device, args.nproc)
    try:
        if not dist.is_main:
            with ExitStack() as cleanup:
                return _train_locked(args, cfg, out_dir, cleanup, dist)
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            with RunLock(out_dir), ExitStack() as cleanup:
                return _train_locked(args, cfg, out_dir, cleanup, dist)
        finally:
            # A run that failed before writing anything leaves no empty folder behind.
            if created and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
    finally:
        dist.close(clean=sys.exc_info()[0] is None)


def _train_locked(
    args: Args, cfg: TrainConfig, out_dir: Path, cleanup: ExitStack, dist: distributed.Dist
) -> dict[str, Any]:
    """The body of :func:`train`, run while holding the output folder's lock (rank 0).

    ``cleanup`` closes what the run opens (TensorBoard writer, progress bar) however it ends.
    Every rank of a distributed run runs it; only rank 0 writes files.
    """
    from tqdm import tqdm

    if dist.is_main:
        _remove_leftovers(out_dir)
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists() and not args.resume:
        raise TrainError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = dist.device or _resolve_device(args.device)
    cuda = device.type == "cuda"

    # Seeding up front (CleanRL style); a resumed run then overwrites every state below.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    data = dist.shard(load_train_data(args.data, "train"))
    if data.frames.shape[1] != cfg.seq_len:
        raise TrainError(f"dataset stacks hold T={data.frames.shape[1]} frames, config expects {cfg.seq_len}")
    if data.motion_pres.shape[-1] != cfg.model.n_cells:
        raise TrainError(
            f"dataset motion targets have {data.motion_pres.shape[-1]} cells, model grid has {cfg.model.n_cells}"
        )

    model = SpaceModel(cfg.model).to(device).to(memory_format=torch.channels_last)
    if args.boxes_at_prior:
        start_boxes_at(model, cfg.z_scale_prior(0))
    fg_opt = torch.optim.RMSprop(model.foreground_parameters(), lr=cfg.fg_lr)
    bg_opt = torch.optim.Adam(model.background.parameters(), lr=cfg.bg_lr)
    dist.reseed(cfg.seed, gen)  # after the model: every rank starts from the same weights
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
        restore_rng(ckpt, gen, dist, cfg.seed, step)
        if dist.is_main:
            warn_if_not_exact(ckpt, ckpt_path, device)
            warn_if_other_world(ckpt, ckpt_path, dist)
    if dist.is_main:
        atomic_write_text(out_dir / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")

    forward = dist.wrap(model)
    if cuda and args.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]

    from torch.utils.tensorboard import SummaryWriter

    writer: SummaryWriter | None = None
    if dist.is_main:
        # On resume, events that a killed run logged after its last checkpoint are hidden
        # (purge_step), so the curves show one history rather than two overlapping ones.
        writer = SummaryWriter(str(out_dir / "tb"), purge_step=step if args.resume else None)
        cleanup.callback(writer.close)
        writer.add_text("config", "```\n" + json.dumps(cfg.to_dict(), indent=2) + "\n```", step)

    def checkpoint() -> None:
        rngs = dist.gather(rng_state(gen))  # collectives: every rank calls checkpoint()
        extra: dict[str, Any] = {}
        if dist.active:
            extra = {"world_size": dist.world_size, "rank_rng": rngs[1:], "rank_params": dist.in_sync(model)}
        if not dist.is_main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "fg_opt": fg_opt.state_dict(),
                "bg_opt": bg_opt.state_dict(),
                "step": step,
                "sched": sched,
                "rng": rngs[0],
                "config": cfg.to_dict(),
                "data": str(args.data),
                "threads": torch.get_num_threads(),
                "device": device.type,
                **extra,
            },
        )

    stop = min(cfg.steps, args.until_step) if args.until_step is not None else cfg.steps
    t_start = time.time()
    last: dict[str, float] = {}
    bar = tqdm(total=stop, initial=step, desc=f"{cfg.game} {cfg.preset}", disable=not (args.progress and dist.is_main), dynamic_ncols=True)
    cleanup.callback(bar.close)
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
        finite = bool(torch.isfinite(loss))
        if not dist.all_true(finite):  # every rank stops, none waits for the others
            what = "non-finite on another rank" if finite else loss.item()
            raise TrainError(f"loss became {what} at step {step}{dist.where}; lower the learning rates")
        fg_norm, bg_norm = optimizer_step(model, fg_opt, bg_opt, loss, cfg.clip)
        v = dist.mean(cfg.dynamic_scale * motion_distance(out, m_pres, m_where))
        sched["v_ema"] = v if sched["v_ema"] is None else 0.9 * sched["v_ema"] + 0.1 * v
        step += 1
        bar.update(1)

        if writer is not None and (step % cfg.log_every == 0 or step == stop):
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
            frames = cfg.frames_per_step * dist.world_size  # every rank's batch
            writer.add_scalar("charts/frames_per_sec", frames / max(time.time() - t0, 1e-9), step)
            last = {k: float(val.detach()) for k, val in terms.items()} | {"total": float(loss.detach()), "lambda": lam}
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}", motion=f"{last['motion_pres']:.3g}", lam=f"{lam:.2f}")
        if writer is not None and (step % cfg.image_every == 0 or step == stop):
            writer.add_image("images/input_recon_fg_alpha_bg", _pictures(x, out), step, dataformats="HWC")
        if step % cfg.ckpt_every == 0 or step == stop:
            checkpoint()
        if args.max_minutes is not None and dist.any_true(time.time() - t_start > args.max_minutes * 60):
            checkpoint()
            break
    bar.close()
    checkpoint()
    summary: dict[str, Any] = {"step": step, "steps": cfg.steps, "last": last, "minutes": (time.time() - t_start) / 60}
    if dist.active:
        summary["processes"] = dist.world_size
    if writer is None:  # ranks other than 0: rank 0 evaluates and reports
        return summary | {"rank": dist.rank}
    if (step >= cfg.steps or args.max_minutes is not None) and args.eval_split:
        from trainers.evaluate.metrics import evaluate_encoder

        result = evaluate_encoder(model.encoder, args.data, args.eval_split, str(device))
        for crit in ("ocatari", "relative"):
            for k in ("precision", "recall", "f1"):
                writer.add_scalar(f"eval/{crit}_{k}", result[crit][k], step)
        atomic_write_text(out_dir / EVAL_FILE, json.dumps(result, indent=2) + "\n")
        summary["eval"] = result
    writer.close()
    return summary


def _format_warning(
    previous: Any, message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Our warnings as one plain line on the command line; others as Python prints them."""
    if issubclass(category, TrainWarning | RunLockWarning):
        return f"warning: {message}\n"
    return previous(message, category, filename, lineno, line)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; with ``--nproc N`` (N > 1) relaunches itself under torchrun."""
    args = _parse(argv)
    if args.nproc > 1 and not distributed.under_torchrun():
        code = distributed.launch(sys.argv[1:] if argv is None else list(argv), args.nproc)
        if code != 0:
            raise TrainError(
                f"the {args.nproc} training processes stopped with exit code {code} (torchrun); "
                "the failing rank's error is printed above"
            )
        return {"processes": args.nproc, "out": args.out}
    previous = warnings.formatwarning
    warnings.formatwarning = partial(_format_warning, previous)  # type: ignore[assignment]
    try:
        summary = train(args)
    finally:
        warnings.formatwarning = previous
    if "rank" in summary:  # a rank other than 0 of a distributed run: rank 0 reports
        return summary
    print(json.dumps({k: v for k, v in summary.items() if k != "eval"}, indent=2))
    if "eval" in summary:
        e = summary["eval"]
        print(
            f"eval ({e['split']}): ocatari P={e['ocatari']['precision']:.3f} R={e['ocatari']['recall']:.3f}"
            f" | relative P={e['relative']['precision']:.3f} R={e['relative']['recall']:.3f}"
        )
    return summary


if __name__ == "__main__":
    try:
        main()
    except MocEnvsError as err:  # our own errors say what to do; a traceback adds nothing
        sys.exit(f"error: {err}")
