"""Training settings derived from a game's unlabelled frames instead of tuned by hand per game.

Every function here reads frames or motion boxes, never labels (the classifier's options, which
are chosen with the handful of labelled predictions the classifier is fitted on anyway, are
:mod:`trainers.classify.options`).

- :func:`hud_bands`: horizontal bands at the top or bottom of the screen whose pixels change in
  place (scores, clocks, lives) and that no moving object crosses; the dataset builder leaves
  them out of the motion targets (what :data:`trainers.data.motion.HUD_REGIONS` holds by hand for
  Pong, Boxing and Skiing).
- :func:`z_scale_prior_mean`: the mean of the z_scale prior from the motion boxes' sizes (what
  :mod:`trainers.detector.config` holds as a per-game table and ``--z-scale-mean`` overrode for Skiing).
- :func:`max_box`: the largest box the env keeps (what ``--max-box-margin 2`` of
  :mod:`trainers.evaluate.export` wrote for Skiing).

All but :func:`motion_box_sizes` (which reads a dataset split) are pure functions of arrays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.model.geometry import FRAME_H, FRAME_W

__all__ = [
    "RowRun",
    "HudSettings",
    "motion_runs",
    "shifted_change",
    "hud_bands_from_runs",
    "hud_bands",
    "Z_SCALE_SPAN",
    "z_scale_prior_mean",
    "MAX_BOX_MARGIN",
    "MAX_BOX_QUANTILE",
    "max_box",
    "motion_box_sizes",
]


# ---------------------------------------------------------------------------- HUD bands
@dataclass(frozen=True)
class RowRun:
    """Consecutive screen rows with motion: rows ``y0 <= y < y1`` and how their motion looks."""

    y0: int
    y1: int
    activity: float
    """Mean over the run's rows of the share of frames with a moving pixel in the row."""
    footprint: float
    """Share of the screen's columns where the run moves in at least two frames."""
    change_rate: float | None = None
    """Share of consecutive frame pairs whose pixels differ in the run (measured on HUD candidates)."""
    shift_share: float | None = None
    """Share of those changes that a shift of up to a few pixels explains: something moved."""

    def as_json(self) -> dict[str, Any]:
        """Plain-JSON form (for the run's state and the card)."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "rows": [self.y0, self.y1], "activity": r(self.activity), "footprint": r(self.footprint),
            "change_rate": r(self.change_rate), "shift_share": r(self.shift_share),
        }  # fmt: skip


@dataclass(frozen=True)
class HudSettings:
    """Thresholds of :func:`hud_bands`, measured on 11 games' random play.

    HUD runs (scores, clocks, lives) had footprints of 0.06-0.23 and play runs 0.42 and more;
    the one narrow run that moves, SpaceInvaders' player at the bottom edge (0.28), changes in
    two of three frame pairs and a shift explains half of those, where a clock's digits (Skiing's
    changes every frame) are never explained by a shift.
    """

    quiet: float = 0.02
    """A row moving in fewer than this share of frames is still (runs split there)."""
    min_activity: float = 0.1
    """A HUD run changes in at least this share of frames (rarer changes hardly pollute the targets)."""
    max_footprint: float = 0.3
    """A HUD run moves in at most this share of the columns: digits and icons at fixed places."""
    moving_change_rate: float = 0.1
    """A run that changes in at least this share of frame pairs ..."""
    moving_shift_share: float = 0.25
    """... and whose changes a shift explains this often holds a moving object: not a HUD."""
    max_shift: int = 8
    """Largest shift (pixels, either axis) tried between two consecutive frames."""
    max_edge_distance: int = 32
    """The first HUD run starts within this many rows of the screen's edge."""
    max_gap: int = 8
    """Further HUD runs follow the previous one within this many still rows (score, then clock)."""
    max_fraction: float = 0.25
    """A band covers at most this share of the screen's height."""
    margin: int = 2
    """Still rows added beyond a band's last moving row (at most half the gap to the next run)."""

    def is_hud(self, run: RowRun) -> bool:
        """Whether a run looks like a HUD: it changes often, at a few fixed places, nothing moves."""
        moving = (run.change_rate or 0.0) >= self.moving_change_rate and (run.shift_share or 0.0) >= self.moving_shift_share
        return run.activity >= self.min_activity and run.footprint <= self.max_footprint and not moving


def motion_runs(moving: np.ndarray, quiet: float = HudSettings.quiet) -> list[RowRun]:
    """Runs of consecutive rows whose pixels move in at least ``quiet`` of the frames.

    ``moving``: (N, H, W) bool moving pixels of N frames (:func:`trainers.data.motion.motion_pixels`).
    """
    moving = np.asarray(moving, bool)
    if moving.ndim != 3 or len(moving) == 0:
        raise ValueError(f"moving must be a non-empty (N, H, W) array, got shape {moving.shape}")
    activity = moving.any(axis=2).mean(axis=0)
    runs: list[RowRun] = []
    y, height = 0, moving.shape[1]
    while y < height:
        if activity[y] < quiet:
            y += 1
            continue
        start = y
        while y < height and activity[y] >= quiet:
            y += 1
        # Two frames, not one: a single event (one bullet) does not widen a run's footprint.
        columns = moving[:, start:y].sum(axis=(0, 1)) >= 2
        runs.append(RowRun(start, y, float(activity[start:y].mean()), float(columns.mean())))
    return runs


def shifted_change(prev: np.ndarray, cur: np.ndarray, y0: int, y1: int, max_shift: int = 8) -> bool | None:
    """Whether the change from frame ``prev`` to ``cur`` (H, W, C) within rows ``y0:y1`` is a shift.

    None when nothing changed there. Otherwise True when some shift of ``prev`` by up to
    ``max_shift`` pixels (either axis) matches the changed region of ``cur`` with fewer than half
    the mismatches of no shift: an object moved, rather than digits changing in place.
    """
    diff = (prev[y0:y1] != cur[y0:y1]).any(axis=-1)
    if not diff.any():
        return None
    ys, xs = np.nonzero(diff)
    height, width = cur.shape[:2]
    top, bottom = y0 + int(ys.min()), y0 + int(ys.max()) + 1
    left, right = max(int(xs.min()) - max_shift, 0), min(int(xs.max()) + 1 + max_shift, width)
    target = cur[top:bottom, left:right]
    best = None
    still = int((prev[top:bottom, left:right] != target).any(axis=-1).sum())
    for dy in range(-max_shift, max_shift + 1):
        if top - dy < 0 or bottom - dy > height:
            continue
        for dx in range(-max_shift, max_shift + 1):
            if (dy == 0 and dx == 0) or left - dx < 0 or right - dx > width:
                continue
            source = prev[top - dy : bottom - dy, left - dx : right - dx]
            mismatches = int((source != target).any(axis=-1).sum())
            best = mismatches if best is None else min(best, mismatches)
    return best is not None and best < 0.5 * still


def _with_changes(run: RowRun, pairs: np.ndarray, max_shift: int) -> RowRun:
    """``run`` with its change rate and shift share measured on consecutive frame pairs."""
    changes = [shifted_change(p[0], p[1], run.y0, run.y1, max_shift) for p in pairs]
    changed = [c for c in changes if c is not None]
    rate = len(changed) / len(pairs)
    return dataclasses.replace(run, change_rate=rate, shift_share=sum(changed) / len(changed) if changed else 0.0)


def _edge_band(runs: list[RowRun], height: int, s: HudSettings) -> tuple[int, int] | None:
    """The band (y0, y1) grown from the top edge over ``runs`` (sorted top to bottom), or None."""
    last_end: int | None = None
    next_start = height
    for run in runs:
        gap = run.y0 - (0 if last_end is None else last_end)
        limit = s.max_edge_distance if last_end is None else s.max_gap
        if gap > limit or not s.is_hud(run) or run.y1 > s.max_fraction * height:
            next_start = run.y0
            break
        last_end = run.y1
    if last_end is None:
        return None
    margin = min(s.margin, (next_start - last_end) // 2)
    return 0, last_end + margin


def hud_bands_from_runs(runs: list[RowRun], height: int = FRAME_H, settings: HudSettings | None = None) -> list[tuple[int, int]]:
    """Row ranges ``(y0, y1)`` of the HUD bands at the top and bottom of a screen ``height`` rows high.

    From each edge, runs that look like a HUD (:meth:`HudSettings.is_hud`) join the band as long
    as they start near the edge, follow each other closely and keep the band within
    ``max_fraction`` of the screen; the first other run ends it.
    """
    s = settings or HudSettings()
    runs = sorted(runs, key=lambda r: r.y0)
    bands = []
    top = _edge_band(runs, height, s)
    if top is not None:
        bands.append(top)
    flipped = [dataclasses.replace(r, y0=height - r.y1, y1=height - r.y0) for r in reversed(runs)]
    bottom = _edge_band(flipped, height, s)
    if bottom is not None:
        y0, y1 = height - bottom[1], height - bottom[0]
        if top is None or y0 >= top[1]:
            bands.append((y0, y1))
    return bands


def hud_bands(
    pairs: np.ndarray, background: np.ndarray | None = None, settings: HudSettings | None = None
) -> tuple[list[tuple[int, int, int, int]], list[RowRun]]:
    """HUD bands of a game as ``(x, y, w, h)`` rectangles (the format of ``HUD_REGIONS``), and
    the motion runs they were chosen from.

    ``pairs``: (N, 2, 210, 160, 3) uint8, N pairs of consecutive frames of play (a few hundred
    from several episodes); ``background``: the frames' mode image (computed when None).
    """
    from trainers.data.motion import mode_image, motion_pixels

    pairs = np.asarray(pairs)
    if pairs.ndim != 5 or pairs.shape[1:] != (2, FRAME_H, FRAME_W, 3) or pairs.dtype != np.uint8 or not len(pairs):
        raise ValueError(f"pairs must be uint8 (N, 2, {FRAME_H}, {FRAME_W}, 3) with N >= 1, got {pairs.dtype} {pairs.shape}")
    frames = pairs.reshape(-1, FRAME_H, FRAME_W, 3)
    if background is None:
        background = mode_image(frames)
    s = settings or HudSettings()
    runs = motion_runs(motion_pixels(frames, background), s.quiet)
    # The shift test is the costly one: only for runs that otherwise look like a HUD.
    runs = [_with_changes(r, pairs, s.max_shift) if s.is_hud(r) else r for r in runs]
    bands = hud_bands_from_runs(runs, FRAME_H, s)
    return [(0, y0, FRAME_W, y1 - y0) for y0, y1 in bands], runs


# ---------------------------------------------------------------------------- box sizes
Z_SCALE_SPAN = 0.5
"""The z_scale prior anneals from ``end + Z_SCALE_SPAN`` to ``end``, as MOC's do (-2.0 -> -2.5,
-2.5 -> -3.0): boxes start about 1.6 times looser than the objects and tighten."""


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


Z_SCALE_QUANTILES = (0.1, 0.9)
"""The small and large end of the motion boxes' larger sides that the z_scale prior sits between."""


def z_scale_prior_mean(sizes: np.ndarray) -> tuple[float, float]:
    """(start, end) of the z_scale prior's pre-sigmoid mean from motion boxes' sizes.

    ``sizes``: (N, 2) widths and heights as fractions of the frame (a motion target's
    ``[sx, sy]``). SPACE's box side is sigmoid(z_scale) of the frame, and a box must cover its
    object along both axes, so the end value is the logit of a larger side fraction: the
    geometric mean of the :data:`Z_SCALE_QUANTILES` of the boxes' larger sides, so that a
    game of one object size gets that size and a game of two (Tennis: 2 px ball, 23 px
    players) gets a prior box that neither is more than a constant factor away from. The
    median alone follows whichever size is more common (Tennis' players) and costs the
    other its cells. The start lies :data:`Z_SCALE_SPAN` above. Rounded to 0.01.
    """
    sizes = np.asarray(sizes, np.float64)
    if sizes.ndim != 2 or sizes.shape[1] != 2 or len(sizes) == 0:
        raise ValueError(f"sizes must be a non-empty (N, 2) array of box fractions, got shape {sizes.shape}")
    if not np.isfinite(sizes).all() or (sizes <= 0).any():
        raise ValueError("sizes must be finite and > 0 (fractions of the frame)")
    small, large = np.quantile(sizes.max(axis=1), Z_SCALE_QUANTILES)
    side = float(np.sqrt(small * large))
    side = min(max(side, 1.0 / FRAME_H), 0.99)  # a box of one pixel to nearly the whole frame
    end = round(_logit(side), 2)
    return round(end + Z_SCALE_SPAN, 2), end


MAX_BOX_MARGIN = 2.0
"""``max_box`` is this multiple of the motion boxes' size quantile: room for SPACE's loose boxes
(about twice a small object's size)."""
MAX_BOX_QUANTILE = 0.999
"""Quantile of the motion boxes' sizes that ``max_box`` scales (the largest box is often a merge)."""


def max_box(
    sizes_px: np.ndarray,
    margin: float = MAX_BOX_MARGIN,
    quantile: float = MAX_BOX_QUANTILE,
    minimum: tuple[float, float] = (0.0, 0.0),
) -> tuple[float, float]:
    """``margin`` x the ``quantile`` of motion boxes' (width, height) in frame pixels, rounded to 0.1,
    and at least ``minimum`` (the env refuses a limit below one grid cell of the model: a game
    of thin objects, Breakout's 4-pixel-high paddle and ball, would lose nearly every box)."""
    sizes_px = np.asarray(sizes_px, np.float64)
    if sizes_px.ndim != 2 or sizes_px.shape[1] != 2 or len(sizes_px) == 0:
        raise ValueError(f"sizes_px must be a non-empty (N, 2) array of box sizes, got shape {sizes_px.shape}")
    if margin <= 0 or not 0.0 < quantile <= 1.0:
        raise ValueError(f"margin must be > 0 and quantile in (0, 1], got {margin} and {quantile}")
    w, h = np.quantile(sizes_px, quantile, axis=0)
    return round(max(float(w) * margin, minimum[0]), 1), round(max(float(h) * margin, minimum[1]), 1)


def motion_box_sizes(data: str | Path, split: str = "train") -> np.ndarray:
    """The (width, height) of every motion target box of a finished dataset split, as frame
    fractions (N, 2). Reads the two target arrays only, not the frames."""
    from trainers.data.storage import read_meta, read_npz, require_finished_split, split_file

    root = Path(data)
    meta = read_meta(root)
    require_finished_split(root, split, meta)
    z = read_npz(split_file(root, split), ("motion_pres", "motion_where"), root, meta["game"])
    pres, where = z["motion_pres"], z["motion_where"]
    if where.shape != (*pres.shape, 4):
        raise ValueError(f"motion_where {where.shape} does not fit motion_pres {pres.shape} in {split_file(root, split)}")
    return np.asarray(where[..., :2][pres > 0.5], np.float64)

