"""Reading a gameplay dataset built by :mod:`trainers.data.dataset` (the data contract).

* :func:`load_meta` -> the ``meta.json`` dict (game, image_size, grid, T, splits,
  seeds, policy, version, ...).
* :func:`load_split` -> :class:`SplitData`: ``frames`` uint8 (S, T, 128, 128, 3)
  RGB, ``motion_pres`` float32 (S, T, G*G) in {0, 1}, ``motion_where`` float32
  (S, T, G*G, 4) ``[sx, sy, tx, ty]`` (zeros where no motion box),
  ``motion_mask`` uint8 (S, T, 128, 128) in {0, 1}, ``rams`` uint8 (S, T, 128).
* :func:`load_ground_truth` -> :class:`GroundTruth`: one row per OCAtari object
  (``stack``, ``t``, ``instance``, ``category``, ``x, y, w, h`` in 210x160 frame
  pixels with (x, y) top-left, ``hud``, ``moved``).
* :class:`StackDataset`: a torch Dataset of stacks for training.

Training needs neither OCAtari nor the emulator: frames and motion targets only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from moc_envs.weights.atomic import atomic_path, atomic_write_text
from trainers.data.storage import (
    ARRAY_KEYS,
    DatasetError,
    DatasetFileError,
    check_split_arrays,
    check_split_name,
    read_ground_truth_arrays,
    read_meta,
    read_npz,
    read_split_arrays,
    require_finished_split,
    split_file,
)

__all__ = [
    "DatasetError",
    "DatasetFileError",
    "SplitData",
    "GroundTruth",
    "ARRAY_KEYS",
    "load_meta",
    "load_split",
    "load_ground_truth",
    "StackDataset",
]


@dataclass
class SplitData:
    """All stacks of one split (numpy arrays, loaded or memory-mapped)."""

    frames: np.ndarray
    motion_pres: np.ndarray
    motion_where: np.ndarray
    motion_mask: np.ndarray
    rams: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class GroundTruth:
    """OCAtari ground truth of one split: one row per object per frame."""

    stack: np.ndarray
    t: np.ndarray
    instance: np.ndarray
    category: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    hud: np.ndarray
    moved: np.ndarray

    def __len__(self) -> int:
        return int(self.stack.shape[0])

    def rows(self, stack: int, t: int) -> np.ndarray:
        """Row indices of the objects of frame ``t`` of stack ``stack``."""
        lo, hi = np.searchsorted(self.stack, [stack, stack + 1])
        return lo + np.flatnonzero(self.t[lo:hi] == t)

    def boxes(
        self, stack: int, t: int, include_hud: bool = False, moved_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 4) ``(x, y, w, h)`` and categories (K,) of one frame."""
        idx = self.rows(stack, t)
        keep = np.ones(len(idx), bool)
        if not include_hud:
            keep &= ~self.hud[idx]
        if moved_only:
            keep &= self.moved[idx]
        idx = idx[keep]
        xywh = np.stack([self.x[idx], self.y[idx], self.w[idx], self.h[idx]], axis=1)
        return xywh.astype(np.float32), self.category[idx]


def load_meta(root: str | Path) -> dict[str, Any]:
    """Read ``meta.json`` of a dataset directory (checked; see :func:`trainers.data.storage.read_meta`)."""
    return read_meta(root)


def load_split(root: str | Path, split: str, mmap: bool = False) -> SplitData:
    """Load one split's arrays, checked against ``meta.json``.

    The split file is compressed (a 4096-stack Pong split takes tens of MB), so
    loading decompresses it into memory. With ``mmap=True`` the arrays are
    unpacked once into ``<root>/.cache/<split>/*.npy`` and memory-mapped from
    there on (read-only), for machines short of RAM.

    Raises DatasetError for an unfinished split and DatasetFileError, naming the file and the
    rebuild command, for a missing or damaged one.
    """
    root = Path(root)
    check_split_name(split)
    meta = read_meta(root)
    if not mmap:
        return SplitData(**read_split_arrays(root, split, meta))
    require_finished_split(root, split, meta)
    path = split_file(root, split)
    cache = root / ".cache" / split
    stamp = cache / "source_mtime.txt"
    if path.is_file() and stamp.is_file() and stamp.read_text() == str(path.stat().st_mtime_ns):
        mapped = _read_cache(cache)
        if mapped is not None:
            try:
                check_split_arrays(path, mapped, meta, split, root)
                return SplitData(**mapped)
            except DatasetFileError:
                pass  # a damaged cache is rebuilt from the split file below
    if not path.is_file():
        read_split_arrays(root, split, meta)  # raises the missing-file error
    source = str(path.stat().st_mtime_ns)
    cache.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # the cache is invalid until every array is rewritten
    # One array at a time: the point of mmap is not to hold the whole split in memory.
    for k in ARRAY_KEYS:
        array = read_npz(path, (k,), root, meta["game"])[k]
        with atomic_path(cache / f"{k}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, array)
        del array
    mapped = _read_cache(cache)
    if mapped is None:
        raise DatasetError(f"the memory-mapped copy in {cache} cannot be read back; delete that folder")
    check_split_arrays(path, mapped, meta, split, root)  # the copy is the file's content
    atomic_write_text(stamp, source)
    return SplitData(**mapped)


def _read_cache(cache: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, memory-mapped read-only; None when a file is missing or unreadable."""
    try:
        return {k: np.load(cache / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in ARRAY_KEYS}
    except (OSError, ValueError, EOFError):
        return None


def load_ground_truth(root: str | Path, split: str) -> GroundTruth:
    """Load one split's OCAtari ground-truth table (rows sorted by stack, then t), checked."""
    return GroundTruth(**read_ground_truth_arrays(root, split))


class StackDataset(Dataset):
    """Stacks of T consecutive frames with their motion targets, as torch tensors.

    Items: ``frames`` uint8 (T, 128, 128, 3), ``motion_pres`` float32 (T, G*G),
    ``motion_where`` float32 (T, G*G, 4), ``motion_mask`` uint8 (T, 128, 128),
    ``index`` int64 (the stack's index in the split). Frames stay uint8 so that
    batches are cheap to move; the model scales them to [0, 1].
    """

    def __init__(self, root: str | Path, split: str = "train", mmap: bool = False) -> None:
        """Load ``split`` of the dataset at ``root`` (see :func:`load_split`)."""
        self.root = Path(root)
        self.split = split
        self.meta = load_meta(root)
        self.data = load_split(root, split, mmap=mmap)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"stack index {index} out of range for {len(self)} stacks")
        d = self.data
        return {
            "frames": torch.from_numpy(np.array(d.frames[index])),
            "motion_pres": torch.from_numpy(np.array(d.motion_pres[index])),
            "motion_where": torch.from_numpy(np.array(d.motion_where[index])),
            "motion_mask": torch.from_numpy(np.array(d.motion_mask[index])),
            "index": torch.tensor(index % len(self), dtype=torch.int64),
        }
