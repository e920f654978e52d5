"""Box geometry: z_where <-> boxes, and the affine grids that crop and paste glimpses.

``z_where = [sx, sy, tx, ty]``: box width/height as a fraction of the image, box centre in
[-1, 1] (spec section 1). Boxes that leave the model are (x, y, w, h) in 210x160 frame pixels,
(x, y) the top-left corner.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "FRAME_H",
    "FRAME_W",
    "cell_offsets",
    "latents_to_where",
    "where_to_boxes",
    "boxes_to_where",
    "crop_glimpses",
    "crop_glimpses_grouped",
    "crop_present_glimpses",
    "paste_glimpses",
]

FRAME_H = 210
FRAME_W = 160


def cell_offsets(grid: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row index of every cell, flattened row-major: two (G*G,) float tensors."""
    idx = torch.arange(grid * grid, device=device)
    return (idx % grid).float(), (idx // grid).float()


def latents_to_where(z_scale: torch.Tensor, z_shift: torch.Tensor, grid: int) -> torch.Tensor:
    """Turn pre-sigmoid scale and pre-tanh shift latents (..., G*G, 2) into z_where (..., G*G, 4).

    A centre may move up to one cell away from its own cell:
    ``tx = (2/G) * (col + 0.5 + tanh(shift_x)) - 1``.
    """
    col, row = cell_offsets(grid, z_shift.device)
    scale = torch.sigmoid(z_scale)
    shift = torch.tanh(z_shift)
    tx = (2.0 / grid) * (col + 0.5 + shift[..., 0]) - 1.0
    ty = (2.0 / grid) * (row + 0.5 + shift[..., 1]) - 1.0
    return torch.cat([scale, tx.unsqueeze(-1), ty.unsqueeze(-1)], dim=-1)


def where_to_boxes(z_where: torch.Tensor) -> torch.Tensor:
    """z_where (..., 4) -> boxes (..., 4) as (x, y, w, h) in 210x160 frame pixels, top-left."""
    sx, sy, tx, ty = z_where.unbind(-1)
    w = sx * FRAME_W
    h = sy * FRAME_H
    x = ((tx + 1.0) / 2.0 - sx / 2.0) * FRAME_W
    y = ((ty + 1.0) / 2.0 - sy / 2.0) * FRAME_H
    return torch.stack([x, y, w, h], dim=-1)


def boxes_to_where(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes (..., 4) as (x, y, w, h) frame pixels -> z_where (..., 4); inverse of where_to_boxes."""
    x, y, w, h = boxes.unbind(-1)
    sx = w / FRAME_W
    sy = h / FRAME_H
    tx = 2.0 * (x + w / 2.0) / FRAME_W - 1.0
    ty = 2.0 * (y + h / 2.0) / FRAME_H - 1.0
    return torch.stack([sx, sy, tx, ty], dim=-1)


def _theta(z_where: torch.Tensor, inverse: bool) -> torch.Tensor:
    sx, sy, tx, ty = z_where.unbind(-1)
    zero = torch.zeros_like(sx)
    if inverse:
        # Image coordinates -> glimpse coordinates: u = (x - tx) / sx. The clamp keeps a
        # collapsed box from producing infinities (its paste is then a point, as it should be).
        sx = sx.clamp_min(1e-4)
        sy = sy.clamp_min(1e-4)
        row0 = torch.stack([1.0 / sx, zero, -tx / sx], dim=-1)
        row1 = torch.stack([zero, 1.0 / sy, -ty / sy], dim=-1)
    else:
        # Glimpse coordinates u in [-1, 1] -> image coordinates sx * u + tx: the box has
        # half-width sx in the [-1, 1] frame because sx is a fraction of the full width 2.
        row0 = torch.stack([sx, zero, tx], dim=-1)
        row1 = torch.stack([zero, sy, ty], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def crop_glimpses(images: torch.Tensor, z_where: torch.Tensor, size: int) -> torch.Tensor:
    """Crop one glimpse per box: images (N, C, H, W), z_where (N, 4) -> (N, C, size, size)."""
    theta = _theta(z_where, inverse=False).to(images.dtype)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_glimpses_grouped(images: torch.Tensor, z_where: torch.Tensor, size: int) -> torch.Tensor:
    """Crop K glimpses from each image: images (B, C, H, W), z_where (B, K, 4) -> (B, K, C, size, size).

    The same pixels as :func:`crop_glimpses` on the images repeated K times, without the copies:
    image b's K sampling grids are stacked into one (K * size, size) grid, so one grid_sample
    call reads each image once (every output pixel is computed from its own grid point, so the
    values are identical).
    """
    b, k = z_where.shape[:2]
    c = images.shape[1]
    theta = _theta(z_where.reshape(b * k, 4), inverse=False).to(images.dtype)
    grid = F.affine_grid(theta, [b * k, c, size, size], align_corners=False)
    out = F.grid_sample(
        images, grid.view(b, k * size, size, 2), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.view(b, c, k, size, size).transpose(1, 2)


def crop_present_glimpses(
    images: torch.Tensor, frame_index: torch.Tensor, z_where: torch.Tensor, size: int
) -> torch.Tensor:
    """One glimpse per box when frames hold different numbers of boxes: (M, C, size, size).

    ``frame_index`` (M,) is each box's image, sorted ascending (as ``torch.nonzero`` returns
    it); ``z_where`` (M, 4). Each image's boxes are padded to the largest count and cropped with
    :func:`crop_glimpses_grouped`, so no image is copied (``crop_glimpses(images[frame_index],
    ...)`` copies one per box); the values equal that call's.
    """
    m = frame_index.numel()
    if m == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    counts = torch.bincount(frame_index, minlength=images.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(m, device=frame_index.device) - starts[frame_index]
    padded = z_where.new_zeros((images.shape[0], int(counts.max()), 4))
    padded[frame_index, rank] = z_where
    return crop_glimpses_grouped(images, padded, size)[frame_index, rank]


def paste_glimpses(glimpses: torch.Tensor, z_where: torch.Tensor, out_size: int) -> torch.Tensor:
    """Paste glimpses (N, C, g, g) back at their boxes on an (N, C, out_size, out_size) canvas.

    Outside its box a pasted glimpse is zero (zero padding).
    """
    theta = _theta(z_where, inverse=True).to(glimpses.dtype)
    n, c = glimpses.shape[:2]
    grid = F.affine_grid(theta, [n, c, out_size, out_size], align_corners=False)
    return F.grid_sample(glimpses, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
