"""Checkpoints of a SPACE+MOC training run, and resuming from them.

``<run>/checkpoint.pt`` holds the model, both optimisers, the step, the schedule state, every
RNG state, the config, thread count and device, and a SHA-256 digest of it all; it is written
atomically (:func:`save_checkpoint`) and read with weights-only unpickling, its digest verified
(:func:`load_checkpoint`). :func:`restore_rng` and the two warnings about a resume that will not
be bit-identical (other threads or device, other number of processes) serve
:func:`trainers.detector.train.train`'s ``--resume``; :func:`load_model_from_run` gives a run's
model to the evaluation and the export.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moc_envs.errors import CorruptWeightsError, MocEnvsError
from moc_envs.model import SpaceModel
from moc_envs.weights.atomic import atomic_path
from moc_envs.weights.safe_read import torch_load_error_text
from trainers.detector import distributed
from trainers.detector.config import TrainConfig

__all__ = [
    "CHECKPOINT",
    "TrainError",
    "TrainWarning",
    "rng_state",
    "restore_rng",
    "checkpoint_digest",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_from_run",
    "warn_if_not_exact",
    "warn_if_other_world",
]

CHECKPOINT = "checkpoint.pt"
_DIGEST_PREFIX = "sha256:"
_START_OVER = (
    "resume from an earlier copy of the checkpoint (put it back as {path}), or start over with "
    "a fresh --out"
)


class TrainError(MocEnvsError, ValueError):
    """A training run that cannot start or continue as asked."""


class TrainWarning(UserWarning):
    """Something about a run that deserves attention but does not stop it."""


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every random stream of this process (Python, NumPy, torch, CUDA, the batch sampler's ``gen``)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batches": gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    """Restore the streams :func:`rng_state` saved."""
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


def warn_if_not_exact(ckpt: dict[str, Any], path: Path, device: torch.device) -> None:
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


def restore_rng(
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


def warn_if_other_world(ckpt: dict[str, Any], path: Path, dist: distributed.Dist) -> None:
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
