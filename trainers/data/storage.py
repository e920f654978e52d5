"""On-disk layout of a gameplay dataset, atomic file writes and checked reads (no torch here).

One directory per game::

    meta.json            game, image size, grid G, T, splits (size, seed, done, stats)
    background.png       the per-pixel mode image (210x160 RGB)
    <split>.npz          frames, motion_pres, motion_where, motion_mask, rams
    <split>_gt.npz       OCAtari ground truth, one row per object
    report.json          the build report
    vis/                 pictures of motion and ground-truth boxes (--vis)
    .partial/<split>/    finished chunks of an unfinished split (resume state)

Every read checks what it reads against ``meta.json`` (readable archive, every array present,
dtypes, shapes, consistent lengths) and names the damaged file and the command that rebuilds
the dataset, rather than letting a raw ``BadZipFile`` or ``KeyError`` surface in a trainer.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from moc_envs.errors import MocEnvsError
from moc_envs.weights.atomic import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "ARRAY_KEYS",
    "GT_KEYS",
    "SPLITS",
    "META_FILE",
    "BACKGROUND_FILE",
    "REPORT_FILE",
    "DatasetError",
    "DatasetFileError",
    "split_file",
    "gt_file",
    "partial_dir",
    "rebuild_command",
    "write_json_atomic",
    "save_npz_atomic",
    "save_png",
    "load_png",
    "read_json",
    "read_meta",
    "check_split_name",
    "require_finished_split",
    "read_npz",
    "check_split_arrays",
    "check_ground_truth_arrays",
    "read_split_arrays",
    "read_ground_truth_arrays",
]

FORMAT_VERSION = 1
ARRAY_KEYS = ("frames", "motion_pres", "motion_where", "motion_mask", "rams")
GT_KEYS = ("stack", "t", "instance", "category", "x", "y", "w", "h", "hud", "moved")
SPLITS = ("train", "val", "test")
META_FILE = "meta.json"
BACKGROUND_FILE = "background.png"
REPORT_FILE = "report.json"

_META_KEYS = ("game", "image_size", "grid", "T", "splits")
_RAM_BYTES = 128
# dtypes of the ground-truth columns as the builder writes them; categories are any text ("U").
_GT_DTYPES = {
    "stack": "int32", "t": "int32", "instance": "int32", "category": "U",
    "x": "float32", "y": "float32", "w": "float32", "h": "float32", "hud": "bool", "moved": "bool",
}  # fmt: skip
# What reading a damaged .npz raises, by layer: the file system, numpy's format checks,
# zipfile (truncated archive, bad CRC), zlib (damaged compressed member).
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


class DatasetError(MocEnvsError, ValueError):
    """A dataset directory that is missing, unfinished or inconsistent."""


class DatasetFileError(DatasetError):
    """A file of a finished dataset that is missing or damaged: the dataset must be rebuilt."""


def split_file(root: Path, split: str) -> Path:
    """Path of a split's array file."""
    return Path(root) / f"{split}.npz"


def gt_file(root: Path, split: str) -> Path:
    """Path of a split's ground-truth table."""
    return Path(root) / f"{split}_gt.npz"


def partial_dir(root: Path, split: str) -> Path:
    """Directory holding the finished chunks of an unfinished split."""
    return Path(root) / ".partial" / split


def rebuild_command(root: str | Path, game: str | None = None) -> str:
    """The command that rebuilds the dataset at ``root`` from scratch."""
    return f"`moc-envs dataset --game {game or '<Game>'} --out {root} --force`"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def save_npz_atomic(path: Path, compress: bool = True, **arrays: np.ndarray) -> None:
    """Save ``arrays`` to ``path`` (.npz) via a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Save an (H, W, 3) uint8 RGB image to ``path`` as PNG, atomically (the background, pictures)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(png.tobytes())


def load_png(path: Path, game: str | None = None) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image from a PNG file of the dataset; DatasetFileError when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetFileError(
            f"dataset file {path} cannot be read as a PNG image; rebuild with "
            f"{rebuild_command(path.parent, game)}"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with open(path) as f:
        return json.load(f)


def _damaged(path: Path, what: str, root: Path, game: str | None) -> DatasetFileError:
    return DatasetFileError(f"dataset file {path} {what}; rebuild with {rebuild_command(root, game)}")


def read_meta(root: str | Path, game: str | None = None) -> dict[str, Any]:
    """``meta.json`` of the dataset at ``root``, checked to hold what the readers need.

    Raises DatasetError when there is no dataset, DatasetFileError when the file is damaged;
    ``game`` names the game in the rebuild command when the file cannot tell.
    """
    root = Path(root)
    path = root / META_FILE
    if not path.is_file():
        raise DatasetError(
            f"No dataset at '{root}': {META_FILE} is missing. Build one with "
            f"`moc-envs dataset --game <Game> --out {root}`"
        )
    try:
        meta = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(path, f"cannot be read as JSON ({err})", root, game) from err
    if not isinstance(meta, dict):
        raise _damaged(path, f"holds a JSON {type(meta).__name__}, expected an object", root, game)
    game = meta["game"] if isinstance(meta.get("game"), str) else game
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise _damaged(path, f"lacks the entries {missing}", root, game)
    ints = {k: meta[k] for k in ("image_size", "grid", "T")}
    bad = {k: v for k, v in ints.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad or not isinstance(meta["splits"], dict):
        got = ", ".join(f"{k}={v!r}" for k, v in bad.items()) or f"splits={meta['splits']!r}"
        raise _damaged(path, f"holds invalid values ({got}); expected positive integers and a "
                       "'splits' object", root, game)  # fmt: skip
    return meta


def read_npz(path: Path, keys: tuple[str, ...], root: Path, game: str | None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the .npz archive ``path``, read in full (no pickles).

    Raises DatasetFileError naming the file when it is missing, not a readable .npz archive
    (truncated, overwritten, damaged members) or lacks one of ``keys``.
    """
    if not path.is_file():
        raise _damaged(path, "is missing", root, game)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise _damaged(path, "is a single .npy array, not an .npz archive", root, game)
        with z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise _damaged(path, f"lacks the arrays {missing} (it holds {sorted(z.files)})",
                               root, game)  # fmt: skip
            return {k: z[k] for k in keys}
    except DatasetFileError:
        raise
    except _READ_ERRORS as err:
        kind = type(err).__name__
        raise _damaged(path, f"cannot be read as an .npz archive (truncated or damaged: {kind}: {err})",
                       root, game) from err  # fmt: skip


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} {tuple(a.shape)}"


def check_split_arrays(
    path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any], split: str, root: Path
) -> None:
    """Check a split's arrays against ``meta``: dtypes, shapes, one length for all.

    Raises DatasetFileError naming ``path`` and what is wrong (expected vs got).
    """
    game = meta.get("game")
    lengths = {k: int(a.shape[0]) if a.ndim else None for k, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        got = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise _damaged(path, f"holds arrays of inconsistent lengths (stacks: {got})", root, game)
    n = meta["splits"].get(split, {}).get("stacks")
    S = n if isinstance(n, int) else lengths["frames"]
    T, G, size = meta["T"], meta["grid"], meta["image_size"]
    expected = {
        "frames": (np.uint8, (S, T, size, size, 3)),
        "motion_pres": (np.float32, (S, T, G * G)),
        "motion_where": (np.float32, (S, T, G * G, 4)),
        "motion_mask": (np.uint8, (S, T, size, size)),
        "rams": (np.uint8, (S, T, _RAM_BYTES)),
    }
    for key, (dtype, shape) in expected.items():
        a = arrays[key]
        if a.dtype != dtype or tuple(a.shape) != shape:
            want = f"{np.dtype(dtype)} {shape}"
            raise _damaged(path, f"has '{key}' of {_describe(a)}, expected {want} "
                           f"(from {META_FILE})", root, game)  # fmt: skip


def check_ground_truth_arrays(
    path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any], split: str, root: Path
) -> None:
    """Check a split's ground-truth table: 1-D columns of one length and kind, rows in order."""
    game = meta.get("game")
    for key, dtype in _GT_DTYPES.items():
        a = arrays[key]
        ok = a.dtype.kind == "U" if dtype == "U" else a.dtype == np.dtype(dtype)
        if a.ndim != 1 or not ok:
            want = "text" if dtype == "U" else dtype
            raise _damaged(path, f"has column '{key}' of {_describe(a)}, expected a 1-D {want} array",
                           root, game)  # fmt: skip
    lengths = {k: len(a) for k, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        got = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise _damaged(path, f"holds columns of inconsistent lengths (rows: {got})", root, game)
    stack, t = arrays["stack"], arrays["t"]
    n = meta["splits"].get(split, {}).get("stacks")
    if len(stack) and isinstance(n, int):
        if int(stack.min()) < 0 or int(stack.max()) >= n or int(t.min()) < 0 or int(t.max()) >= meta["T"]:
            raise _damaged(path, f"refers to stacks {int(stack.min())}..{int(stack.max())} and frames "
                           f"{int(t.min())}..{int(t.max())}, outside the split's {n} stacks of "
                           f"T={meta['T']}", root, game)  # fmt: skip
    if len(stack) > 1 and bool((np.diff(stack) < 0).any()):
        raise _damaged(path, "has rows that are not sorted by stack", root, game)


def check_split_name(split: str) -> None:
    """Raise DatasetError for a split name the datasets do not have."""
    if split not in SPLITS:
        raise DatasetError(f"Unknown split '{split}'; expected one of {', '.join(SPLITS)}")


def require_finished_split(root: Path, split: str, meta: dict[str, Any]) -> None:
    """Raise DatasetError unless ``split`` is a known split that ``meta`` marks as finished."""
    check_split_name(split)
    info = meta["splits"].get(split)
    if not isinstance(info, dict) or not info.get("done"):
        raise DatasetError(
            f"Split '{split}' of '{root}' is not finished; re-run the builder to complete it: "
            f"`moc-envs dataset --game {meta['game']} --out {root}`"
        )


def _read_checked(
    root: str | Path, split: str, meta: dict[str, Any] | None, file_of: Any, keys: Any, check: Any
) -> dict[str, np.ndarray]:
    """One finished split's file, read in full and checked (shared by the two readers below)."""
    root = Path(root)
    check_split_name(split)
    meta = read_meta(root) if meta is None else meta
    require_finished_split(root, split, meta)
    path = file_of(root, split)
    arrays = read_npz(path, keys, root, meta["game"])
    check(path, arrays, meta, split, root)
    return arrays


def read_split_arrays(root: str | Path, split: str, meta: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """A finished split's arrays (:data:`ARRAY_KEYS`), read in full and checked.

    Raises DatasetError for an unknown or unfinished split, DatasetFileError for a missing
    or damaged file.
    """
    return _read_checked(root, split, meta, split_file, ARRAY_KEYS, check_split_arrays)


def read_ground_truth_arrays(
    root: str | Path, split: str, meta: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """A finished split's ground-truth columns (:data:`GT_KEYS`), read in full and checked."""
    return _read_checked(root, split, meta, gt_file, GT_KEYS, check_ground_truth_arrays)

