"""The detector's input, resized and scaled to [0, 1], in one compiled pass.

:func:`resize_unit` gives ``resize_frames(frames) / 255`` (:mod:`moc_envs.perception.preprocess`:
OpenCV's area filter, then a float32 division) bit for bit: the same float32 operations in the
same order as OpenCV's area resize for a non-integer shrink, on the same weight tables. OpenCV
walks a table of (output, input, weight) entries and adds into a buffer; here each output
element's taps are laid out per tap, so that every pass over a row is a plain loop that the
compiler vectorises, and the rounding and the division to [0, 1] happen in the same loop (no
uint8 image in between). At batch 1 it took about half of OpenCV's time plus the division (issue 30).

Training and dataset building keep :func:`~moc_envs.perception.preprocess.resize_frames`
(uint8 frames on disk); tests compare the two on every shipped game's frames.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit

__all__ = ["area_taps", "resize_unit"]


def area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-filter weights of a ``src`` -> ``dst`` shrink along one axis, as OpenCV computes them.

    Returns ``(starts, index, weight)``: output ``d`` sums ``weight[k] * input[index[k]]`` for
    ``k`` in ``starts[d]:starts[d + 1]``, in that order. The cell of output ``d`` spans inputs
    ``d * scale`` to ``(d + 1) * scale`` (``scale = src / dst`` as OpenCV's double,
    ``1 / (dst / src)``); inputs partly inside it weigh their covered share, all over the cell's width.
    """
    if not 0 < dst <= src:
        raise ValueError(f"area_taps shrinks: expected 0 < dst <= src, got src={src}, dst={dst}")
    scale = 1.0 / (dst / src)
    starts, index, weight = [0], [], []
    for d in range(dst):
        lo = d * scale
        hi = lo + scale
        cell = min(scale, src - lo)
        first, last = math.ceil(lo), math.floor(hi)
        last = min(last, src - 1)
        first = min(first, last)
        # OpenCV's tolerance: a sliver of under a thousandth of a pixel is no tap.
        if first - lo > 1e-3:
            index.append(first - 1)
            weight.append((first - lo) / cell)
        for s in range(first, last):
            index.append(s)
            weight.append(1.0 / cell)
        if hi - last > 1e-3:
            index.append(last)
            weight.append(min(min(hi - last, 1.0), cell) / cell)
        starts.append(len(index))
    return np.array(starts, np.int64), np.array(index, np.int64), np.array(weight, np.float32)


@lru_cache(maxsize=8)
def _tables(height: int, width: int, channels: int, size: int) -> tuple[np.ndarray, ...]:
    """Row taps as :func:`area_taps` gives them; column taps per tap slot over the (W * C) row."""
    ys, yi, ya = area_taps(height, size)
    xs, xi, xa = area_taps(width, size)
    slots = int(np.diff(xs).max())
    ti = np.zeros((slots, size * channels), np.int64)
    ta = np.zeros((slots, size * channels), np.float32)
    for d in range(size):
        taps = range(int(xs[d]), int(xs[d + 1]))
        for slot in range(slots):
            # A missing tap reads the first one with weight zero: adding +0.0 leaves a sum as it is.
            k = taps[slot] if slot < len(taps) else taps[0]
            for c in range(channels):
                ti[slot, d * channels + c] = xi[k] * channels + c
                ta[slot, d * channels + c] = xa[k] if slot < len(taps) else np.float32(0.0)
    return ti, ta, ys, yi, ya


@njit(cache=True, nogil=True)
def _resize(
    frames: np.ndarray, ti: np.ndarray, ta: np.ndarray, ys: np.ndarray, yi: np.ndarray, ya: np.ndarray, out: np.ndarray
) -> None:
    n, h, w, c = frames.shape
    length = ti.shape[1]
    rows_out = ys.shape[0] - 1
    zero, full = np.float32(0.0), np.float32(255.0)
    line = np.empty(w * c, np.float32)
    across = np.empty((h, length), np.float32)
    acc = np.empty(length, np.float32)
    for f in range(n):
        src = frames[f].reshape(h, w * c)
        # Along each row first, as OpenCV does: one buffer row per input row.
        for y in range(h):
            for j in range(w * c):
                line[j] = np.float32(src[y, j])
            row = across[y]
            first, weight = ti[0], ta[0]
            for j in range(length):
                row[j] = zero + line[first[j]] * weight[j]
            for slot in range(1, ti.shape[0]):
                idx, weight = ti[slot], ta[slot]
                for j in range(length):
                    row[j] = row[j] + line[idx[j]] * weight[j]
        dst = out[f].reshape(rows_out, length)
        for d in range(rows_out):
            k0 = ys[d]
            beta, s = ya[k0], yi[k0]
            for j in range(length):
                acc[j] = zero + beta * across[s, j]
            for k in range(k0 + 1, ys[d + 1]):
                beta, s = ya[k], yi[k]
                for j in range(length):
                    acc[j] = acc[j] + beta * across[s, j]
            # OpenCV's saturate_cast rounds half to even; the sums of uint8 weights stay in 0..255.
            for j in range(length):
                dst[d, j] = np.float32(np.rint(acc[j])) / full


def resize_unit(frames: np.ndarray, size: int) -> np.ndarray:
    """``frames`` (N, H, W, C) uint8 shrunk to (N, size, size, C) float32 in [0, 1].

    Equal to ``np.divide(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA),
    np.float32(255))`` per frame, for a shrink that is not by a whole factor on both axes
    (OpenCV takes another path for those and for enlargements: ValueError here).
    """
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"resize_unit expects uint8 frames (N, H, W, C), got {frames.dtype} {frames.shape}")
    n, h, w, c = frames.shape
    if h < size or w < size or (h % size == 0 and w % size == 0):
        raise ValueError(f"resize_unit covers shrinks by a non-whole factor: got {h}x{w} -> {size}x{size}")
    out = np.empty((n, size, size, c), np.float32)
    if n:
        _resize(np.ascontiguousarray(frames), *_tables(h, w, c, size), out)
    return out
