"""Suppression, the drawn-box test and pixel-tight boxes as compiled loops over a batch's boxes.

Each function gives exactly the result of its readable NumPy reference in
:mod:`moc_envs.perception.postprocess` (which documents the rules):

- :func:`suppress` is :func:`~moc_envs.perception.postprocess.suppress_duplicates_batched`;
- :func:`drawn` is :func:`~moc_envs.perception.postprocess.drawn_mask`;
- :func:`refine` is :func:`~moc_envs.perception.postprocess.refine_and_colour` (the tightened
  boxes and each box's packed object colour).

The references label an object's colour region with OpenCV's connected components and, between
regions with as many pixels in the box's central half, take OpenCV's lowest label. OpenCV scans
a mask in 2x2 blocks, row of blocks by row of blocks, and numbers regions by the first block
each reaches (every foreground pixel of a block touches the others, so a block belongs to one
region); :func:`refine` breaks the tie by that first block too, so it needs no OpenCV.
The callers (the detector) hand over valid frames and frame indices; :func:`refine` refuses
boxes that are not finite, as its reference does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["suppress", "drawn", "refine"]


@njit(cache=True, nogil=True)
def _suppress_sorted(boxes: np.ndarray, frames: np.ndarray, iou_threshold: float, centre_fraction: float) -> np.ndarray:
    """Greedy keep flags of boxes sorted by frame, then by descending score."""
    m = boxes.shape[0]
    keep = np.zeros(m, dtype=np.bool_)
    kept = np.empty(m, dtype=np.int64)
    n_kept = 0
    first_of_frame = 0
    for a in range(m):
        if a > 0 and frames[a] != frames[a - 1]:
            first_of_frame = n_kept
        ax, ay, aw, ah = boxes[a, 0], boxes[a, 1], boxes[a, 2], boxes[a, 3]
        ax2, ay2, a_area = ax + aw, ay + ah, aw * ah
        acx, acy, a_half = ax + aw / 2, ay + ah / 2, np.hypot(aw, ah) / 2
        duplicate = False
        for t in range(first_of_frame, n_kept):
            b = kept[t]
            bx, by, bw, bh = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3]
            iw = max(min(ax2, bx + bw) - max(ax, bx), 0.0)
            ih = max(min(ay2, by + bh) - max(ay, by), 0.0)
            inter = iw * ih
            iou = inter / max(a_area + bw * bh - inter, 1e-12)
            dist = np.hypot(acx - (bx + bw / 2), acy - (by + bh / 2))
            if iou >= iou_threshold or dist < centre_fraction * min(a_half, np.hypot(bw, bh) / 2):
                duplicate = True
                break
        if not duplicate:
            keep[a] = True
            kept[n_kept] = a
            n_kept += 1
    return keep


def suppress(
    boxes: np.ndarray, scores: np.ndarray, frame_index: np.ndarray, iou_threshold: float, centre_fraction: float
) -> np.ndarray:
    """Indices of the boxes (M, 4) (x, y, w, h) to keep, by frame then descending score (ties:
    lower index): what :func:`~moc_envs.perception.postprocess.suppress_duplicates_batched` gives."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)
    m = len(boxes)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    fi = np.asarray(frame_index, dtype=np.int64)
    order = np.lexsort((np.arange(m), -np.asarray(scores, dtype=np.float64), fi))
    keep = _suppress_sorted(boxes[order], fi[order], float(iou_threshold), float(centre_fraction))
    return order[keep]


@njit(cache=True, nogil=True)
def _drawn(frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    fh, fw = frames.shape[1], frames.shape[2]
    out = np.zeros(boxes.shape[0], dtype=np.bool_)
    for k in range(boxes.shape[0]):
        x, y, w, h = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(w) and np.isfinite(h)):
            out[k] = True
            continue
        x0 = min(max(int(math.floor(x)), 0), fw)
        y0 = min(max(int(math.floor(y)), 0), fh)
        x1 = min(max(int(math.ceil(x + w)), 0), fw)
        y1 = min(max(int(math.ceil(y + h)), 0), fh)
        if x1 <= x0 or y1 <= y0:
            continue
        f = frame_index[k]
        r0, g0, b0 = frames[f, y0, x0, 0], frames[f, y0, x0, 1], frames[f, y0, x0, 2]
        found = False
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                if frames[f, yy, xx, 0] != r0 or frames[f, yy, xx, 1] != g0 or frames[f, yy, xx, 2] != b0:
                    found = True
                    break
            if found:
                break
        out[k] = found
    return out


def drawn(frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """Boolean (M,): which boxes of uint8 frames (N, H, W, 3) hold two colours or more
    (:func:`~moc_envs.perception.postprocess.drawn_mask`)."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)
    return _drawn(frames, boxes, np.asarray(frame_index, dtype=np.int64))


@njit(cache=True, nogil=True)
def _mode(values: np.ndarray, n: int) -> np.int64:
    """Most common of values[:n] (n > 0), ties to the smallest (np.unique + argmax); sorts them."""
    v = np.sort(values[:n])
    best, best_count = v[0], 0
    run = 1
    for i in range(1, n + 1):
        if i < n and v[i] == v[i - 1]:
            run += 1
            continue
        if run > best_count:
            best, best_count = v[i - 1], run
        run = 1
    return best


@njit(cache=True, nogil=True)
def _packed_at(frames: np.ndarray, f: int, y: int, x: int) -> np.int64:
    return (np.int64(frames[f, y, x, 0]) << 16) | (np.int64(frames[f, y, x, 1]) << 8) | np.int64(frames[f, y, x, 2])


@njit(cache=True, nogil=True)
def _refine(frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    fh, fw = frames.shape[1], frames.shape[2]
    out = boxes.copy()
    colours = np.full(boxes.shape[0], -1, dtype=np.int64)
    for i in range(boxes.shape[0]):
        x, y, w, h = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        f = frame_index[i]
        x0 = int(max(0.0, math.floor(x - margin * w)))
        y0 = int(max(0.0, math.floor(y - margin * h)))
        x1 = int(min(float(fw), math.ceil(x + w + margin * w)))
        y1 = int(min(float(fh), math.ceil(y + h + margin * h)))
        cw, ch = x1 - x0, y1 - y0
        if cw < 3 or ch < 3:
            # The pixel under the box's centre names a box too small to refine.
            cx = min(max(int(math.floor(x + w / 2)), 0), fw - 1)
            cy = min(max(int(math.floor(y + h / 2)), 0), fh - 1)
            colours[i] = _packed_at(frames, f, cy, cx)
            continue
        crop = np.empty((ch, cw), dtype=np.int64)
        for r in range(ch):
            for c in range(cw):
                crop[r, c] = _packed_at(frames, f, y0 + r, x0 + c)
        border = np.empty(2 * cw + 2 * (ch - 2), dtype=np.int64)
        n = 0
        for c in range(cw):
            border[n] = crop[0, c]
            border[n + 1] = crop[ch - 1, c]
            n += 2
        for r in range(1, ch - 1):
            border[n] = crop[r, 0]
            border[n + 1] = crop[r, cw - 1]
            n += 2
        background = _mode(border, n)
        cx0 = min(max(int(math.floor(x + w / 4)) - x0, 0), cw - 1)
        cy0 = min(max(int(math.floor(y + h / 4)) - y0, 0), ch - 1)
        cx1 = min(max(int(math.ceil(x + 3 * w / 4)) - x0, cx0 + 1), cw)
        cy1 = min(max(int(math.ceil(y + 3 * h / 4)) - y0, cy0 + 1), ch)
        inner = np.empty((cy1 - cy0) * (cx1 - cx0), dtype=np.int64)
        n = 0
        for r in range(cy0, cy1):
            for c in range(cx0, cx1):
                if crop[r, c] != background:
                    inner[n] = crop[r, c]
                    n += 1
        colours[i] = background
        if n == 0:
            continue
        colour = _mode(inner, n)
        colours[i] = colour
        # The regions of the colour that reach the central half, filled one by one; the one with
        # most central pixels wins, ties to the region OpenCV numbers first (its first 2x2 block).
        seen = np.zeros((ch, cw), dtype=np.bool_)
        stack = np.empty(ch * cw, dtype=np.int64)
        blocks_across = (cw + 1) // 2
        best_votes, best_block = 0, 0
        best_box = (0, 0, 0, 0)
        for r0 in range(cy0, cy1):
            for c0 in range(cx0, cx1):
                if seen[r0, c0] or crop[r0, c0] != colour:
                    continue
                seen[r0, c0] = True
                stack[0] = r0 * cw + c0
                top = 1
                votes, block = 0, ch * cw
                left, right, up, down = c0, c0, r0, r0
                while top:
                    top -= 1
                    r, c = stack[top] // cw, stack[top] % cw
                    if cy0 <= r < cy1 and cx0 <= c < cx1:
                        votes += 1
                    block = min(block, (r // 2) * blocks_across + c // 2)
                    left, right, up, down = min(left, c), max(right, c), min(up, r), max(down, r)
                    for rr in range(max(r - 1, 0), min(r + 2, ch)):
                        for cc in range(max(c - 1, 0), min(c + 2, cw)):
                            if not seen[rr, cc] and crop[rr, cc] == colour:
                                seen[rr, cc] = True
                                stack[top] = rr * cw + cc
                                top += 1
                if votes > best_votes or (votes == best_votes and block < best_block):
                    best_votes, best_block = votes, block
                    best_box = (left, up, right - left + 1, down - up + 1)
        left, up, width, height = best_box
        # A region from edge to edge of its crop is scenery, not the object: that box stays.
        if width >= cw or height >= ch:
            continue
        out[i, 0] = x0 + left
        out[i, 1] = y0 + up
        out[i, 2] = width
        out[i, 3] = height
    return out, colours


def refine(
    frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray, margin: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (M, 4) of uint8 frames (N, H, W, 3) tightened to their objects' pixels, and each box's
    packed object colour (M,) (R << 16 | G << 8 | B): the results of
    :func:`~moc_envs.perception.postprocess.refine_and_colour` (its colours packed)."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must be finite, got NaN or infinity")
    return _refine(frames, boxes, np.asarray(frame_index, dtype=np.int64), float(margin))
