"""The detector's steps after the image encoder, in NumPy, for small CPU batches.

At the batch sizes an env runs (1 to 32 frames, a few objects each) the work after the image
encoder is tiny: decoding 256 cells, cropping a few 16x16 glimpses and two small matrix
products. In torch each of its ~60 operations costs a dispatch of several microseconds, which
added up to about a millisecond per call (issue 11); the same arithmetic on NumPy arrays costs
a fraction of that. These functions mirror, in float32:

- :func:`decode_cells`: :func:`moc_envs.model.geometry.latents_to_where` on the present cells
  and :func:`~moc_envs.model.geometry.where_to_boxes`;
- :func:`crop_glimpses_np`: :func:`~moc_envs.model.geometry.crop_glimpses` (bilinear,
  ``align_corners=False``, zero padding), reading channels-last images;
- :class:`LeanGlimpseKernel`: :class:`~moc_envs.model.lean.LeanGlimpseEncoder`'s posterior mean
  (two ``F.linear`` calls on the glimpses as they come).

They agree with the torch path to float rounding (tests compare them); training and CUDA use
the torch path.
"""

from __future__ import annotations

import numpy as np

from moc_envs.model.geometry import FRAME_H, FRAME_W

__all__ = ["decode_cells", "crop_glimpses_np", "LeanGlimpseKernel"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode_cells(
    raw: np.ndarray, pres_squash: float, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The present cells of raw head channels (B, 11, G, G) float32.

    Returns ``(frame_index, pres_prob, z_where, boxes)`` of the M cells whose z_pres
    probability exceeds ``threshold``, frame by frame and row-major within a frame (as
    ``torch.nonzero``): (M,) int64, (M,) float32, (M, 4) float32 ``[sx, sy, tx, ty]`` and
    (M, 4) float32 boxes ``(x, y, w, h)`` in 210x160 frame pixels.
    """
    b, _, g, _ = raw.shape
    cells = raw.reshape(b, 11, g * g)
    prob = _sigmoid(np.float32(pres_squash) * np.tanh(cells[:, 0]))
    b_idx, c_idx = np.nonzero(prob > threshold)
    sel = cells[b_idx, :, c_idx]  # (M, 11)
    scale = _sigmoid(sel[:, 3:5])
    shift = np.tanh(sel[:, 7:9])
    col = (c_idx % g).astype(np.float32)
    row = (c_idx // g).astype(np.float32)
    step = np.float32(2.0 / g)
    tx = step * (col + np.float32(0.5) + shift[:, 0]) - np.float32(1.0)
    ty = step * (row + np.float32(0.5) + shift[:, 1]) - np.float32(1.0)
    where = np.stack([scale[:, 0], scale[:, 1], tx, ty], axis=1)
    sx, sy = scale[:, 0], scale[:, 1]
    half = np.float32(0.5)
    boxes = np.stack(
        [
            ((tx + 1) * half - sx * half) * FRAME_W,
            ((ty + 1) * half - sy * half) * FRAME_H,
            sx * FRAME_W,
            sy * FRAME_H,
        ],
        axis=1,
    ).astype(np.float32, copy=False)
    return b_idx.astype(np.int64, copy=False), prob[b_idx, c_idx], where, boxes


def crop_glimpses_np(images: np.ndarray, frame_index: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    """Bilinear glimpses (M, size, size, C) of channels-last images (B, H, W, C) float32.

    Box ``m`` of image ``frame_index[m]`` with ``where[m] = [sx, sy, tx, ty]``; samples outside
    the image read zero, as torch's ``grid_sample(..., padding_mode="zeros",
    align_corners=False)`` does.
    """
    m = len(frame_index)
    _, h, w, c = images.shape
    if m == 0:
        return np.zeros((0, size, size, c), dtype=np.float32)
    base = (2.0 * np.arange(size, dtype=np.float32) + 1.0) / size - 1.0
    ix = ((where[:, 0:1] * base + where[:, 2:3] + 1.0) * w - 1.0) * 0.5  # (M, size) columns
    iy = ((where[:, 1:2] * base + where[:, 3:4] + 1.0) * h - 1.0) * 0.5  # (M, size) rows
    x0 = np.floor(ix)
    y0 = np.floor(iy)
    wx1, wy1 = ix - x0, iy - y0
    wx0, wy0 = 1.0 - wx1, 1.0 - wy1
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    x1, y1 = x0 + 1, y0 + 1
    # Zero padding: a tap outside the image gets weight 0 (and a clipped, valid index).
    wx0 = wx0 * ((x0 >= 0) & (x0 < w))
    wx1 = wx1 * ((x1 >= 0) & (x1 < w))
    wy0 = wy0 * ((y0 >= 0) & (y0 < h))
    wy1 = wy1 * ((y1 >= 0) & (y1 < h))
    x0, x1 = np.clip(x0, 0, w - 1), np.clip(x1, 0, w - 1)
    y0, y1 = np.clip(y0, 0, h - 1), np.clip(y1, 0, h - 1)
    f = frame_index[:, None, None]

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return images[f, yy[:, :, None], xx[:, None, :]]  # (M, size, size, C)

    top = tap(y0, x0) * wx0[:, None, :, None] + tap(y0, x1) * wx1[:, None, :, None]
    bottom = tap(y1, x0) * wx0[:, None, :, None] + tap(y1, x1) * wx1[:, None, :, None]
    return (top * wy0[:, :, None, None] + bottom * wy1[:, :, None, None]).astype(np.float32, copy=False)


class LeanGlimpseKernel:
    """:class:`~moc_envs.model.lean.LeanGlimpseEncoder`'s z_what mean for channels-last glimpses.

    Built from the encoder's weights; its first layer's columns are reordered once so that it
    reads channels-last glimpses (M, g, g, C) as :func:`crop_glimpses_np` gives them, and only
    the mean half of the last layer is kept. The two products run in torch (``F.linear``):
    for a few glimpses against the 768 x 256 first layer NumPy's BLAS measured 2-3x slower.
    Call it under the detector's torch thread count.
    """

    def __init__(self, encoder: object, glimpse: int) -> None:
        import torch

        net = encoder.net  # type: ignore[attr-defined]
        first, last = net[1], net[3]
        self.z_dim = int(encoder.z_dim)  # type: ignore[attr-defined]
        w1 = first.weight.detach().float().cpu()
        hidden = w1.shape[0]
        # Columns are (C, g, g) in the torch encoder's flattening; reorder to (g, g, C).
        self.w1 = w1.reshape(hidden, 3, glimpse, glimpse).permute(0, 2, 3, 1).reshape(hidden, -1).contiguous()
        self.b1 = first.bias.detach().float().cpu().clone()
        self.w2 = last.weight.detach().float().cpu()[: self.z_dim].contiguous()
        self.b2 = last.bias.detach().float().cpu()[: self.z_dim].clone()
        self._torch = torch

    def __call__(self, glimpses: np.ndarray) -> np.ndarray:
        """z_what means (M, z_dim) float32 of channels-last glimpses (M, g, g, C) float32."""
        f = self._torch.nn.functional
        with self._torch.inference_mode():
            x = self._torch.from_numpy(np.ascontiguousarray(glimpses).reshape(len(glimpses), -1))
            return f.linear(f.relu(f.linear(x, self.w1, self.b1)), self.w2, self.b2).numpy()
