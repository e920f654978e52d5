"""Detection quality: P / R / F1 and IoU against OCAtari RAM truth, ours beside OCAtari vision.

``moc-envs bench detection [--games Pong Boxing Skiing] [--steps 1500] [--quick]``

For each game, frames are played with two policies (uniformly random, and a
scripted RAM-reading policy that reaches later states, see
:mod:`benchmarks.scripted`) in one ALE v5 env. On every frame:

- truth: OCAtari RAM mode (HUD on, then HUD objects dropped), objects of the
  game spec's moving categories that RAM mode also reports with the HUD off (with
  the HUD on, OCAtari's MsPacman adds the level's fruit icon in the bottom bar as
  a Fruit not flagged HUD);
- ``learned``: our SPACE+MOC detector (``weights/<Game>``) on the frame, all
  its boxes (class-agnostic), or "not available: no weights for <Game>";
- ``OCAtari vision``: OCAtari's vision mode on the same frame, same categories;
- ``RAM oracle (sanity)``: moc_envs' RamDetector, which reads the same RAM
  extraction; it should score 1.0 and checks the plumbing, it is not a result.

Matching is class-agnostic: Hungarian on box centres, a pair counts when the
centres are closer than 5 frame pixels (OCAtari's criterion, as in
trainers.evaluate.metrics); IoU is the mean IoU of the matched pairs. Writes
``detection.json`` / ``.md`` / ``.png``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    add_common_args,
    bar_plot,
    learned_weights,
    markdown_table,
    not_available,
    torch_threads,
    write_results,
)
from benchmarks.scripted import scripted_policy
from trainers.data.ground_truth import vision_step
from trainers.evaluate import detection_metrics
from trainers.evaluate.metrics import OCATARI_MAX_DIST

__all__ = ["match_pairs", "box_iou", "score_frames", "collect", "run", "main"]

MAX_DIST = OCATARI_MAX_DIST
"""Centre distance (frame pixels) under which a prediction matches a truth box (OCAtari)."""

VISION_ANCHOR_F1 = {"Pong": 1.0, "Boxing": 0.83, "Skiing": 0.955, "Freeway": 0.967, "MsPacman": 0.84}
"""OCAtari's published vision-vs-RAM F1 (anchors.md)."""


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired (x, y, w, h) boxes, shape (K, 4) each -> (K,)."""
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def match_pairs(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of box centres; (pred indexes, gt indexes) of pairs closer than ``MAX_DIST``.

    The trainers' matcher with OCAtari's criterion, so that benchmark and evaluation agree.
    """
    return detection_metrics.match_pairs(pred, gt, "ocatari")


def score_frames(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], huds: Sequence[np.ndarray] | None = None
) -> dict[str, float | int]:
    """Precision, recall, F1, mean IoU of matched pairs and counts over frames.

    An unmatched prediction on a HUD box of ``huds`` (a score digit: a real
    object we do not score) is set aside as ``hud_predictions``, not counted as
    a false positive, as trainers.evaluate.metrics does.
    """
    tp = fp = fn = on_hud = 0
    ious: list[np.ndarray] = []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        p = np.asarray(p, dtype=np.float64).reshape(-1, 4)
        g = np.asarray(g, dtype=np.float64).reshape(-1, 4)
        r, c = match_pairs(p, g)
        rest = np.setdiff1d(np.arange(len(p)), r)
        if huds is not None and len(rest) and len(huds[i]):
            hr, _ = match_pairs(p[rest], huds[i])
            on_hud += len(hr)
            rest = np.delete(rest, hr)
        tp += len(r)
        fp += len(rest)
        fn += len(g) - len(r)
        if len(r):
            ious.append(box_iou(p[r], g[c]))
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = float(np.concatenate(ious).mean()) if ious else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou, "tp": tp, "fp": fp, "fn": fn,
            "hud_predictions": on_hud, "frames": len(preds)}


def _boxes(objects: Sequence[Any], keep: frozenset[str] | None, hud: bool = False) -> np.ndarray:
    """Boxes of the non-HUD objects of ``keep`` categories, or (``hud=True``) of the HUD objects."""
    out = []
    for o in objects:
        if not o or bool(getattr(o, "hud", False)) != hud or (keep is not None and o.category not in keep):
            continue
        x, y, w, h = (float(v) for v in o.xywh)
        if w > 0 and h > 0:
            out.append((x, y, w, h))
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def _in_play(boxes: np.ndarray, play: np.ndarray) -> np.ndarray:
    """The rows of ``boxes`` that are also in ``play`` (same box within half a pixel)."""
    if not len(boxes) or not len(play):
        return boxes[:0]
    same = (np.abs(boxes[:, None, :] - play[None, :, :]) <= 0.5).all(axis=2).any(axis=1)
    return boxes[same]


def _det_boxes(dets: Sequence[Any]) -> np.ndarray:
    return np.array([(d.x, d.y, d.w, d.h) for d in dets], dtype=np.float64).reshape(-1, 4)


def _vision_objects(init_objects: Callable[..., list[Any]], game: str) -> list[Any]:
    """OCAtari's vision-mode object list for ``game``, with its HUD objects where it can build them.

    OCAtari 2.2.1 is inconsistent here: Pong's vision code needs the HUD objects (without them
    it fails while detecting), while Freeway's HUD classes fail to build (``super().hud = True``).
    Only the spec's moving categories are scored, so the HUD-less list serves where the other
    cannot be built.
    """
    try:
        return init_objects(game, True, vision=True)
    except AttributeError:
        return init_objects(game, False, vision=True)


def collect(game: str, policy: str, steps: int, seed: int) -> dict[str, Any]:
    """Play ``steps`` steps; per frame: the frame, truth, OCAtari vision and RAM-oracle boxes."""
    from ocatari.ram.extract_ram_info import detect_objects_ram, init_objects
    from ocatari.vision.extract_vision_info import detect_objects_vision

    from moc_envs.envs.registration import make_ale_env
    from moc_envs.games import get_game
    from moc_envs.perception.frames import frame_source
    from moc_envs.perception.ram_detector import RamDetector

    spec = get_game(game)
    importlib.import_module(f"ocatari.vision.{spec.name.lower()}")
    keep = frozenset(spec.category_names)
    env = make_ale_env(spec)
    ale = env.unwrapped.ale  # type: ignore[attr-defined]
    frame_of = frame_source(env)  # the frame the env's detector sees (max of two for flicker games)
    n_actions = int(env.action_space.n)
    rng = np.random.default_rng(seed)
    scripted = scripted_policy(spec.name, n_actions, seed) if policy == "scripted" else None
    if policy == "scripted" and scripted is None:
        raise ValueError(f"no scripted policy for {spec.name}")
    oracle = RamDetector(spec)
    frames, truth, hud, vision, ram_oracle = [], [], [], [], []
    episodes, returns, ret = 0, [], 0.0
    vision_refused = 0

    def start(s: int | None) -> tuple[list[Any], list[Any], list[Any]]:
        env.reset(seed=s)
        oracle.reset(0)
        return init_objects(spec.name, True), init_objects(spec.name, False), _vision_objects(init_objects, spec.name)

    gt_objs, play_objs, vis_objs = start(seed)
    try:
        for _ in range(steps):
            frame, ram = frame_of(), ale.getRAM()
            detect_objects_ram(gt_objs, ram, spec.name, True)
            detect_objects_ram(play_objs, ram, spec.name, False)
            vision_ok = vision_step(detect_objects_vision, vis_objs, frame, spec.name, True)
            vision_refused += not vision_ok
            dets = oracle.detect(frame[None], ram[None])[0]
            frames.append(frame)
            truth.append(_in_play(_boxes(gt_objs, keep), _boxes(play_objs, keep)))
            hud.append(_boxes(gt_objs, None, hud=True))
            vision.append(_boxes(vis_objs, keep) if vision_ok else np.zeros((0, 4)))
            ram_oracle.append(_det_boxes(dets))
            action = scripted(ram, dets) if scripted else int(rng.integers(n_actions))
            _, r, term, trunc, _ = env.step(action)
            ret += float(r)
            if term or trunc:
                episodes += 1
                returns.append(ret)
                ret = 0.0
                gt_objs, play_objs, vis_objs = start(None)
    finally:
        env.close()
    return {
        "frames": np.stack(frames),
        "truth": truth,
        "hud": hud,
        "vision": vision,
        "vision_refused": vision_refused,
        "ram_oracle": ram_oracle,
        "episodes_finished": episodes,
        "mean_return_finished": float(np.mean(returns)) if returns else None,
        "return_so_far": ret,
    }


def _learned(game: str, frames: np.ndarray, device: str, batch: int = 64) -> tuple[list[np.ndarray], dict[str, int]]:
    """The learned detector's boxes per frame, and how many detections of each category without
    an observation slot were set aside: with a classifier, what the observation leaves out
    ('unknown', Breakout's brick pieces); the truth and vision keep only the game's categories
    too. Without a classifier every box counts (its category is a placeholder)."""
    from moc_envs.perception.detectors import make_detector

    det = make_detector("space", game, device, allow_unclassified=True)
    slots = frozenset(det.game.category_names)
    out: list[np.ndarray] = []
    aside: dict[str, int] = {}
    for lo in range(0, len(frames), batch):
        for dets in det.detect(np.ascontiguousarray(frames[lo : lo + batch])):
            kept = []
            for d in dets:
                if det.classifier is None or d.category in slots:
                    kept.append(d)
                else:
                    aside[d.category] = aside.get(d.category, 0) + 1
            out.append(_det_boxes(kept))
    return out, aside


def run(
    games: Sequence[str], steps: int, seed: int = 0, device: str = "auto", out: Path | None = None
) -> dict[str, Any]:
    """Score every detector on every game and policy; write the files when ``out`` is set."""
    from tqdm import tqdm

    from moc_envs.games import get_game

    rows: list[dict[str, Any]] = []
    for game in games:
        name = get_game(game).name
        weights = learned_weights(name)
        for policy in ("random", "scripted"):
            data = collect(name, policy, steps, seed)
            play = {
                "episodes_finished": data["episodes_finished"],
                "mean_return_finished": data["mean_return_finished"],
            }
            base = {"game": name, "policy": policy, "objects": int(sum(len(g) for g in data["truth"])), **play}
            if weights is not None:
                preds, aside = _learned(name, data["frames"], device)
                note = "; ".join(f"{n:,} {c} detections set aside (no observation slot)" for c, n in sorted(aside.items()))
                rows.append({**base, "detector": "learned (SPACE+MOC)", **score_frames(preds, data["truth"], data["hud"]),
                             "set_aside": aside, "note": note})
            else:
                rows.append({**base, "detector": "learned (SPACE+MOC)", "note": not_available(name)})
            vision_note = [f"published F1 {VISION_ANCHOR_F1[name]:.3f}"] if name in VISION_ANCHOR_F1 else []
            if data["vision_refused"]:
                vision_note.append(f"vision raised on {data['vision_refused']:,} frames, scored as finding nothing")
            rows.append({**base, "detector": "OCAtari vision", **score_frames(data["vision"], data["truth"], data["hud"]),
                         "vision_refused": data["vision_refused"], "note": "; ".join(vision_note)})
            rows.append({**base, "detector": "RAM oracle (sanity)", **score_frames(data["ram_oracle"], data["truth"], data["hud"]),
                         "note": "same RAM extraction as the truth: plumbing check, not a result"})
            tqdm.write(f"detection: {name} {policy} done")
    result = {"games": list(games), "steps_per_policy": steps, "max_centre_distance_px": MAX_DIST, "rows": rows}
    if out is not None:
        _write(result, out)
    return result


def _write(result: dict[str, Any], out: Path) -> None:
    table = markdown_table(
        ["game", "policy", "detector", "precision", "recall", "F1", "mean IoU", "truth objects", "on HUD", "note"],
        [
            (r["game"], r["policy"], r["detector"], r.get("precision"), r.get("recall"), r.get("f1"),
             r.get("iou"), r["objects"], r.get("hud_predictions"), r["note"])
            for r in result["rows"]
        ],
    )
    play = markdown_table(
        ["game", "policy", "episodes finished", "mean return of finished episodes"],
        sorted({(r["game"], r["policy"], r["episodes_finished"], r["mean_return_finished"]) for r in result["rows"]}),
    )
    body = (
        f"{result['steps_per_policy']} frames per game and policy, the same frames for every detector. "
        "Truth: OCAtari RAM mode, the game spec's moving (non-HUD) categories, objects RAM mode reports with its HUD off too "
        "(with it on, MsPacman's bottom-bar fruit icon is a Fruit). Class-agnostic "
        f"Hungarian matching of box centres closer than {MAX_DIST:g} px (OCAtari's criterion); "
        "IoU averaged over matched pairs. Unmatched predictions on HUD objects (score digits) "
        "are set aside, not counted as false positives (column `on HUD`), as in trainers.evaluate.metrics; so are "
        "learned detections the observation has no slot for ('unknown', or a category beyond the game's; noted per row). "
        "Scripted policies read the RAM oracle's objects (benchmarks/scripted.py: Pong tracks the ball, "
        "Boxing walks beside the enemy and punches, Skiing steers toward the next gate, Freeway's chicken "
        "waits for gaps, Breakout keeps the paddle under the ball, Tennis follows the ball's shadow, SpaceInvaders' and Carnival's cannons shoot, Ms. Pac-Man tours the maze away from the ghosts, Seaquest's submarine hunts at depth and surfaces for air, Asterix collects in lanes free of enemies), "
        "10% random actions.\n\n"
        f"{table}\n\nPlay statistics:\n\n{play}\n\n![F1 per detector](detection.png)\n"
    )
    scored = [r for r in result["rows"] if r.get("f1") is not None]
    bar_plot(
        out / "detection.png",
        [f"{r['game']} {r['policy']}: {r['detector']}" for r in scored],
        [r["f1"] for r in scored],
        "F1 (centre distance < 5 px)",
        "Detection F1 against OCAtari RAM truth",
    )
    write_results(out, "detection", result, body, "Detection quality benchmark")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench detection",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--games", nargs="+", default=None,
                   help="games to score (default: Pong Boxing Skiing and every game with weights)")
    p.add_argument("--steps", type=int, default=1500, help="frames per game and policy")
    args = p.parse_args(argv)
    torch_threads(args.threads)
    from moc_envs.games import game_names

    shipped = [g for g in game_names() if learned_weights(g) is not None]
    games = args.games or ["Pong", "Boxing", "Skiing"] + [g for g in shipped if g not in ("Pong", "Boxing", "Skiing")]
    if args.quick:
        args.steps = 40
    result = run(games, args.steps, args.seed, args.device, args.out)
    for r in result["rows"]:
        f1 = "-" if r.get("f1") is None else f"{r['f1']:.3f}"
        print(f"{r['game']:<8} {r['policy']:<9} {r['detector']:<22} F1 {f1:>6} {r['note']}")
    return result


if __name__ == "__main__":
    main()
