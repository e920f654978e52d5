"""Train a SPACE+MOC detector on a gameplay dataset (CleanRL-style, read top to bottom).

    python -m trainers.detector.train --game Pong --data data/Pong --out runs/pong [--preset cpu|gpu]
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
warns that the result will not be bit-identical to an uninterrupted run.

``--nproc N`` (or ``torchrun --nproc_per_node N -m trainers.detector.train ...``) trains with N
DistributedDataParallel processes, each on its own shard of the dataset, ``--batch-stacks``
stacks per process; see :mod:`trainers.detector.distributed` for the batch, the learning rates and
resuming with another N.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moc_envs.errors import CorruptWeightsError, MocEnvsError
from moc_envs.games import game_names
from moc_envs.model import SpaceModel
from moc_envs.model.geometry import where_to_boxes
from moc_envs.weights.atomic import (
    atomic_path,
    atomic_write_text,
    remove_stale_temporaries,
    temporary_owner,
)
from moc_envs.weights.safe_read import torch_load_error_text
from trainers.detector import distributed
from trainers.detector.config import (
    PRESETS,
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
    "train",
    "main",
]

CHECKPOINT = "checkpoint.pt"
EVAL_FILE = "eval.json"
CONFIG_FILE = "config.json"
_DIGEST_PREFIX = "sha256:"
_START_OVER = (
    "resume from an earlier copy of the checkpoint (put it back as {path}), or start over with "
    "a fresh --out"
)


class TrainError(MocEnvsError, ValueError):
    """A training run that cannot start or continue as asked."""


class TrainWarning(UserWarning):
    """Something about a run that deserves attention but does not stop it."""


@dataclass
class Args:
    """Command-line arguments of a training run."""

    game: str = field(metadata={"help": "game name, e.g. Pong"})
    data: str = field(metadata={"help": "dataset directory built by trainers.data.dataset"})
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
        metadata={"help": "pre-sigmoid mean of the z_scale prior, 'START' or 'START,END'"},
    )
    resume: bool = field(default=False, metadata={"help": "continue from <out>/checkpoint.pt"})
    until_step: int | None = field(default=None, metadata={"help": "stop (and checkpoint) at this step, before the end of the schedule"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop (and checkpoint) after this much wall time"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:N]"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (a resumed run should keep the count to stay bit-exact)"})
    eval_split: str = field(default="test", metadata={"help": "split scored at the end ('' to skip)"})
    compile: bool = field(default=True, metadata={"help": "torch.compile the model on CUDA"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    nproc: int = field(default=1, metadata={"help": "data-parallel processes (>1: relaunched under torchrun, DDP; --batch-stacks is per process)"})

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


def _none_defaults() -> dict[str, str]:
    """What each option whose dataclass default is None falls back to, for ``--help``."""
    presets = {p: make_config("Pong", p) for p in PRESETS}  # these fields do not depend on the game

    def per_preset(name: str) -> str:
        values = {p: getattr(cfg, name) for p, cfg in presets.items()}
        if len(set(values.values())) == 1:
            return str(next(iter(values.values())))
        return "the preset's: " + ", ".join(f"{p} {v}" for p, v in values.items())

    by_value: dict[str, list[str]] = {}
    for game in game_names():
        z = make_config(game, "gpu").z_scale_prior
        text = f"{z.start_value}" if z.start_value == z.end_value else f"{z.start_value},{z.end_value}"
        by_value.setdefault(text, []).append(game)
    common = max(by_value, key=lambda v: len(by_value[v]))
    scale = "; ".join(f"{v} for {', '.join(g)}" for v, g in by_value.items() if v != common)
    out = {n: per_preset(n) for n in ("steps", "batch_stacks", "fg_lr", "bg_lr", "ablation", "lambda_schedule", "seed")}
    return out | {
        "z_scale_mean": f"the game's: {scale}; {common} for the others",
        "until_step": "the end of the schedule",
        "max_minutes": "no limit",
        "threads": f"torch's choice, {torch.get_num_threads()} here",
    }


def _parse(argv: Sequence[str] | None) -> Args:
    p = argparse.ArgumentParser(
        prog="python -m trainers.detector.train",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fallbacks = _none_defaults()
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        if f.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
            continue
        kind = {"int": int, "int | None": int, "float | None": float}.get(str(f.type), str)
        required = f.default is dataclasses.MISSING
        # SUPPRESS: the option is left out of the namespace (the dataclass default applies) and
        # --help shows no "(default: None)"; the help text says what None stands for instead.
        default = argparse.SUPPRESS if required or f.default is None else f.default
        if f.default is None:
            help_ = f"{help_} (default: {fallbacks[f.name]})"
        p.add_argument(flag, type=kind, required=required, default=default, help=help_)
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.preset not in PRESETS:
        p.error(f"--preset must be one of {', '.join(PRESETS)}, got {args.preset!r}")
    if args.nproc < 1:
        p.error(f"--nproc must be >= 1, got {args.nproc}")
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


def _feed(h: Any, obj: Any) -> None:
    """Hash ``obj`` into ``h`` unambiguously: every value tagged with its type and size."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        # Keys are str (state dicts, config) or int (optimiser state); sort for a stable order.
        for k in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, list | tuple):
        # Lists and tuples alike: only the values matter, not how pickling kept the container.
        h.update(f"L{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, bool | int | float | str):
        r = repr(obj)  # exact: a float's repr round-trips
        h.update(f"{type(obj).__name__}{len(r)}:{r}".encode())
    else:
        raise TypeError(f"cannot digest a {type(obj).__name__} in a checkpoint")


def checkpoint_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's contents (every tensor's bytes, every other value), its
    ``digest`` entry left out; ``'sha256:<hex>'``."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return _DIGEST_PREFIX + h.hexdigest()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a temporary file, then os.replace), with its digest."""
    payload = {**payload, "digest": checkpoint_digest(payload)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, expect: TrainConfig | None = None) -> dict[str, Any]:
    """Read a checkpoint (weights-only unpickling), verify its digest, check it against ``expect``.

    Raises CorruptWeightsError for an unreadable, incomplete or corrupted file (its contents
    no longer match the digest stored at save time), TrainError when it was written for another
    game or another configuration. A checkpoint from before digests existed loads with a
    :class:`TrainWarning`.
    """
    if not path.is_file():
        raise TrainError(f"no checkpoint to resume from: {path} does not exist")
    advice = _START_OVER.format(path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated / foreign files
        # Without torch's advice to retry with weights_only=False, which would run the file's code.
        raise CorruptWeightsError(
            f"checkpoint {path} is corrupt or not a training checkpoint: {torch_load_error_text(err)}; {advice}"
        ) from err
    keys = {"model", "fg_opt", "bg_opt", "step", "config", "rng", "sched"}
    if not isinstance(ckpt, dict) or not keys <= set(ckpt):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CorruptWeightsError(f"checkpoint {path} lacks {sorted(keys)}; found {found}; {advice}")
    stored = ckpt.get("digest")
    if stored is None:
        warnings.warn(
            f"checkpoint {path} has no digest (written by an earlier version of trainers.detector.train): "
            "loaded without an integrity check; checkpoints written from now on carry one",
            TrainWarning,
            stacklevel=2,
        )
    else:
        try:
            actual = checkpoint_digest(ckpt)
        except TypeError as err:
            raise CorruptWeightsError(f"checkpoint {path} holds unexpected contents ({err}); {advice}") from err
        if not isinstance(stored, str) or not stored.startswith(_DIGEST_PREFIX):
            raise CorruptWeightsError(
                f"checkpoint {path} is corrupted (unreadable digest {stored!r}, expected "
                f"'{_DIGEST_PREFIX}<hex>'); {advice}"
            )
        if stored != actual:
            raise CorruptWeightsError(
                f"checkpoint {path} is corrupted (digest mismatch): its contents hash to "
                f"{actual[:23]}..., not the {stored[:23]}... stored when it was written, so some "
                f"of its bytes changed since (disk, copy or edit). Do not train on it: {advice}"
            )
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


def _warn_if_not_exact(ckpt: dict[str, Any], path: Path, device: torch.device) -> None:
    """Warn when a resume runs on other thread counts or devices than the checkpoint's run."""
    saved, now = ckpt.get("threads"), torch.get_num_threads()
    if saved is not None and saved != now:
        warnings.warn(
            f"resuming {path} with {now} torch threads, but it was written with {saved}: CPU "
            "kernels split their sums across threads, so floating-point rounding changes with "
            "the thread count and the result will not be bit-identical to an uninterrupted run. "
            f"Pass --threads {saved} to keep it exact",
            TrainWarning,
            stacklevel=3,
        )
    saved_device = ckpt.get("device")
    if saved_device is not None and saved_device != device.type:
        warnings.warn(
            f"resuming {path} on {device.type}, but it was written on {saved_device}: the two "
            "compute with different kernels (and CUDA in bfloat16), so the result will not be "
            f"bit-identical to an uninterrupted run. Pass --device {saved_device} to keep it exact",
            TrainWarning,
            stacklevel=3,
        )


def _restore_rng(
    ckpt: dict[str, Any], gen: torch.Generator, dist: distributed.Dist, seed: int, step: int
) -> None:
    """This rank's random streams from a checkpoint.

    Rank 0 (and a single process) takes the saved ones; another rank takes its own saved
    streams when the checkpoint was written by as many processes, else fresh ones seeded from
    (seed, rank, step).
    """
    if dist.is_main:
        _set_rng_state(ckpt["rng"], gen)
        return
    saved = ckpt.get("rank_rng", [])
    if ckpt.get("world_size", 1) == dist.world_size and len(saved) == dist.world_size - 1:
        _set_rng_state(saved[dist.rank - 1], gen)
    else:
        dist.reseed(seed, gen, step)


def _warn_if_other_world(ckpt: dict[str, Any], path: Path, dist: distributed.Dist) -> None:
    """Warn when a run resumes with another number of processes than wrote its checkpoint."""
    saved = int(ckpt.get("world_size", 1))
    if saved != dist.world_size:
        warnings.warn(
            f"resuming {path} with {dist.world_size} process(es), but it was written by {saved}: "
            "the model, optimisers, step and schedules continue, but the dataset is cut into "
            "other shards and the batch per step changes, so the result will differ from an "
            "uninterrupted run",
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
        dist.close()


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
        _restore_rng(ckpt, gen, dist, cfg.seed, step)
        if dist.is_main:
            _warn_if_not_exact(ckpt, ckpt_path, device)
            _warn_if_other_world(ckpt, ckpt_path, dist)
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
        rngs = dist.gather(_rng_state(gen))  # collectives: every rank calls checkpoint()
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
