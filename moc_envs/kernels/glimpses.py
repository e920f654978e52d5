"""The bilinear glimpse crop as one compiled loop over the glimpses' taps.

:func:`crop` gives :func:`moc_envs.model.decode_np.crop_glimpses_np`'s glimpses bit for bit: the
same float32 operations in the same order (every constant a float32, no fused multiply-adds),
without the reference's eight gathers of (M, size, size, C) arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["crop"]


@njit(cache=True, nogil=True)
def _axis(scale: np.float32, shift: np.float32, base: np.ndarray, extent: int) -> tuple[np.ndarray, ...]:
    """Low and high tap index and weight of each sample along one axis (zero outside the image)."""
    size = base.shape[0]
    one, half = np.float32(1.0), np.float32(0.5)
    n = np.float32(extent)
    lo, hi = np.empty(size, np.int64), np.empty(size, np.int64)
    w_lo, w_hi = np.empty(size, np.float32), np.empty(size, np.float32)
    for j in range(size):
        pos = ((scale * base[j] + shift + one) * n - one) * half
        floor = np.float32(math.floor(pos))
        frac = pos - floor
        i0 = int(floor)
        i1 = i0 + 1
        w_lo[j] = (one - frac) if 0 <= i0 < extent else np.float32(0.0) * (one - frac)
        w_hi[j] = frac if 0 <= i1 < extent else np.float32(0.0) * frac
        lo[j] = min(max(i0, 0), extent - 1)
        hi[j] = min(max(i1, 0), extent - 1)
    return lo, hi, w_lo, w_hi


@njit(cache=True, nogil=True)
def _crop(images: np.ndarray, frame_index: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    _, h, w, c = images.shape
    m = frame_index.shape[0]
    out = np.empty((m, size, size, c), dtype=np.float32)
    base = np.empty(size, dtype=np.float32)
    for j in range(size):
        base[j] = (np.float32(2.0) * np.float32(j) + np.float32(1.0)) / np.float32(size) - np.float32(1.0)
    for k in range(m):
        f = frame_index[k]
        x0, x1, wx0, wx1 = _axis(where[k, 0], where[k, 2], base, w)
        y0, y1, wy0, wy1 = _axis(where[k, 1], where[k, 3], base, h)
        for a in range(size):
            for b in range(size):
                for ch in range(c):
                    top = images[f, y0[a], x0[b], ch] * wx0[b] + images[f, y0[a], x1[b], ch] * wx1[b]
                    bottom = images[f, y1[a], x0[b], ch] * wx0[b] + images[f, y1[a], x1[b], ch] * wx1[b]
                    out[k, a, b, ch] = top * wy0[a] + bottom * wy1[a]
    return out


def crop(images: np.ndarray, frame_index: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    """Glimpses (M, size, size, C) float32 of channels-last float32 images (B, H, W, C): box ``m``
    of image ``frame_index[m]``, ``where[m] = [sx, sy, tx, ty]``, zero outside the image
    (:func:`~moc_envs.model.decode_np.crop_glimpses_np`)."""
    where = np.ascontiguousarray(where, dtype=np.float32).reshape(-1, 4)
    return _crop(images, np.asarray(frame_index, dtype=np.int64), where, int(size))
