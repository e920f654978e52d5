"""Distil a trained SPACE+MOC detector into the lean image encoder (read top to bottom).

    moc-envs distill --game Pong --teacher weights/Pong --data data/Pong --out runs/pong_lean
        [--epochs 12] [--threads 1] [--resume] [--export-to weights/Pong]

The teacher is an exported detector folder (``weights/<Game>``, verified against its manifest).
Its image encoder's posteriors (z_pres, and the means of z_scale and z_shift) on every frame of
the dataset's train and val splits are computed once and cached under ``<out>/targets_*.npz``;
the student, :class:`moc_envs.model.lean.LeanImageEncoder`, learns to reproduce them:

- z_pres: binary cross-entropy against the teacher's probability, cells the teacher thinks
  present weighted up (a frame has 2-10 objects among 256 cells);
- z_where: smooth L1 between the student's and the teacher's boxes (model pixels), weighted by
  the teacher's z_pres probability.

With ``--calibrate-threshold`` the student's z_pres threshold is then chosen on the val split
(the one whose decisions agree best with the teacher's at 0.5) and written into config.json as
``pres_threshold``; otherwise it is 0.5, as the teacher's.

Then (``--glimpse-epochs``, 0 to skip) the glimpse encoder: a lean one
(:class:`moc_envs.model.lean.LeanGlimpseEncoder`) learns the teacher's z_what from the glimpses
that the student's own boxes crop, so that the teacher's z_what classifier stays valid on it
(its agreement with the teacher's categories on the val split is reported). Logs go to TensorBoard under ``<out>/tb`` (``loss/``,
``charts/``: cell-level agreement with the teacher on the val split); ``<out>/checkpoint.pt``
is written atomically after every epoch and ``--resume`` continues from it. At the end the
student is exported to ``<out>/weights/<Game>`` (``--export-to`` elsewhere) with the teacher's
settings (``max_box``, ``refine_boxes``) and classifier, and a manifest.
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
import torch.nn.functional as F

from moc_envs.errors import CorruptWeightsError
from moc_envs.games import get_game
from moc_envs.model.encoder import SpaceEncoder
from moc_envs.model.geometry import latents_to_where
from moc_envs.weights.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from moc_envs.weights.safe_read import torch_load_error_text
from trainers.detector.checkpoint import TrainError, checkpoint_digest
from trainers.run_lock import RunLock

__all__ = ["Args", "DISTILL_CHECKPOINT", "teacher_targets", "distill", "main"]

DISTILL_CHECKPOINT = "checkpoint.pt"
TARGET_CHANNELS = (0, 3, 4, 7, 8)
"""Raw head channels the student learns: z_pres, z_scale mean (2), z_shift mean (2)."""
PRESENT_WEIGHT = 20.0
"""Weight of the z_pres loss on cells the teacher thinks present (they are rare)."""


@dataclass
class Args:
    """Command-line arguments of a distillation run."""

    game: str = field(metadata={"help": "game name, e.g. Pong"})
    teacher: str = field(metadata={"help": "exported teacher detector folder, e.g. weights/Pong"})
    data: str = field(metadata={"help": "dataset directory built by trainers.data.dataset"})
    out: str = field(metadata={"help": "run directory (targets cache, checkpoint, TensorBoard, export)"})
    epochs: int = field(default=12, metadata={"help": "passes over the train split's frames"})
    batch: int = field(default=64, metadata={"help": "frames per optimisation step"})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate (cosine-annealed to 0.05 x lr)"})
    present_above: float = field(default=0.1, metadata={"help": "cells whose teacher z_pres probability exceeds this get the z_pres loss weighted up"})
    calibrate_threshold: bool = field(default=False, metadata={"help": "choose the student's z_pres threshold on the val split (else 0.5)"})
    glimpse_epochs: int = field(default=30, metadata={"help": "epochs of the lean glimpse encoder's distillation (0: keep the teacher's)"})
    glimpse_pairs: int = field(
        default=65536,
        metadata={"help": "at most this many teacher glimpses (from train frames in a seeded random order) teach the lean glimpse encoder"},
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (1 cannot oversubscribe a shared machine)"})
    resume: bool = field(default=False, metadata={"help": "continue from <out>/checkpoint.pt"})
    export_to: str | None = field(default=None, metadata={"help": "export folder (None: <out>/weights/<Game>)"})
    max_minutes: float | None = field(
        default=None,
        metadata={
            "help": "wall-time limit of the run: the image encoder stops before an epoch that would end later than "
            "this less --glimpse-minutes, the glimpse encoder before one past the limit (each runs one epoch at least; "
            "None: no limit)"
        },
    )
    glimpse_minutes: float = field(default=0.0, metadata={"help": "of --max-minutes, the time kept for the glimpse encoder"})


def _parse(argv: Sequence[str] | None) -> Args:
    p = argparse.ArgumentParser(
        prog="moc-envs distill",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
        elif f.default is dataclasses.MISSING:
            p.add_argument(flag, required=True, help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float, "float | None": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    args = Args(**vars(p.parse_args(argv)))
    if args.epochs < 1 or args.batch < 1 or args.threads < 1 or args.glimpse_epochs < 0 or args.glimpse_pairs < 1:
        p.error(
            f"--epochs, --batch and --threads must be >= 1 and --glimpse-epochs >= 0, got {args.epochs}, "
            f"{args.batch}, {args.threads}, {args.glimpse_epochs}"
        )
    if (args.max_minutes is not None and not args.max_minutes >= 0) or not 0 <= args.glimpse_minutes < math.inf:
        p.error(f"--max-minutes and --glimpse-minutes must be >= 0, got {args.max_minutes} and {args.glimpse_minutes}")
    return args


def _frames(data: str | Path, split: str) -> np.ndarray:
    """All frames of a split as one (F, 128, 128, 3) uint8 array."""
    from trainers.data.reader import load_split

    frames = load_split(data, split).frames
    return frames.reshape(-1, *frames.shape[2:])


def _to_input(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)


def teacher_targets(teacher: SpaceEncoder, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    """The teacher's raw head channels :data:`TARGET_CHANNELS` per cell: (F, G*G, 5) float32."""
    from tqdm import tqdm

    out = np.empty((len(frames), teacher.cfg.n_cells, len(TARGET_CHANNELS)), np.float32)
    with torch.inference_mode():
        for i in tqdm(range(0, len(frames), batch), desc="teacher posteriors", unit="batch", disable=None):
            raw = teacher.image_encoder.raw(_to_input(frames[i : i + batch]))
            out[i : i + batch] = raw.flatten(2).transpose(1, 2)[..., list(TARGET_CHANNELS)].numpy()
    return out


def _cached_targets(out_dir: Path, split: str, teacher: SpaceEncoder, teacher_id: str, frames: np.ndarray) -> np.ndarray:
    """Teacher targets of a split, from ``<out>/targets_<split>.npz`` when it was made by this teacher."""
    path = out_dir / f"targets_{split}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["teacher"]) == teacher_id and z["targets"].shape[0] == len(frames):
                    return z["targets"]
        except (OSError, ValueError, KeyError):
            pass  # damaged or foreign cache: recompute below
    targets = teacher_targets(teacher, frames)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, targets=targets, teacher=np.array(teacher_id))
    return targets


def _boxes(scale: torch.Tensor, shift: torch.Tensor, grid: int, size: int) -> torch.Tensor:
    """Boxes (..., 4) in model pixels from the pre-squash z_scale / z_shift means."""
    return latents_to_where(scale, shift, grid) * size


def _losses(
    student_raw: torch.Tensor, target: torch.Tensor, student: SpaceEncoder, present_above: float = 0.1
) -> dict[str, torch.Tensor]:
    """z_pres and z_where distillation losses of one batch (raw (B, 11, G, G), target (B, N, 5)).

    Cells whose teacher probability exceeds ``present_above`` weigh :data:`PRESENT_WEIGHT` times
    more in the z_pres loss.
    """
    cfg = student.cfg
    raw = student_raw.flatten(2).transpose(1, 2)  # (B, N, 11)
    logit_s = cfg.pres_squash * torch.tanh(raw[..., 0])
    p_t = torch.sigmoid(cfg.pres_squash * torch.tanh(target[..., 0]))
    weight = 1.0 + (PRESENT_WEIGHT - 1.0) * (p_t > present_above).float()
    pres = (F.binary_cross_entropy_with_logits(logit_s, p_t, reduction="none") * weight).mean()
    box_s = _boxes(raw[..., 3:5], raw[..., 7:9], cfg.grid, cfg.img_size)
    box_t = _boxes(target[..., 1:3], target[..., 3:5], cfg.grid, cfg.img_size)
    err = F.smooth_l1_loss(box_s, box_t, reduction="none").sum(-1)
    where = (err * p_t).sum() / p_t.sum().clamp_min(1.0)
    return {"pres": pres, "where": where, "total": pres + 0.1 * where}


THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.5, 0.96, 0.05))
"""z_pres thresholds :func:`calibrate_threshold` chooses from."""


@torch.inference_mode()
def calibrate_threshold(student: SpaceEncoder, frames: np.ndarray, targets: np.ndarray, batch: int = 128) -> float:
    """The student's z_pres threshold (of :data:`THRESHOLDS`) whose decisions best agree (F1) with
    the teacher's at 0.5 on these frames.

    The distillation loss weights present cells up, so the student errs towards presence; a
    threshold chosen on the val split trades that back without labels.
    """
    cfg = student.cfg
    probs, truth = [], []
    for i in range(0, len(frames), batch):
        raw = student.image_encoder.raw(_to_input(frames[i : i + batch])).flatten(2).transpose(1, 2)
        probs.append(torch.sigmoid(cfg.pres_squash * torch.tanh(raw[..., 0])).numpy())
        t = torch.from_numpy(targets[i : i + batch])
        truth.append((torch.sigmoid(cfg.pres_squash * torch.tanh(t[..., 0])) > 0.5).numpy())
    p, y = np.concatenate(probs).ravel(), np.concatenate(truth).ravel()

    def f1(t: float) -> float:
        pred = p > t
        tp = int((pred & y).sum())
        return 2 * tp / max(int(pred.sum()) + int(y.sum()), 1)

    return max(THRESHOLDS, key=f1)


@torch.inference_mode()
def agreement(
    student: SpaceEncoder, frames: np.ndarray, targets: np.ndarray, batch: int = 128, threshold: float = 0.5
) -> dict[str, float]:
    """Cell-level agreement with the teacher: F1 of the student's z_pres > ``threshold`` against the
    teacher's > 0.5, box error (model px) where both see one."""
    cfg = student.cfg
    tp = fp = fn = 0
    errors: list[np.ndarray] = []
    for i in range(0, len(frames), batch):
        raw = student.image_encoder.raw(_to_input(frames[i : i + batch])).flatten(2).transpose(1, 2)
        t = torch.from_numpy(targets[i : i + batch])
        ps = torch.sigmoid(cfg.pres_squash * torch.tanh(raw[..., 0])) > threshold
        pt = torch.sigmoid(cfg.pres_squash * torch.tanh(t[..., 0])) > 0.5
        tp += int((ps & pt).sum())
        fp += int((ps & ~pt).sum())
        fn += int((~ps & pt).sum())
        both = ps & pt
        if both.any():
            bs = _boxes(raw[..., 3:5], raw[..., 7:9], cfg.grid, cfg.img_size)[both]
            bt = _boxes(t[..., 1:3], t[..., 3:5], cfg.grid, cfg.img_size)[both]
            errors.append((bs - bt).abs().max(-1).values.numpy())
    err = np.concatenate(errors) if errors else np.zeros(0)
    return {
        "pres_f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "pres_precision": tp / max(tp + fp, 1),
        "pres_recall": tp / max(tp + fn, 1),
        "box_err_px_mean": float(err.mean()) if err.size else float("nan"),
        "box_err_px_p99": float(np.quantile(err, 0.99)) if err.size else float("nan"),
    }


def _load_teacher(args: Args) -> tuple[Any, str]:
    """The teacher detector (verified folder) and an id of its exact weights."""
    from moc_envs.perception.space_detector import WEIGHTS_FILE, SpaceDetector
    from moc_envs.weights.manifest import read_manifest

    spec = get_game(args.game)
    det = SpaceDetector.from_pretrained(Path(args.teacher), spec, allow_unclassified=True)
    if det.config.image_encoder != "space":
        raise TrainError(f"{args.teacher} already holds a {det.config.image_encoder!r} image encoder; distil from a 'space' one")
    _, files = read_manifest(Path(args.teacher))
    return det, files[WEIGHTS_FILE].sha256


def _student_of(teacher: SpaceEncoder) -> SpaceEncoder:
    """A student with the lean image encoder and the teacher's (frozen) glimpse encoder."""
    cfg = dataclasses.replace(teacher.cfg, image_encoder="lean")
    student = SpaceEncoder(cfg)
    student.glimpse_encoder.load_state_dict(teacher.glimpse_encoder.state_dict())
    student.glimpse_encoder.requires_grad_(False)
    return student


def _with_lean_glimpses(student: SpaceEncoder) -> SpaceEncoder:
    """The same student with a fresh lean glimpse encoder in place of the teacher's."""
    lean = SpaceEncoder(dataclasses.replace(student.cfg, glimpse_encoder="lean"))
    lean.image_encoder.load_state_dict(student.image_encoder.state_dict())
    lean.image_encoder.requires_grad_(False)
    return lean


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated / foreign files
        # Without torch's advice to retry with weights_only=False, which would run the file's code.
        raise CorruptWeightsError(
            f"checkpoint {path} is corrupt or not a distillation checkpoint: {torch_load_error_text(err)}"
        ) from err
    if not isinstance(ckpt, dict) or not {"student", "opt", "epoch", "args", "rng", "digest"} <= set(ckpt):
        raise CorruptWeightsError(f"checkpoint {path} is not a distillation checkpoint")
    stored = ckpt.pop("digest")
    if checkpoint_digest(ckpt) != stored:
        raise CorruptWeightsError(
            f"checkpoint {path} is corrupted (digest mismatch): its contents changed after it was "
            "written; start over with a fresh --out"
        )
    return ckpt


@torch.inference_mode()
def glimpse_pairs(
    teacher: SpaceEncoder,
    student: SpaceEncoder,
    frames: np.ndarray,
    batch: int = 64,
    order: np.ndarray | None = None,
    max_pairs: int | None = None,
) -> dict[str, np.ndarray]:
    """What the lean glimpse encoder learns from, for every cell the teacher thinks present.

    Frames are read in ``order`` (indices; default: as stored) and the first ``max_pairs``
    glimpses kept: a game of 50 objects a frame (SpaceInvaders) would otherwise give 800k glimpses
    and a glimpse stage sixteen times as long as a game of three.

    ``inputs``: the glimpse the *student's* box crops (as at inference), float16 (M, 3, g, g);
    ``z_what`` / ``z_std``: the teacher's posterior on its own box's glimpse (M, D);
    ``boxes``: the teacher's box (x, y, w, h) in frame pixels (M, 4), and ``frame``: its index into
    ``frames`` (M,), for classifiers that read box sizes or object colours.
    """
    from moc_envs.model.geometry import crop_glimpses, where_to_boxes

    cfg = teacher.cfg
    parts: dict[str, list[np.ndarray]] = {"inputs": [], "z_what": [], "z_std": [], "boxes": [], "frame": []}
    order = np.arange(len(frames)) if order is None else np.asarray(order)
    collected = 0
    for i in range(0, len(order), batch):
        if max_pairs is not None and collected >= max_pairs:
            break
        rows = np.sort(order[i : i + batch])
        x = _to_input(frames[rows])
        raw_t = teacher.image_encoder.raw(x).flatten(2).transpose(1, 2)
        raw_s = student.image_encoder.raw(x).flatten(2).transpose(1, 2)
        present = torch.sigmoid(cfg.pres_squash * torch.tanh(raw_t[..., 0])) > 0.5
        b, c = torch.nonzero(present, as_tuple=True)
        if not len(b):
            continue
        where_t = latents_to_where(raw_t[..., 3:5], raw_t[..., 7:9], cfg.grid)[b, c]
        where_s = latents_to_where(raw_s[..., 3:5], raw_s[..., 7:9], cfg.grid)[b, c]
        z, z_std = teacher.glimpse_encoder(crop_glimpses(x[b], where_t, cfg.glimpse))
        parts["inputs"].append(crop_glimpses(x[b], where_s, cfg.glimpse).half().numpy())
        parts["z_what"].append(z.numpy())
        parts["z_std"].append(z_std.numpy())
        parts["boxes"].append(where_to_boxes(where_t).numpy())
        parts["frame"].append(rows[b.numpy()])
        collected += len(b)
    if not parts["inputs"]:
        raise TrainError("the teacher finds no object in this split; nothing to distil the glimpse encoder from")
    return {k: np.concatenate(v)[:max_pairs] for k, v in parts.items()}


def train_glimpse_encoder(
    student: SpaceEncoder,
    train: dict[str, np.ndarray],
    epochs: int,
    seed: int,
    batch: int = 256,
    lr: float = 2e-3,
    deadline: float | None = None,
) -> int:
    """Fit ``student.glimpse_encoder`` (lean) to the teacher's z_what: MSE on dimensions standardised
    by the teacher's spread, and on log std (so that the head stays a posterior).

    ``deadline``: a ``time.perf_counter()`` time; no epoch starts that would end after it (the
    first always runs). Returns the epochs run.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.from_numpy(train["inputs"])
    z = torch.from_numpy(train["z_what"])
    log_std = torch.from_numpy(train["z_std"]).log()
    spread = z.std(0).clamp_min(1e-3)
    enc = student.glimpse_encoder
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    steps = epochs * math.ceil(len(z) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    enc.train()
    start, done = time.perf_counter(), 0
    for _ in range(epochs):
        if done and deadline is not None and time.perf_counter() + (time.perf_counter() - start) / done > deadline:
            break
        order = torch.randperm(len(z), generator=gen)
        for k in range(0, len(z), batch):
            idx = order[k : k + batch]
            mean, std = enc(inputs[idx].float())
            loss = (((mean - z[idx]) / spread) ** 2).mean() + 0.1 * ((std.log() - log_std[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        done += 1
    enc.eval()
    return done


def _val_colours(data: str | Path, pairs: dict[str, np.ndarray]) -> np.ndarray:
    """The object colours of the val pairs' teacher boxes, from the val split's full-size frames."""
    from moc_envs.perception.postprocess import refine_and_colour
    from trainers.data.raw_frames import has_raw_frames, load_raw_frames

    if not has_raw_frames(data, "val"):
        raise TrainError(
            f"the teacher's classifier reads object colours, which come from the full-size frames of the val "
            f"split of {data}; recover them with: moc-envs raw-frames --data {data} --split val"
        )
    raw = load_raw_frames(data, "val")
    return refine_and_colour(raw.reshape(-1, *raw.shape[2:]), pairs["boxes"], pairs["frame"])[1]


@torch.inference_mode()
def glimpse_agreement(
    student: SpaceEncoder, pairs: dict[str, np.ndarray], classifier: Any | None, colours: np.ndarray | None = None
) -> dict[str, float]:
    """How close the lean glimpse encoder's z_what is to the teacher's, and how often the teacher's
    classifier names the same category for both (``colours``: the boxes' object colours (M, 3),
    for a classifier that reads them)."""
    mean, _ = student.glimpse_encoder(torch.from_numpy(pairs["inputs"]).float())
    z_s, z_t = mean.numpy(), pairs["z_what"]
    out = {"z_what_r2": float(1.0 - ((z_s - z_t) ** 2).sum() / ((z_t - z_t.mean(0)) ** 2).sum())}
    if classifier is not None:
        sizes = pairs["boxes"][:, 2:4]
        same = np.asarray(classifier.predict(z_s, sizes, colours)) == np.asarray(classifier.predict(z_t, sizes, colours))
        out["category_agreement"] = float(same.mean())
    return out


def export_student(student: SpaceEncoder, teacher_dir: Path, out: Path, game: str, info: dict[str, Any]) -> Path:
    """Write the student as a detector folder: weights, config (teacher's settings), the teacher's
    classifier and background image."""
    from moc_envs.perception.classifier import CLASSIFIER_FILE, CLASSIFIER_JSON
    from moc_envs.perception.distractors import BACKGROUND_FILE
    from moc_envs.perception.space_detector import CONFIG_FILE
    from moc_envs.weights.manifest import verify_folder
    from trainers.evaluate.export import write_detector_folder

    source = verify_folder(teacher_dir, game)
    teacher_meta = source.read_json(CONFIG_FILE)
    meta = {k: v for k, v in teacher_meta.items() if k not in ("eval",)}
    meta["model"] = student.cfg.to_dict()
    meta["distillation"] = info
    threshold = (info.get("val_agreement") or {}).get("pres_threshold", 0.5)
    if threshold != 0.5:
        meta["pres_threshold"] = threshold
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, bytes] = {}
    for name in (CLASSIFIER_FILE, CLASSIFIER_JSON, BACKGROUND_FILE):
        if source.listed(name):
            extra[name] = source.read_bytes(name)
    state = {k: v.detach().float().contiguous() for k, v in student.state_dict().items()}
    return write_detector_folder(out, game, state, meta, extra)


def distill(args: Args) -> dict[str, Any]:
    """Run (or resume) one distillation; returns the final agreement and the export folder."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    spec = get_game(args.game)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    # The time limit: the image encoder's epochs end by image_end, the glimpse encoder's by the limit.
    limit = None if args.max_minutes is None else began + args.max_minutes * 60
    image_end = None if limit is None else limit - args.glimpse_minutes * 60
    stopped: list[str] = []
    with RunLock(out_dir):
        for path in remove_stale_temporaries(out_dir, (DISTILL_CHECKPOINT, "targets_train.npz", "targets_val.npz")):
            print(f"removed {path.name}, left by a run that died while writing it")
        torch.set_num_threads(args.threads)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        det, teacher_id = _load_teacher(args)
        teacher = det.encoder.float().to(memory_format=torch.contiguous_format)
        train_frames = _frames(args.data, "train")
        val_frames = _frames(args.data, "val")
        train_t = _cached_targets(out_dir, "train", teacher, teacher_id, train_frames)
        val_t = _cached_targets(out_dir, "val", teacher, teacher_id, val_frames)

        student = _student_of(teacher)
        params = [p for p in student.image_encoder.parameters()]
        opt = torch.optim.Adam(params, lr=args.lr)
        steps_per_epoch = math.ceil(len(train_frames) / args.batch)
        total = steps_per_epoch * args.epochs
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        )
        gen = torch.Generator().manual_seed(args.seed)
        epoch, seconds, glimpse_ran = 0, 0.0, 0
        ckpt_path = out_dir / DISTILL_CHECKPOINT
        if args.resume:
            ckpt = _load_checkpoint(ckpt_path)
            if ckpt["args"]["teacher_id"] != teacher_id:
                raise TrainError(f"{ckpt_path} distilled another teacher; use a fresh --out")
            if ckpt.get("glimpse_done"):
                student = _with_lean_glimpses(student)
            student.load_state_dict(ckpt["student"])
            opt.load_state_dict(ckpt["opt"])
            sched.load_state_dict(ckpt["sched"])
            gen.set_state(ckpt["rng"]["torch_gen"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            epoch, seconds = int(ckpt["epoch"]), float(ckpt["seconds"])
        elif ckpt_path.exists():
            raise TrainError(f"{ckpt_path} exists: pass --resume to continue it, or use a fresh --out")

        def save_checkpoint(glimpse_done: bool) -> None:
            # Atomic, with a digest of its contents (checked by _load_checkpoint).
            payload = {
                "student": student.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
                "seconds": seconds,
                "glimpse_done": glimpse_done,
                "glimpse_epochs_run": glimpse_ran,
                "args": {**dataclasses.asdict(args), "teacher_id": teacher_id},
                "rng": {"torch_gen": gen.get_state(), "torch": torch.get_rng_state()},
            }
            payload["digest"] = checkpoint_digest(payload)
            with atomic_path(ckpt_path) as tmp:
                torch.save(payload, tmp)

        writer = SummaryWriter(str(out_dir / "tb"))
        step = epoch * steps_per_epoch
        ran, began_epochs = 0, time.perf_counter()  # epochs of this call, for the time one takes
        while epoch < args.epochs:
            start = time.perf_counter()
            if ran and image_end is not None and start + (start - began_epochs) / ran > image_end:
                stopped.append(
                    f"distillation: time ran out after epoch {epoch} of {args.epochs} of the image encoder "
                    f"({(start - began) / 60:.1f} of its {(image_end - began) / 60:.1f} minutes)"
                )
                print(stopped[-1])
                break
            student.image_encoder.train()
            order = torch.randperm(len(train_frames), generator=gen).numpy()
            bar = tqdm(range(steps_per_epoch), desc=f"distil {spec.name} epoch {epoch + 1}/{args.epochs}", disable=None)
            for b in bar:
                idx = np.sort(order[b * args.batch : (b + 1) * args.batch])
                x = _to_input(train_frames[idx])
                losses = _losses(student.image_encoder.raw(x), torch.from_numpy(train_t[idx]), student, args.present_above)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                sched.step()
                step += 1
                if step % 20 == 0:
                    for k, v in losses.items():
                        writer.add_scalar(f"loss/{k}", v.item(), step)
                    bar.set_postfix(pres=f"{losses['pres'].item():.4f}", where=f"{losses['where'].item():.3f}")
            student.image_encoder.eval()
            seconds += time.perf_counter() - start
            epoch += 1
            ran += 1
            agree = agreement(student, val_frames, val_t)
            for k, v in agree.items():
                writer.add_scalar(f"charts/val_{k}", v, step)
            writer.add_scalar("charts/frames_per_s", len(train_frames) * epoch / max(seconds, 1e-9), step)
            print(f"epoch {epoch}: val z_pres F1 vs teacher {agree['pres_f1']:.4f}, "
                  f"box error {agree['box_err_px_mean']:.2f} px (p99 {agree['box_err_px_p99']:.2f})")  # fmt: skip
            save_checkpoint(glimpse_done=False)
        writer.close()

        threshold = calibrate_threshold(student, val_frames, val_t) if args.calibrate_threshold else 0.5
        agree = {**agreement(student, val_frames, val_t, threshold=threshold), "pres_threshold": threshold}
        print(f"z_pres threshold {threshold} (val agreement with the teacher: F1 {agree['pres_f1']:.4f})")
        glimpse_info: dict[str, Any] = {}
        if args.glimpse_epochs > 0:
            start = time.perf_counter()
            done = args.resume and bool(_load_checkpoint(ckpt_path).get("glimpse_done"))
            if done:
                glimpse_ran = int(_load_checkpoint(ckpt_path).get("glimpse_epochs_run", args.glimpse_epochs))
            else:
                print("glimpse encoder: collecting the teacher's z_what on the student's boxes")
                order = np.random.default_rng(args.seed).permutation(len(train_frames))
                train_pairs = glimpse_pairs(teacher, student, train_frames, order=order, max_pairs=args.glimpse_pairs)
                torch.manual_seed(args.seed)
                student = _with_lean_glimpses(student)
                glimpse_ran = train_glimpse_encoder(student, train_pairs, args.glimpse_epochs, args.seed, deadline=limit)
                if glimpse_ran < args.glimpse_epochs:
                    stopped.append(
                        f"distillation: time ran out after epoch {glimpse_ran} of {args.glimpse_epochs} of the glimpse "
                        f"encoder ({(time.perf_counter() - began) / 60:.1f} of {args.max_minutes:.1f} minutes)"
                    )
                    print(stopped[-1])
                save_checkpoint(glimpse_done=True)
            val_pairs = glimpse_pairs(teacher, student, val_frames)
            colours = None
            if det.classifier is not None and det.classifier.uses_colours:
                colours = _val_colours(args.data, val_pairs)
            glimpse_info = {
                "epochs": glimpse_ran,
                "epochs_planned": args.glimpse_epochs,
                "seconds": round(time.perf_counter() - start, 1),
                "val": glimpse_agreement(student, val_pairs, det.classifier, colours),
            }
            print(f"glimpse encoder: val {glimpse_info['val']}")
        info = {
            "teacher": str(args.teacher),
            "teacher_detector_sha256": teacher_id,
            "data": str(args.data),
            "epochs": epoch,
            "epochs_planned": args.epochs,
            "frames_per_epoch": len(train_frames),
            "seconds": round(seconds, 1),
            "train_frames_per_s": round(len(train_frames) * epoch / max(seconds, 1e-9), 1),
            "threads": args.threads,
            "options": {k: getattr(args, k) for k in ("batch", "lr", "seed", "present_above", "calibrate_threshold")},
            "val_agreement": agree,
            "glimpse_encoder": glimpse_info or "the teacher's",
            "stopped_by_time": stopped,
        }
        export = Path(args.export_to) if args.export_to else out_dir / "weights" / spec.name
        export_student(student, Path(args.teacher), export, spec.name, info)
        atomic_write_text(out_dir / "distill.json", json.dumps({**info, "export": str(export)}, indent=2) + "\n")
        print(f"exported the lean detector to {export}")
        return {**info, "export": str(export)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    return distill(_parse(argv))


if __name__ == "__main__":
    main()
