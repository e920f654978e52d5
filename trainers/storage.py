"""On-disk layout of a gameplay dataset and atomic file writes (no torch here).

One directory per game::

    meta.json            game, image size, grid G, T, splits (size, seed, done, stats)
    background.png       the per-pixel mode image (210x160 RGB)
    <split>.npz          frames, motion_pres, motion_where, motion_mask, rams
    <split>_gt.npz       OCAtari ground truth, one row per object
    report.json          the build report
    vis/                 pictures of motion and ground-truth boxes (--vis)
    .partial/<split>/    finished chunks of an unfinished split (resume state)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "ARRAY_KEYS",
    "GT_KEYS",
    "SPLITS",
    "META_FILE",
    "BACKGROUND_FILE",
    "REPORT_FILE",
    "split_file",
    "gt_file",
    "partial_dir",
    "write_json_atomic",
    "save_npz_atomic",
    "read_json",
]

FORMAT_VERSION = 1
ARRAY_KEYS = ("frames", "motion_pres", "motion_where", "motion_mask", "rams")
GT_KEYS = ("stack", "t", "instance", "category", "x", "y", "w", "h", "hud", "moved")
SPLITS = ("train", "val", "test")
META_FILE = "meta.json"
BACKGROUND_FILE = "background.png"
REPORT_FILE = "report.json"


def split_file(root: Path, split: str) -> Path:
    """Path of a split's array file."""
    return Path(root) / f"{split}.npz"


def gt_file(root: Path, split: str) -> Path:
    """Path of a split's ground-truth table."""
    return Path(root) / f"{split}_gt.npz"


def partial_dir(root: Path, split: str) -> Path:
    """Directory holding the finished chunks of an unfinished split."""
    return Path(root) / ".partial" / split


def _tmp_in(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; datasets are shared read-only data
    return fd, tmp


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and ``os.replace``."""
    fd, tmp = _tmp_in(Path(path))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz_atomic(path: Path, compress: bool = True, **arrays: np.ndarray) -> None:
    """Save ``arrays`` to ``path`` (.npz) via a temporary file and ``os.replace``."""
    fd, tmp = _tmp_in(Path(path))
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with open(path) as f:
        return json.load(f)
