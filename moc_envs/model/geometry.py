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


def paste_glimpses(glimpses: torch.Tensor, z_where: torch.Tensor, out_size: int) -> torch.Tensor:
    """Paste glimpses (N, C, g, g) back at their boxes on an (N, C, out_size, out_size) canvas.

    Outside its box a pasted glimpse is zero (zero padding).
    """
    theta = _theta(z_where, inverse=True).to(glimpses.dtype)
    n, c = glimpses.shape[:2]
    grid = F.affine_grid(theta, [n, c, out_size, out_size], align_corners=False)
    return F.grid_sample(glimpses, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
