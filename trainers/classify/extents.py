"""Fit each category's extents: the box sizes it takes, and its position on an axis the game fixes.

    moc-envs extents --game Seaquest --weights weights/Seaquest [--frames 400] [--seeds 5000 5001]

A classifier names a box by its z_what alone, so a box of the right texture in the wrong place
or of the wrong size gets a category: Seaquest's oxygen bar is named Player, Breakout's hole in
the wall too, and the single Player slot shows it. This plays the game with random actions
(the training data's policy, on seeds of its own: nothing here sees the held-out evaluation's
policies), runs the weights folder's detector on windows of frames spread over long play
(:func:`trainers.evaluate.held_out.play`), and keeps the boxes the classifier named as OCAtari's
RAM truth does (category-aware, the references' relative criterion). Per category:

- width and height: from the ``quantile`` to the ``1 - quantile`` of the kept boxes, divided and
  multiplied by ``size_factor``, one pixel more each side;
- centre x and centre y: bounded only where the kept boxes' centres span less than
  ``fixed_span`` pixels on that axis (SpaceInvaders' cannon row, Pong's paddle columns), then to
  that span plus ``position_margin`` each side. Random play does not take objects everywhere they
  go later, so a roaming axis stays unbounded.

Categories with fewer than ``min_boxes`` kept boxes get no extents. HUD regions: the pixels that
OCAtari's HUD objects (scores, lives, Seaquest's oxygen bar) cover on at least ``hud_share`` of the
frames, grouped into connected rectangles, each grown by a pixel; a category with a correctly named
box that reaches into a region or within ``margin`` (4) pixels of it is exempt from it. A category
whose boxes were right less than a quarter of the time (over 30 boxes or more) is withheld: the
classifier never names it, since an empty slot says less than a wrong one. RAM supervises this as it
does the classifier's few labels; at run time nothing reads RAM. The extents go into the folder's
``classifier.json`` (:class:`moc_envs.perception.classifier.ZWhatClassifier`), whose manifest
entry is refreshed; a detection outside them is ``"unknown"`` and fills no slot.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.games import get_game
from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH
from moc_envs.threads import add_threads_argument, set_torch_threads

__all__ = ["NamedBoxes", "collect_named_boxes", "fit_extents", "fit_hud_regions", "withheld_categories", "write_extents", "main"]

DEFAULT_SEEDS = (5000, 5001)
"""Seeds of the random play extents are fitted on (apart from every evaluation's)."""


@dataclass
class NamedBoxes:
    """What the fit reads off play: per category the (w, h, cx, cy) of boxes the detector named
    right, how often each pixel lay under a HUD object, and the frames read."""

    boxes: dict[str, np.ndarray]
    hud_cover: np.ndarray
    frames: int
    named: dict[str, int] = field(default_factory=dict)
    """Boxes the detector gave each category, right or wrong."""


def collect_named_boxes(
    game: str, weights: str | Path, frames: int = 400, seeds: Sequence[int] = DEFAULT_SEEDS, device: str = "cpu"
) -> NamedBoxes:
    """Play random seeds and read the named boxes and the HUD's cover (:class:`NamedBoxes`).

    The detector runs without any extents or HUD regions (so that earlier ones do not bias the fit).
    """
    from moc_envs.perception.detectors import make_detector
    from trainers.evaluate.detection_metrics import match_pairs
    from trainers.evaluate.held_out import PolicyRun, detect_all, play

    detector = make_detector("space", game, device, weights=str(weights))
    if detector.classifier is None:
        raise ValueError(f"{weights} has no classifier: fit one first (moc-envs classifier)")
    detector.classifier.extents = {}
    detector.classifier.hud_regions = []
    named: dict[str, list[tuple[float, float, float, float]]] = {}
    cover = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), np.int64)
    given: dict[str, int] = {}
    total = 0
    for seed in seeds:
        rec = play(game, PolicyRun("random", int(seed)), frames)
        total += len(rec.records)
        for (boxes, cats), r in zip(detect_all(detector, rec.frames), rec.records, strict=True):
            for x, y, w, h in r.hud.tolist():
                cover[max(int(y), 0) : max(int(np.ceil(y + h)), 0), max(int(x), 0) : max(int(np.ceil(x + w)), 0)] += 1
            for c in cats:
                given[c] = given.get(c, 0) + 1
            rows, cols = match_pairs(boxes, r.truth, "relative")
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                if cats[i] == r.truth_cats[j]:
                    x, y, w, h = boxes[i]
                    named.setdefault(cats[i], []).append((w, h, x + w / 2, y + h / 2))
    return NamedBoxes({c: np.array(v, np.float64) for c, v in named.items()}, cover, total, given)


def fit_extents(
    named: dict[str, np.ndarray] | NamedBoxes,
    quantile: float = 0.0,
    size_factor: float = 1.5,
    fixed_span: float = 12.0,
    position_margin: float = 6.0,
    min_boxes: int = 30,
) -> dict[str, dict[str, list[float | None]]]:
    """Extents per category from its correctly named boxes (module docstring)."""
    if not 0.0 <= quantile < 0.5 or size_factor < 1.0 or fixed_span < 0 or position_margin < 0 or min_boxes < 1:
        raise ValueError(
            "need 0 <= quantile < 0.5, size_factor >= 1, fixed_span >= 0, position_margin >= 0 and min_boxes >= 1, got "
            f"{quantile}, {size_factor}, {fixed_span}, {position_margin}, {min_boxes}"
        )
    out: dict[str, dict[str, list[float | None]]] = {}
    by_cat = named.boxes if isinstance(named, NamedBoxes) else named
    for cat, rows in sorted(by_cat.items()):
        if len(rows) < min_boxes:
            continue
        lo, hi = np.quantile(rows, quantile, axis=0), np.quantile(rows, 1.0 - quantile, axis=0)
        bounds: dict[str, list[float | None]] = {
            "w": [round(max(lo[0] / size_factor - 1.0, 0.0), 2), round(hi[0] * size_factor + 1.0, 2)],
            "h": [round(max(lo[1] / size_factor - 1.0, 0.0), 2), round(hi[1] * size_factor + 1.0, 2)],
        }
        for k, key in ((2, "cx"), (3, "cy")):
            if hi[k] - lo[k] < fixed_span:
                bounds[key] = [round(lo[k] - position_margin, 2), round(hi[k] + position_margin, 2)]
        out[cat] = bounds
    return out


def fit_hud_regions(named: NamedBoxes, hud_share: float = 0.01, margin: float = 4.0) -> list[dict[str, Any]]:
    """HUD rectangles and the categories exempt from each (module docstring)."""
    import cv2

    if not 0.0 < hud_share <= 1.0:
        raise ValueError(f"hud_share must be in (0, 1], got {hud_share}")
    mask = (named.hud_cover >= max(hud_share * named.frames, 1)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions = []
    for k in range(1, n):
        x, y, w, h = (int(v) for v in stats[k, :4])
        box = [x - 1.0, y - 1.0, x + w + 1.0, y + h + 1.0]
        # A category whose boxes reach into the region, or come within ``margin`` pixels of it,
        # may cross it (Skiing's trees scroll up under the clock): it stays named there.
        lo_x, lo_y, hi_x, hi_y = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
        exempt = sorted(
            c for c, rows in named.boxes.items()
            if ((rows[:, 2] + rows[:, 0] / 2 >= lo_x) & (rows[:, 2] - rows[:, 0] / 2 <= hi_x)
                & (rows[:, 3] + rows[:, 1] / 2 >= lo_y) & (rows[:, 3] - rows[:, 1] / 2 <= hi_y)).any()
        )  # fmt: skip
        regions.append({"box": box, "exempt": exempt})
    return regions


def withheld_categories(
    named: NamedBoxes, promised: Sequence[str], min_precision: float = 0.25, min_boxes: int = 30
) -> list[str]:
    """Categories of ``promised`` (the game's slots: the only ones the truth holds) whose boxes were
    right less than ``min_precision`` of the time (over at least ``min_boxes`` boxes) in the fit's
    play: the classifier will not name them. Categories without a slot (MsPacman's pills) keep
    their names in ``info["objects"]``."""
    out = []
    for c, n in sorted(named.named.items()):
        if c not in promised or n < min_boxes:
            continue
        right = len(named.boxes.get(c, ()))
        if right / n < min_precision:
            out.append(c)
    return out


def write_extents(
    weights: str | Path,
    game: str,
    extents: dict[str, Any],
    details: dict[str, Any],
    hud_regions: list[dict[str, Any]] | None = None,
    withheld: Sequence[str] = (),
) -> Path:
    """Put ``extents`` and ``hud_regions`` into the folder's classifier (``classifier.json``) and refresh its manifest."""
    from moc_envs.perception.classifier import (
        CLASSIFIER_FILE,
        CLASSIFIER_JSON,
        load_classifier,
        save_classifier,
    )
    from moc_envs.weights.manifest import refresh_manifest

    name = get_game(game).name
    clf = load_classifier(weights, name)
    clf.extents = extents
    clf.hud_regions = list(hud_regions or [])
    clf.withheld = tuple(c for c in withheld if c in clf.classes)
    clf.__post_init__()  # validates the extents against the classes
    clf.info = {**clf.info, "extents_fit": details}
    path = save_classifier(clf, weights, name)
    refresh_manifest(Path(weights), name, [CLASSIFIER_FILE, CLASSIFIER_JSON])
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs extents",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, help="game name, e.g. Seaquest")
    p.add_argument("--weights", required=True, help="weights folder with a detector and a classifier (weights/<Game>)")
    p.add_argument("--frames", type=int, default=400, help="recorded frames per seed of random play")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="seeds of the random play")
    p.add_argument("--quantile", type=float, default=0.0, help="size bounds from this quantile to 1 - it (0: the smallest and largest box)")
    p.add_argument("--size-factor", type=float, default=1.5, help="size bounds widened by this factor")
    p.add_argument("--fixed-span", type=float, default=12.0, help="an axis whose centres span less than this (px) is bounded")
    p.add_argument("--position-margin", type=float, default=6.0, help="pixels added each side of a bounded axis")
    p.add_argument("--hud-share", type=float, default=0.01, help="HUD regions: pixels under a HUD object on this share of frames")
    p.add_argument("--device", default="cpu", help="torch device")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    try:
        named = collect_named_boxes(args.game, args.weights, args.frames, args.seeds, args.device)
        extents = fit_extents(named, args.quantile, args.size_factor, args.fixed_span, args.position_margin)
        regions = fit_hud_regions(named, args.hud_share)
        withheld = withheld_categories(named, get_game(args.game).category_names)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    details = {
        "policy": "random", "seeds": list(args.seeds), "frames": named.frames,
        "named_boxes": {c: len(v) for c, v in named.boxes.items()}, "boxes_given": named.named, "withheld": withheld,
        "quantile": args.quantile, "hud_share": args.hud_share,
        "size_factor": args.size_factor, "fixed_span": args.fixed_span, "position_margin": args.position_margin,
    }  # fmt: skip
    path = write_extents(args.weights, args.game, extents, details, regions, withheld)
    report = {"game": args.game, "file": str(path), "extents": extents, "hud_regions": regions, **details}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
