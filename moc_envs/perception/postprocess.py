"""One box per object: suppress the duplicates that neighbouring grid cells produce.

SPACE predicts at most one object per grid cell, but an object on a cell border is often
claimed by two neighbouring cells (spec section 7: the references keep both). We keep the
highest-scoring box and drop a lower-scoring box that is a duplicate of a kept one: either
their IoU reaches ``iou_threshold``, or their centres are closer than ``centre_fraction`` times
the half-diagonal of the smaller box (two boxes on the same small object, such as the ball,
barely overlap when one is shifted by a pixel or two, but their centres nearly coincide).
Distinct objects that touch keep their boxes: their centres are about a box apart.

SPACE's boxes are loose: the glimpse holds the object with a margin (a 4x15 Pong paddle gets
about 10x21), so IoU with the true box is poor even when the centre is right.
:func:`refine_boxes` tightens each box from the frame's pixels: in the box (grown by a margin)
the most common colour on the crop's border is the background, the most common other colour
in the box's central half is the object's, and the box becomes the bounding box of the
connected region of that colour that covers most of the central half. A wall or a neighbour
of another colour stays out; when the central half holds only background the box is kept. So is
it when that region reaches across the whole grown crop, from edge to edge in width or in
height: an object inside the box does not, scenery does (Freeway's chicken on the kerb gets the
pavement's colour as its central half's most common one, and the pavement crosses the crop).

A cell can also claim a box far larger than any object of the game (a stretch of empty snow in
Skiing). :func:`size_mask` drops boxes beyond a per-game ``max_box`` (``config.json``), which the
exporter derives from the training data's motion boxes, not from labels; it runs first, so that
an oversized box never suppresses a real one.

The detector runs on batches: :func:`suppress_duplicates_batched` and
:func:`refine_boxes_batched` take the boxes of many frames at once (with each box's frame index)
and give exactly the per-frame functions' results with a fixed number of numpy/OpenCV calls per
batch instead of a Python loop over frames and boxes. The per-frame functions stay the readable
reference. Numpy and OpenCV; no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SuppressionConfig",
    "DEFAULT_SUPPRESSION",
    "suppress_duplicates",
    "suppress_duplicates_batched",
    "size_mask",
    "drawn_mask",
    "refine_boxes",
    "refine_boxes_batched",
    "refine_and_colour",
    "unpack_colours",
]


@dataclass(frozen=True)
class SuppressionConfig:
    """Thresholds of duplicate suppression (see the module docstring)."""

    iou_threshold: float = 0.5
    """Boxes with at least this IoU are one object."""
    centre_fraction: float = 0.5
    """Boxes whose centres are closer than this fraction of the smaller half-diagonal are one object."""

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.centre_fraction < 0.0:
            raise ValueError(f"centre_fraction must be >= 0, got {self.centre_fraction}")


DEFAULT_SUPPRESSION = SuppressionConfig()
"""The thresholds the env's detector uses."""


def _geometry(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Corners, area, centre and half-diagonal of boxes (N, 4) (x, y, w, h), as the duplicate test uses them."""
    x1, y1, w, h = boxes.T
    return x1, y1, x1 + w, y1 + h, w * h, x1 + w / 2, y1 + h / 2, np.hypot(w, h) / 2


def _duplicates(geometry: tuple[np.ndarray, ...], i: np.ndarray | int, k: np.ndarray, cfg: SuppressionConfig) -> np.ndarray:
    """Whether box ``i`` duplicates box ``k`` (elementwise): IoU at the threshold, or centres too close."""
    x1, y1, x2, y2, area, cx, cy, half_diag = geometry
    iw = np.clip(np.minimum(x2[i], x2[k]) - np.maximum(x1[i], x1[k]), 0, None)
    ih = np.clip(np.minimum(y2[i], y2[k]) - np.maximum(y1[i], y1[k]), 0, None)
    inter = iw * ih
    iou = inter / np.maximum(area[i] + area[k] - inter, 1e-12)
    dist = np.hypot(cx[i] - cx[k], cy[i] - cy[k])
    near = dist < cfg.centre_fraction * np.minimum(half_diag[i], half_diag[k])
    return (iou >= cfg.iou_threshold) | near


def suppress_duplicates(
    boxes: np.ndarray, scores: np.ndarray, config: SuppressionConfig | None = None
) -> np.ndarray:
    """Indices of the boxes to keep, highest score first.

    ``boxes`` (N, 4) are (x, y, w, h); ``scores`` (N,). Greedy: walk the boxes by descending
    score and keep each one that is not a duplicate of a box already kept.
    """
    cfg = config or SuppressionConfig()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"got {len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) < 2:
        return np.arange(len(boxes))
    geometry = _geometry(boxes)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if keep:
            if _duplicates(geometry, i, np.asarray(keep), cfg).any():
                continue
        keep.append(int(i))
    return np.asarray(keep, dtype=int)


_PAIR_CHUNK = 1 << 22
"""Candidate pairs scored at once by :func:`suppress_duplicates_batched` (bounds its memory)."""

_FEW_BOXES = 3
"""Up to this many boxes the batched functions call the per-frame ones (cheaper there)."""


def _frame_index(frame_index: object, n: int) -> np.ndarray:
    """``frame_index`` as an int64 (n,) array, or a clear error."""
    fi = np.asarray(frame_index)
    if fi.ndim != 1 or len(fi) != n:
        raise ValueError(f"frame_index must have shape ({n},) (one per box), got {fi.shape}")
    if n and not np.issubdtype(fi.dtype, np.integer):
        raise TypeError(f"frame_index must hold integers, got {fi.dtype}")
    return fi.astype(np.int64, copy=False)


def _earlier_pairs(group_start: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a, b), lo <= a < hi, b from a's group start to a - 1 (positions in sort order)."""
    a_pos = np.arange(lo, hi)
    cnt = a_pos - group_start[lo:hi]
    a = np.repeat(a_pos, cnt)
    # b counts up from the group start within each a's run.
    run_start = np.repeat(np.cumsum(cnt) - cnt, cnt)
    b = group_start[a] + (np.arange(len(a)) - run_start)
    return a, b


def suppress_duplicates_batched(
    boxes: np.ndarray,
    scores: np.ndarray,
    frame_index: np.ndarray,
    config: SuppressionConfig | None = None,
) -> np.ndarray:
    """Indices of the boxes to keep over a batch: :func:`suppress_duplicates` on every frame at once.

    ``boxes`` (M, 4) (x, y, w, h), ``scores`` (M,), ``frame_index`` (M,) the frame of each box
    (integers; boxes of different frames never suppress each other). Returns exactly the union of
    the per-frame greedy results, ordered by frame, then by descending score (ties: lower index
    first), which is the order of concatenating :func:`suppress_duplicates` over the frames in
    ascending order with each frame's boxes in index order. Up to ``_FEW_BOXES`` boxes go through
    :func:`suppress_duplicates` itself, which is cheaper than the batch's fixed cost there.
    """
    cfg = config or SuppressionConfig()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = len(boxes)
    if len(scores) != m:
        raise ValueError(f"got {m} boxes but {len(scores)} scores")
    fi = _frame_index(frame_index, m)
    if m == 0:
        return np.zeros(0, dtype=int)
    if m <= _FEW_BOXES:
        # The batch costs about 35 numpy calls whatever its size, the definition about 10 a box.
        if fi.min() == fi.max():
            return suppress_duplicates(boxes, scores, cfg)
        parts = [np.zeros(0, dtype=int)]
        for f in np.unique(fi):
            rows = np.flatnonzero(fi == f)
            parts.append(rows[suppress_duplicates(boxes[rows], scores[rows], cfg)])
        return np.concatenate(parts)
    # The greedy walk of each frame, all frames one after another.
    order = np.lexsort((np.arange(m), -scores, fi))
    fs = fi[order]
    first = np.ones(m, dtype=bool)
    first[1:] = fs[1:] != fs[:-1]
    pos = np.arange(m)
    group_start = np.maximum.accumulate(np.where(first, pos, 0))
    geometry = _geometry(boxes[order])
    # Only pairs of one frame, the later box first; the same float expressions as
    # suppress_duplicates (i: the later box, k: an earlier one), so every decision is identical.
    n_pairs = np.cumsum(pos - group_start)
    later: list[np.ndarray] = []
    earlier: list[np.ndarray] = []
    lo = 0
    while lo < m:
        done = n_pairs[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(n_pairs, done + _PAIR_CHUNK, side="right")))
        i, k = _earlier_pairs(group_start, lo, hi)
        dup = _duplicates(geometry, i, k, cfg)
        later.append(i[dup])
        earlier.append(k[dup])
        lo = hi
    dup_later, dup_earlier = np.concatenate(later), np.concatenate(earlier)
    # The greedy result is the one fixpoint of keep[a] = not any(keep[b] for earlier duplicates b):
    # by induction over the walk, a box's value is final once those of all earlier boxes are.
    # Iterating from "keep all" fixes at least one more box per round, so the loop runs at most
    # (longest chain of duplicates + 1) rounds, and stops only at the fixpoint.
    keep = np.ones(m, dtype=bool)
    while True:
        blocked = np.zeros(m, dtype=bool)
        blocked[dup_later[keep[dup_earlier]]] = True
        if np.array_equal(~blocked, keep):
            break
        keep = ~blocked
    return order[keep].astype(int, copy=False)


def size_mask(boxes: np.ndarray, max_box: tuple[float, float] | None) -> np.ndarray:
    """Boolean (N,): the boxes (N, 4) (x, y, w, h) no wider than ``max_box[0]`` and no taller than ``max_box[1]``.

    ``max_box=None`` keeps every box.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if max_box is None:
        return np.ones(len(boxes), dtype=bool)
    max_w, max_h = max_box
    return (boxes[:, 2] <= max_w) & (boxes[:, 3] <= max_h)


def drawn_mask(frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """Which boxes (M, 4) of ``frames`` (N, H, W, 3) show anything: two colours or more inside.

    A cell can claim a box over plain background (a gap in SpaceInvaders' formation, an empty
    corner of Carnival's screen); nothing is drawn there, so the box is no object, whatever the
    model's z_pres. Each box is read at whole pixels, its floor to its ceiling cut to the frame.
    Run on the boxes left after suppression, a handful per frame.
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    fi = _frame_index(frame_index, len(boxes)).tolist()
    fh, fw = frames.shape[1:3]
    out = np.zeros(len(boxes), dtype=bool)
    for k, (x, y, w, h) in enumerate(boxes.tolist()):
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            out[k] = True  # not ours to judge: such a box is refused elsewhere
            continue
        x0, y0 = min(max(math.floor(x), 0), fw), min(max(math.floor(y), 0), fh)
        x1, y1 = min(max(math.ceil(x + w), 0), fw), min(max(math.ceil(y + h), 0), fh)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = frames[fi[k], y0:y1, x0:x1]
        out[k] = bool((crop != crop[0, 0]).any())
    return out


def _packed(rgb: np.ndarray) -> np.ndarray:
    """One int32 per pixel (R << 16 | G << 8 | B), so colours compare as numbers."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def refine_boxes(frame: np.ndarray, boxes: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """Boxes (N, 4) (x, y, w, h) of one frame (H, W, 3) uint8 tightened to their objects' pixels.

    See the module docstring; ``margin`` is the share of the box's width/height added on each
    side before looking for the object (the loose box may cut the object). Returns new boxes.
    """
    return _refine_frame(frame, boxes, margin)[0]


def _refine_frame(frame: np.ndarray, boxes: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_boxes` and each box's packed object colour (-1 where the crop is under 3x3
    pixels or the box is not finite; the background's where the central half holds only background)."""
    import cv2

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be (H, W, 3), got shape {frame.shape}")
    out = boxes.copy()
    colours = np.full(len(boxes), -1, dtype=np.int64)
    fh, fw = frame.shape[:2]
    # Scalar geometry in Python floats (the same IEEE doubles as numpy's float64 scalars, without
    # a numpy call each): this loop is the detector's path for a frame's few boxes.
    for i, (x, y, w, h) in enumerate(boxes.tolist()):
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            continue
        x0, y0 = int(max(0.0, math.floor(x - margin * w))), int(max(0.0, math.floor(y - margin * h)))
        x1, y1 = int(min(fw, math.ceil(x + w + margin * w))), int(min(fh, math.ceil(y + h + margin * h)))
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        crop = _packed(frame[y0:y1, x0:x1])
        border = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
        values, counts = np.unique(border, return_counts=True)
        background = values[counts.argmax()]
        # The central half of the predicted box, in crop coordinates (at least one pixel).
        cx0 = min(max(math.floor(x + w / 4) - x0, 0), x1 - x0 - 1)
        cy0 = min(max(math.floor(y + h / 4) - y0, 0), y1 - y0 - 1)
        cx1 = min(max(math.ceil(x + 3 * w / 4) - x0, cx0 + 1), x1 - x0)
        cy1 = min(max(math.ceil(y + 3 * h / 4) - y0, cy0 + 1), y1 - y0)
        centre = crop[cy0:cy1, cx0:cx1]
        inner = centre[centre != background]
        colours[i] = background
        if not inner.size:
            continue
        values, counts = np.unique(inner, return_counts=True)
        colours[i] = values[counts.argmax()]
        mask = (crop == values[counts.argmax()]).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        votes = np.bincount(labels[cy0:cy1, cx0:cx1].ravel(), minlength=n)
        votes[0] = 0
        k = int(votes.argmax())
        if votes[k] == 0:
            continue
        left, top, width, height = (float(v) for v in stats[k, :4])
        if width >= x1 - x0 or height >= y1 - y0:
            continue
        out[i] = (x0 + left, y0 + top, width, height)
    return out, colours


_CANVAS_PIXELS = 1 << 22
"""Pixels of crops labelled in one connected-components call (bounds the batch's memory)."""


def _modes(group: np.ndarray, colour: np.ndarray, n_groups: int) -> np.ndarray:
    """Most common packed colour of each group, ties to the smallest colour; -1 for an empty group.

    The tie rule is that of ``np.unique`` + ``argmax`` in :func:`refine_boxes` (ascending values,
    first maximum).
    """
    mode = np.full(n_groups, -1, dtype=np.int64)
    if not len(group):
        return mode
    keys, counts = np.unique((group.astype(np.int64) << 24) | colour, return_counts=True)
    g = keys >> 24
    # Stable: within a group the colours stay ascending, so the first of each group is the answer.
    best = np.lexsort((-counts, g))
    head = np.ones(len(best), dtype=bool)
    head[1:] = g[best[1:]] != g[best[:-1]]
    best = best[head]
    mode[g[best]] = keys[best] & 0xFFFFFF
    return mode


def _runs(starts: np.ndarray, lengths: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run of each element and the elements ``starts[i] + j * steps[i]``, j < ``lengths[i]``, of all runs."""
    run = np.repeat(np.arange(len(lengths)), lengths)
    j = np.arange(len(run)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return run, starts[run] + j * steps[run]


def _padded_bytes(frames: np.ndarray, pad: int) -> np.ndarray:
    """The frames' RGB bytes behind one zero byte, followed by ``pad`` zero pixels (see _pixel_rows)."""
    npix = frames.shape[0] * frames.shape[1] * frames.shape[2]
    buf = np.zeros(3 * (npix + pad) + 1, dtype=np.uint8)
    buf[1 : 1 + 3 * npix] = frames.reshape(-1)
    return buf


def _pixel_rows(buf: np.ndarray, first: np.ndarray, width: int) -> np.ndarray:
    """Packed colours (len(first), width) int32 of ``width`` pixels from each flat pixel ``first``.

    ``buf`` is :func:`_padded_bytes`: pixel p's RGB bytes sit at 3p + 1. One fancy index copies
    each row's bytes (from the byte before its first pixel); a big-endian uint32 read one byte
    before a pixel's RGB holds R << 16 | G << 8 | B (the numbers of :func:`_packed`) in its lower
    24 bits, so one strided view and a mask pack the whole canvas.
    """
    from numpy.lib.stride_tricks import as_strided

    n_rows = (len(buf) - 1) // 3 - width
    if len(first) and (first.min() < 0 or first.max() >= n_rows):
        raise ValueError(f"pixel rows must start in [0, {n_rows}), got [{first.min()}, {first.max()}]")
    rows = as_strided(buf, shape=(n_rows, 3 * width + 1), strides=(3, 1), writeable=False)[first]
    words = np.ndarray((len(first), width), dtype=">u4", buffer=rows, strides=(3 * width + 1, 3))
    out = words.astype(np.int32)
    out &= 0xFFFFFF
    return out


def refine_boxes_batched(
    frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray, margin: float = 0.25
) -> np.ndarray:
    """:func:`refine_boxes` over a batch: boxes (M, 4) of frames (N, H, W, 3) uint8 tightened at once.

    ``frame_index`` (M,) is each box's frame (0 <= f < N). The result (M, 4) equals calling
    :func:`refine_boxes` on every frame with that frame's boxes. How: every box's grown crop is
    stacked into one canvas (crops one under another, at even rows, a zero row between two), the
    background and object colours of all crops come from two sorts of packed colours, and one
    connected-components call labels every crop's mask. Even row offsets keep OpenCV's 2x2-block
    scan, hence the order of a crop's labels and the tie-breaking among equally voted regions,
    the same as when the crop is labelled alone. Up to ``_FEW_BOXES`` boxes go through
    :func:`refine_boxes` itself, which is cheaper than the batch's fixed cost there.
    Errors: ValueError for shapes, out-of-range frame indices and non-finite boxes, TypeError for
    non-uint8 frames and non-integer frame indices.
    """
    return _refine_batch(frames, boxes, frame_index, margin)[0]


def refine_and_colour(
    frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray, margin: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_boxes_batched` and each box's object colour (M, 3) uint8 RGB, in one pass.

    The object colour is the one the refinement looks for: the most common colour of the box's
    central half other than the crop border's (the background's when there is none; the pixel
    under the box's centre when the grown crop is under 3x3 pixels at the frame's edge). A
    classifier can read it beside z_what: Tennis' players differ in colour more than in shape.
    """
    out, packed = _refine_batch(frames, boxes, frame_index, margin)
    missing = np.flatnonzero(packed < 0)
    if len(missing):
        frames = np.asarray(frames)
        fh, fw = frames.shape[1:3]
        b = np.nan_to_num(np.asarray(boxes, np.float64).reshape(-1, 4)[missing])
        x = np.clip(np.floor(b[:, 0] + b[:, 2] / 2), 0, fw - 1).astype(np.int64)
        y = np.clip(np.floor(b[:, 1] + b[:, 3] / 2), 0, fh - 1).astype(np.int64)
        packed[missing] = _packed(frames[_frame_index(frame_index, len(out))[missing], y, x])
    return out, unpack_colours(packed)


def unpack_colours(packed: np.ndarray) -> np.ndarray:
    """Packed colours (M,) (R << 16 | G << 8 | B) as RGB rows (M, 3) uint8."""
    packed = np.asarray(packed, np.int64).reshape(-1)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)


def _refine_batch(
    frames: np.ndarray, boxes: np.ndarray, frame_index: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_boxes_batched` and the packed object colours of :func:`_refine_frame`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be (N, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        if boxes.size:
            raise ValueError(f"boxes must be (M, 4) (x, y, w, h), got shape {boxes.shape}")
        boxes = boxes.reshape(0, 4)
    m = len(boxes)
    fi = _frame_index(frame_index, m)
    out = boxes.copy()
    colours = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return out, colours
    n, fh, fw = frames.shape[:3]
    if fi.min() < 0 or fi.max() >= n:
        raise ValueError(f"frame_index must lie in [0, {n}) for {n} frames, got [{fi.min()}, {fi.max()}]")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes must be finite, got NaN or infinity")
    if m <= _FEW_BOXES:
        # The batch costs about 60 numpy calls whatever its size, the definition about 15 a box.
        if fi.min() == fi.max():
            return _refine_frame(frames[fi[0]], boxes, margin)
        for f in np.unique(fi):
            part = np.flatnonzero(fi == f)
            out[part], colours[part] = _refine_frame(frames[f], boxes[part], margin)
        return out, colours
    # The grown crop and the central half, by refine_boxes' float expressions; in float until the
    # crop is known to be at least 3x3 inside the frame, so that far-away boxes cannot overflow.
    xy, wh = boxes[:, :2], boxes[:, 2:]
    lo = np.maximum(0.0, np.floor(xy - margin * wh))
    size = np.minimum(np.array([fw, fh], dtype=np.float64), np.ceil(xy + wh + margin * wh)) - lo
    rows = np.flatnonzero((size >= 3).all(axis=1))
    if not len(rows):
        return out, colours
    xy, wh, lo, size = xy[rows], wh[rows], lo[rows], size[rows]
    c0 = np.clip(np.floor(xy + wh / 4) - lo, 0, size - 1)
    c1 = np.clip(np.ceil(xy + 3 * wh / 4) - lo, c0 + 1, size)
    # Rows: x0, y0, width, height of the crop, then cx0, cy0, cx1, cy1 of its centre.
    geometry = np.concatenate([lo, size, c0, c1], axis=1).T.astype(np.int64)
    # Each crop takes an even number of canvas rows with at least one zero row below it; canvas
    # rows and columns past a crop read frame pixels up to two rows and a width further (masked
    # out), hence the padding.
    slot = ((geometry[3] + 2) // 2) * 2
    buf = _padded_bytes(frames, pad=3 * fw)
    ends = np.cumsum(slot * int(geometry[2].max()))
    start = 0
    while start < len(rows):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + _CANVAS_PIXELS, side="right")))
        part = rows[start:stop]
        out[part], colours[part] = _refine_chunk(buf, fh, fw, fi[part], geometry[:, start:stop], slot[start:stop], out[part])
        start = stop
    return out, colours


def _refine_chunk(
    buf: np.ndarray,
    fh: int,
    fw: int,
    fi: np.ndarray,
    geometry: np.ndarray,
    slot: np.ndarray,
    boxes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Refined boxes of crops at least 3x3 and their packed object colours; geometry rows: x0,
    y0, w, h, cx0, cy0, cx1, cy1."""
    import cv2

    x0, y0, cw, ch, cx0, cy0, cx1, cy1 = geometry
    k = len(fi)
    width = int(cw.max())
    # Canvas row r belongs to crop crop_of[r] and is its row r - top[crop_of[r]].
    top = np.cumsum(slot) - slot
    crop_of = np.repeat(np.arange(k), slot)
    r = np.arange(len(crop_of)) - top[crop_of]
    first = ((fi * fh + y0)[crop_of] + r) * fw + x0[crop_of]
    canvas = _pixel_rows(buf, first, width)
    flat = canvas.reshape(-1)
    # The border, each pixel once: top and bottom rows, then the left and right columns between.
    one, down = np.ones(k, dtype=np.int64), np.full(k, width, dtype=np.int64)
    owner, idx = _runs(
        np.concatenate([top * width, (top + ch - 1) * width, (top + 1) * width, (top + 1) * width + cw - 1]),
        np.concatenate([cw, cw, ch - 2, ch - 2]),
        np.concatenate([one, one, down, down]),
    )
    owner %= k
    background = _modes(owner, flat[idx], k)
    # The central half, row by row.
    ncol = cx1 - cx0
    owner, j = _runs(np.zeros(k, dtype=np.int64), (cy1 - cy0) * ncol, one)
    centre = (top + cy0)[owner] * width + cx0[owner] + (j // ncol[owner]) * width + j % ncol[owner]
    values = flat[centre]
    inner = values != background[owner]
    colour = _modes(owner[inner], values[inner], k)
    found = np.where(colour >= 0, colour, background)
    # colour is -1 where the centre holds only background: no packed pixel equals it.
    mask = canvas == colour[crop_of][:, None]
    mask &= np.arange(width) < np.where(r < ch[crop_of], cw[crop_of], 0)[:, None]
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    votes = np.bincount(labels.reshape(-1)[centre], minlength=len(stats))
    votes[0] = 0
    voted = np.flatnonzero(votes)
    if not len(voted):
        return boxes, found
    # Per crop the region with the most votes, ties to the lowest label (as argmax in refine_boxes).
    region_crop = crop_of[stats[voted, cv2.CC_STAT_TOP]]
    best = np.lexsort((voted, -votes[voted], region_crop))
    head = np.ones(len(best), dtype=bool)
    head[1:] = region_crop[best[1:]] != region_crop[best[:-1]]
    best = best[head]
    won, label = region_crop[best], voted[best]
    # A region from edge to edge of its crop is scenery, not the object: those boxes stay.
    inside = (stats[label, cv2.CC_STAT_WIDTH] < cw[won]) & (stats[label, cv2.CC_STAT_HEIGHT] < ch[won])
    won, label = won[inside], label[inside]
    out = boxes.copy()
    out[won, 0] = x0[won] + stats[label, cv2.CC_STAT_LEFT].astype(np.float64)
    out[won, 1] = y0[won] + (stats[label, cv2.CC_STAT_TOP] - top[won]).astype(np.float64)
    out[won, 2] = stats[label, cv2.CC_STAT_WIDTH]
    out[won, 3] = stats[label, cv2.CC_STAT_HEIGHT]
    return out, found
