"""Evaluate a trained detector on a dataset split, beside OCAtari's vision mode.

    moc-envs evaluate --game Pong --weights weights/Pong --data data/Pong --split test
    moc-envs evaluate --game Pong --run runs/pong --data data/Pong     # a checkpoint

Scores, for "all" ground-truth objects (every non-HUD OCAtari object) and "moving" ones (non-HUD
objects whose box changed since the previous frame, the dataset's ``moved`` flag; still and
HUD objects are then ignored, not counted against the detector): AP over IoU 0.1..0.9, P/R/F1
with the centre-distance criteria and with IoU >= 0.5, the duplicate rate, counting accuracy
and recall per category (:mod:`trainers.evaluate.detection_metrics`), before and after duplicate
suppression and, when the split's full-size frames exist, after the boxes are tightened to
the pixels as the env does (:mod:`moc_envs.perception.postprocess`); category accuracy when a classifier is shipped with
the weights; latent quality of z_what (:mod:`trainers.evaluate.latent_metrics`). OCAtari's vision mode
runs on the same frames when the split's full-size frames exist (:mod:`trainers.data.raw_frames`).
Writes ``<out>/eval_<split>.json`` and ``.md`` (default out: the weights or run folder).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from moc_envs.perception.postprocess import (
    SuppressionConfig,
    refine_boxes,
    size_mask,
    suppress_duplicates,
)
from moc_envs.threads import add_threads_argument, set_torch_threads
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.manifest import refresh_manifest
from trainers.data.ground_truth import vision_step
from trainers.data.reader import GroundTruth, load_ground_truth, load_meta, load_split
from trainers.evaluate.detection_metrics import FrameSet, detection_report, match_pairs
from trainers.evaluate.latent_metrics import latent_report

__all__ = [
    "SUBSETS",
    "Predictions",
    "load_encoder",
    "predict_frames",
    "truth_z_what",
    "suppress",
    "drop_oversized",
    "max_box_of",
    "refine",
    "gt_frames",
    "frame_sets",
    "category_accuracy",
    "ocatari_vision",
    "evaluate",
    "to_markdown",
    "main",
]

SUBSETS = ("all", "moving")


@dataclass
class Predictions:
    """Per-frame predictions: boxes (P, 4) frame pixels, scores (P,), z_what (P, D), categories."""

    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    z_what: list[np.ndarray]
    categories: list[list[str]] | None = None
    refused: int = 0
    """Frames the detector refused (OCAtari vision raising), scored as finding nothing."""

    def __len__(self) -> int:
        return len(self.boxes)


def load_encoder(weights: str | Path | None, run: str | Path | None, game: str, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The inference encoder and its metadata, from exported weights or a run's checkpoint."""
    from moc_envs.games import get_game

    if (weights is None) == (run is None):
        raise ValueError("give exactly one of weights (an exported folder) or run (a training run)")
    if weights is not None:
        from moc_envs.perception.space_detector import SpaceDetector

        # The classifier is optional here: trainers.classify.classifier fits one from this very encoder.
        det = SpaceDetector.from_pretrained(Path(weights), get_game(game), device=device, allow_unclassified=True)
        return det.encoder, dict(det.meta)
    from trainers.detector.checkpoint import CHECKPOINT, load_checkpoint, load_model_from_run

    ckpt = load_checkpoint(Path(run) / CHECKPOINT)
    meta = {"game": ckpt["config"].get("game"), "step": int(ckpt["step"]), "train_config": ckpt["config"], "data": ckpt.get("data")}
    return load_model_from_run(Path(run), device=device).encoder, meta


def _model_input(chunk: np.ndarray, device: str) -> Any:
    """Model-size frames (B, 128, 128, 3) uint8 as the encoder's (B, 3, 128, 128) float input in [0, 1]."""
    import torch

    return torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def predict_frames(encoder: Any, frames: np.ndarray, device: str = "cpu", batch: int = 64, threshold: float = 0.5, progress: bool = False) -> Predictions:
    """Run the encoder on model-size frames (M, 128, 128, 3) uint8; all present cells, no suppression."""
    import torch

    from moc_envs.model.geometry import where_to_boxes

    encoder.eval()
    boxes, scores, zs = [], [], []
    for lo in tqdm(range(0, len(frames), batch), desc="detect", disable=not progress):
        chunk = np.ascontiguousarray(frames[lo : lo + batch])
        x = _model_input(chunk, device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            b_idx, prob, where, z_what = encoder.infer(x, threshold)
        bx = where_to_boxes(where.float()).cpu().numpy()
        b_idx = b_idx.cpu().numpy()
        prob = prob.float().cpu().numpy()
        z_what = z_what.float().cpu().numpy()
        for i in range(len(chunk)):
            sel = b_idx == i
            boxes.append(bx[sel])
            scores.append(prob[sel])
            zs.append(z_what[sel])
    return Predictions(boxes, scores, zs)


def truth_z_what(
    encoder: Any, frames: np.ndarray, boxes: Sequence[np.ndarray], device: str = "cpu", batch: int = 64, progress: bool = False
) -> list[np.ndarray]:
    """The glimpse encoder's z_what of every truth box: per frame, (K, z_what_dim) for its (K, 4) boxes.

    ``frames`` (M, 128, 128, 3) uint8 as :func:`predict_frames` takes them, ``boxes[i]`` frame i's
    boxes as (x, y, w, h) in frame pixels. Each box is cropped as if the detector had predicted it
    there, so the figure says how well z_what tells categories apart on every object, whether or
    not the model's z_pres finds it (a model that finds nothing still has a z_what to score).
    """
    import torch

    from moc_envs.model.geometry import boxes_to_where, crop_present_glimpses

    encoder.eval()
    out: list[np.ndarray] = []
    dim = int(encoder.cfg.z_what_dim)
    for lo in tqdm(range(0, len(frames), batch), desc="z_what at truth", disable=not progress):
        chunk = np.ascontiguousarray(frames[lo : lo + batch])
        sizes = [len(np.asarray(b).reshape(-1, 4)) for b in boxes[lo : lo + len(chunk)]]
        if not sum(sizes):
            out.extend(np.zeros((0, dim), np.float32) for _ in sizes)
            continue
        x = _model_input(chunk, device)
        flat = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes[lo : lo + len(chunk)]])
        where = boxes_to_where(torch.from_numpy(flat).float()).to(device)
        index = torch.repeat_interleave(torch.arange(len(chunk), device=device), torch.tensor(sizes, device=device))
        with torch.inference_mode():
            z, _ = encoder.glimpse_encoder(crop_present_glimpses(x, index, where, encoder.cfg.glimpse))
        out.extend(np.split(z.float().cpu().numpy(), np.cumsum(sizes)[:-1]))
    return out


def _take(pred: Predictions, keeps: list[np.ndarray]) -> Predictions:
    """The predictions reduced to the indices ``keeps[i]`` of each frame i."""
    out = Predictions([], [], [], None if pred.categories is None else [])
    for i, keep in enumerate(keeps):
        out.boxes.append(pred.boxes[i][keep])
        out.scores.append(pred.scores[i][keep])
        out.z_what.append(pred.z_what[i][keep])
        if pred.categories is not None and out.categories is not None:
            out.categories.append([pred.categories[i][k] for k in keep])
    return out


def suppress(pred: Predictions, config: SuppressionConfig | None = None) -> Predictions:
    """The predictions after duplicate suppression (one box per object)."""
    return _take(pred, [suppress_duplicates(pred.boxes[i], pred.scores[i], config) for i in range(len(pred))])


def max_box_of(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The detector's size limit (width, height in frame pixels) from its config, or None."""
    from moc_envs.perception.space_detector import read_max_box

    return read_max_box(meta)


def drop_oversized(pred: Predictions, max_box: tuple[float, float] | None) -> Predictions:
    """The predictions without boxes larger than ``max_box`` (what the env drops before suppression)."""
    if max_box is None:
        return pred
    return _take(pred, [np.flatnonzero(size_mask(b, max_box)) for b in pred.boxes])


def refine(pred: Predictions, raw: np.ndarray) -> Predictions:
    """The predictions with boxes tightened to the pixels of full-size frames ``raw`` (M, 210, 160, 3)."""
    if len(raw) != len(pred):
        raise ValueError(f"{len(raw)} full-size frames for {len(pred)} predicted frames")
    boxes = [refine_boxes(raw[i], b) if len(b) else b for i, b in enumerate(pred.boxes)]
    return Predictions(boxes, pred.scores, pred.z_what, pred.categories)


def gt_frames(gt: GroundTruth, stacks: int, T: int) -> dict[str, tuple[list, list, list]]:
    """Per subset, per frame: scored boxes, their categories, ignored boxes."""
    sets: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in SUBSETS}
    for s in range(stacks):
        for t in range(T):
            idx = gt.rows(s, t)
            box = np.stack([gt.x[idx], gt.y[idx], gt.w[idx], gt.h[idx]], axis=1).astype(np.float64)
            hud, moved, cats = gt.hud[idx], gt.moved[idx], gt.category[idx]
            for name, scored in (("all", ~hud), ("moving", ~hud & moved)):
                sets[name][0].append(box[scored])
                sets[name][1].append(cats[scored])
                sets[name][2].append(box[~scored])
    return sets


def frame_sets(pred: Predictions, gt_sets: dict[str, tuple[list, list, list]]) -> dict[str, FrameSet]:
    """One :class:`FrameSet` per ground-truth subset for these predictions."""
    return {name: FrameSet(pred.boxes, pred.scores, g, c, h) for name, (g, c, h) in gt_sets.items()}


def category_accuracy(fs: FrameSet, categories: list[list[str]]) -> dict[str, Any]:
    """Accuracy of predicted categories on predictions matched to an object (relative criterion)."""
    per: dict[str, list[int]] = {}
    unknown = 0
    for b, g, c, pc in zip(fs.boxes, fs.gt, fs.gt_cats, categories, strict=True):
        pi, gi = match_pairs(b, g, "relative")
        for p, q in zip(pi.tolist(), gi.tolist(), strict=True):
            cur = per.setdefault(str(c[q]), [0, 0])
            cur[0] += 1
            cur[1] += int(pc[p] == c[q])
            unknown += int(pc[p] == "unknown")
    n = sum(v[0] for v in per.values())
    return {
        "accuracy": sum(v[1] for v in per.values()) / n if n else None,
        "matched": n,
        "unknown_rate": unknown / n if n else None,
        "by_category": {k: {"matched": a, "accuracy": b / a if a else None} for k, (a, b) in sorted(per.items())},
    }


def ocatari_vision(game: str, raw: np.ndarray, progress: bool = False) -> Predictions:
    """OCAtari's vision mode on full-size frames (S, T, 210, 160, 3); state reset per stack.

    A frame vision raises on (:func:`trainers.data.ground_truth.vision_step`) counts as finding
    nothing; ``refused`` says how many."""
    name = game
    importlib.import_module(f"ocatari.ram.{name.lower()}")
    importlib.import_module(f"ocatari.vision.{name.lower()}")
    from ocatari.ram.extract_ram_info import init_objects
    from ocatari.vision.extract_vision_info import detect_objects_vision

    cats: list[list[str]] = []
    out = Predictions([], [], [], cats)
    for s in tqdm(range(raw.shape[0]), desc="ocatari vision", disable=not progress):
        objects = init_objects(name, False, vision=True)
        for t in range(raw.shape[1]):
            if not vision_step(detect_objects_vision, objects, raw[s, t], name, False):
                out.refused += 1
                found = []
            else:
                found = [o for o in objects if o and not getattr(o, "hud", False) and o.w > 0 and o.h > 0]
            out.boxes.append(np.array([list(o.xywh) for o in found], np.float64).reshape(-1, 4))
            out.scores.append(np.ones(len(found)))
            out.z_what.append(np.zeros((len(found), 0)))
            cats.append([o.category for o in found])
    return out


def _score(pred: Predictions, gt_sets: dict[str, tuple[list, list, list]]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for name, fs in frame_sets(pred, gt_sets).items():
        r = detection_report(fs)
        if pred.categories is not None:
            r["category"] = category_accuracy(fs, pred.categories)
        res[name] = r
    return res


def box_colours(frames: np.ndarray, boxes: Sequence[np.ndarray]) -> np.ndarray:
    """The object colour (M, 3) of every box of every frame, in order, in one batched pass
    (``frames`` full-size (F, 210, 160, 3), ``boxes`` one (m, 4) array of frame-pixel boxes per frame)."""
    from moc_envs.perception.postprocess import refine_and_colour

    if len(frames) != len(boxes):
        raise ValueError(f"{len(boxes)} frames of boxes for {len(frames)} full-size frames")
    counts = [len(np.asarray(b).reshape(-1, 4)) for b in boxes]
    flat = np.concatenate([np.asarray(b).reshape(-1, 4) for b in boxes]) if len(boxes) else np.zeros((0, 4))
    return refine_and_colour(frames, flat, np.repeat(np.arange(len(boxes)), counts))[1]


def evaluate(
    game: str,
    data: str | Path,
    weights: str | Path | None = None,
    run: str | Path | None = None,
    split: str = "test",
    device: str = "cpu",
    limit: int | None = None,
    vision: bool = True,
    suppression: SuppressionConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the detector of ``weights`` (or ``run``) on ``split`` of ``data``; return the result dict."""
    from moc_envs.games import get_game

    spec = get_game(game)
    meta = load_meta(data)
    if meta.get("game") != spec.name:
        raise ValueError(f"dataset {data} holds {meta.get('game')!r} frames, not {spec.name!r}")
    t0 = time.perf_counter()
    encoder, det_meta = load_encoder(weights, run, spec.name, device)
    split_data = load_split(data, split)
    S, T = split_data.frames.shape[:2]
    if limit is not None:
        S = min(S, limit)
    frames = np.ascontiguousarray(split_data.frames[:S]).reshape(S * T, *split_data.frames.shape[2:])
    gt_sets = gt_frames(load_ground_truth(data, split), S, T)
    # The detector's own z_pres threshold (distilled detectors calibrate theirs).
    threshold = float(det_meta.get("pres_threshold", 0.5))
    raw_pred = predict_frames(encoder, frames, device, threshold=threshold, progress=progress)
    seconds = time.perf_counter() - t0
    sup_cfg = suppression or SuppressionConfig()

    classifier = None
    if weights is not None:
        from moc_envs.perception.classifier import has_classifier, load_classifier

        if has_classifier(weights):
            classifier = load_classifier(weights, spec.name)
    from trainers.data.raw_frames import has_raw_frames, load_raw_frames

    raw = load_raw_frames(data, split)[:S] if has_raw_frames(data, split) else None
    if classifier is not None:
        colours: list[np.ndarray | None] = [None] * len(raw_pred.boxes)
        if classifier.uses_colours:
            if raw is None:
                raise ValueError(
                    f"the classifier of {weights} reads object colours, which come from the full-size frames of "
                    f"the {split} split of {data}: moc-envs raw-frames --data {data} --split {split}"
                )
            rgb = box_colours(raw.reshape(-1, *raw.shape[2:]), raw_pred.boxes)
            colours = list(np.split(rgb, np.cumsum([len(b) for b in raw_pred.boxes])[:-1]))
        raw_pred.categories = [
            classifier.predict(z, b[:, 2:4], c) for z, b, c in zip(raw_pred.z_what, raw_pred.boxes, colours, strict=True)
        ]
    max_box = max_box_of(det_meta)
    sup_pred = suppress(drop_oversized(raw_pred, max_box), sup_cfg)

    result: dict[str, Any] = {
        "game": spec.name,
        "split": split,
        "data": str(data),
        "weights": None if weights is None else str(weights),
        "run": None if run is None else str(run),
        "step": det_meta.get("step"),
        "stacks": S,
        "frames": S * T,
        "subsets": {
            "all": "every non-HUD OCAtari object",
            "moving": "non-HUD objects whose box changed since the previous frame (still and HUD objects ignored)",
        },
        "suppression": {"iou_threshold": sup_cfg.iou_threshold, "centre_fraction": sup_cfg.centre_fraction},
        "max_box": None if max_box is None else list(max_box),
        "classifier": None if classifier is None else {"classes": list(classifier.classes), "info": classifier.info},
        "detector": {"raw": _score(raw_pred, gt_sets), "suppressed": _score(sup_pred, gt_sets)},
        "refined": raw is not None,
        "latent": latent_report(raw_pred.z_what, raw_pred.boxes, gt_sets["all"][0], gt_sets["all"][1]),
        "latent_truth": latent_report(
            truth_z_what(encoder, frames, gt_sets["all"][0], device), gt_sets["all"][0], gt_sets["all"][0], gt_sets["all"][1]
        ),
        "detect_seconds": round(seconds, 2),
    }
    if raw is not None:
        # What the env runs: suppressed boxes tightened to the full-size frame's pixels.
        refined = refine(sup_pred, raw.reshape(S * T, *raw.shape[2:]))
        result["detector"]["refined"] = _score(refined, gt_sets)
        extra = sorted(set(classifier.classes) - set(spec.category_names)) if classifier is not None else []
        if extra and refined.categories is not None:
            # The classifier also names categories the observation has no slot for (Breakout's
            # brick rows): the env drops those detections, so score what the observation holds.
            slots = set(spec.category_names)
            keeps = [np.array([k for k, c in enumerate(cs) if c in slots], dtype=int) for cs in refined.categories]
            result["detector"]["in_slots"] = _score(_take(refined, keeps), gt_sets)
            result["detector"]["in_slots"]["dropped_categories"] = extra
    if not vision:
        result["ocatari_vision"] = {"skipped": "disabled"}
    elif raw is None:
        result["ocatari_vision"] = {
            "skipped": f"no full-size frames; run `moc-envs raw-frames --data {data} --split {split}`"
        }
    else:
        vis_pred = ocatari_vision(spec.name, raw, progress)
        result["ocatari_vision"] = {**_score(vis_pred, gt_sets), "refused_frames": vis_pred.refused}
    return result


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def to_markdown(res: dict[str, Any]) -> str:
    """A readable report of :func:`evaluate`'s result."""
    lines = [
        f"# {res['game']} detector evaluation ({res['split']} split)",
        "",
        f"Data `{res['data']}`, {res['stacks']} stacks / {res['frames']} frames; "
        f"detector `{res['weights'] or res['run']}` (step {res['step']}).",
        "Centre criterion `relative`: centre distance < half the ground-truth diagonal; `ocatari`: < 5 px; "
        "`IoU`: IoU >= 0.5. Duplicate rate: share of objects with 2+ predictions on them.",
        "",
        "| method | objects | AP (0.1..0.9) | AP@0.5 | P | R | F1 | F1 ocatari | F1 IoU>=0.5 | duplicate rate | count acc. | category acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    methods = [("SPACE+MOC, all cells", res["detector"]["raw"]), ("SPACE+MOC, suppressed", res["detector"]["suppressed"])]
    if "refined" in res["detector"]:
        methods.append(("SPACE+MOC, suppressed, pixel-tight boxes (env)", res["detector"]["refined"]))
    if "in_slots" in res["detector"]:
        dropped = ", ".join(res["detector"]["in_slots"]["dropped_categories"])
        methods.append((f"SPACE+MOC, as the observation holds it (no {dropped}, no 'unknown')", res["detector"]["in_slots"]))
    vis = res.get("ocatari_vision", {})
    if "skipped" not in vis:
        methods.append(("OCAtari vision mode", vis))
    for name, r in methods:
        for subset in SUBSETS:
            m = r[subset]
            cat = m.get("category", {}).get("accuracy")
            lines.append(
                f"| {name} | {subset} | {_f(m['ap']['mean'])} | {_f(m['ap']['per_iou']['0.5'])} | "
                f"{_f(m['relative']['precision'])} | {_f(m['relative']['recall'])} | {_f(m['relative']['f1'])} | "
                f"{_f(m['ocatari']['f1'])} | {_f(m['iou']['f1'])} | {_f(m['duplicates']['duplicate_rate'])} | "
                f"{_f(m['count_accuracy'])} | {_f(cat)} |"
            )
    if "skipped" in vis:
        lines += ["", f"OCAtari vision mode: skipped ({vis['skipped']})."]
    elif vis.get("refused_frames"):
        lines += ["", f"OCAtari vision mode raised on {vis['refused_frames']} frames, scored as finding nothing."]
    lines += ["", "## Recall per category (relative criterion)", ""]
    cats = sorted({c for _, r in methods for s in SUBSETS for c in r[s]["recall_by_category"]})
    lines += ["| method | objects | " + " | ".join(cats) + " |", "|---|---|" + "---|" * len(cats)]
    for name, r in methods:
        for subset in SUBSETS:
            rc = r[subset]["recall_by_category"]
            lines.append(f"| {name} | {subset} | " + " | ".join(_f(rc.get(c, {}).get("recall")) for c in cats) + " |")
    for key, title in (
        ("latent", "z_what quality (predictions labelled by best-IoU object)"),
        ("latent_truth", "z_what quality at the truth boxes (every object cropped where it is)"),
    ):
        lat = res.get(key)
        if lat is None:  # an evaluation written before the truth-box figures existed
            continue
        lines += ["", f"## {title}", "", f"Samples: {lat['samples']} {lat['samples_by_category']}", ""]
        fs = lat["few_shot_ridge"]
        if fs:
            lines += ["| labels per class | " + " | ".join(fs) + " |", "|---|" + "---|" * len(fs)]
            lines.append("| ridge accuracy | " + " | ".join(f"{v['mean']:.3f} ± {v['std']:.3f}" for v in fs.values()) + " |")
        km = lat["kmeans"]
        if km:
            lines += ["", f"KMeans (k = {km['k']}): AMI {km['ami']:.3f}, ARI {km['ari']:.3f}"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def write_report(res: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write ``eval_<split>.json`` and ``eval_<split>.md`` into folder ``out`` atomically.

    When ``out`` is a weights folder with a manifest, the manifest is refreshed to list them.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / f"eval_{res['split']}.json", out / f"eval_{res['split']}.md"
    _write(j, json.dumps(res, indent=2) + "\n")
    _write(m, to_markdown(res))
    refresh_manifest(out, res["game"], [j.name, m.name])
    return j, m


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs evaluate",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, help="game name, e.g. Pong")
    p.add_argument("--data", required=True, help="dataset directory (trainers.data.dataset output)")
    p.add_argument("--weights", help="exported weights folder (weights/<Game>)")
    p.add_argument("--run", help="training run folder holding checkpoint.pt")
    p.add_argument("--split", default="test", help="dataset split to score")
    p.add_argument("--device", default="cpu", help="torch device")
    add_threads_argument(p)
    p.add_argument("--limit", type=int, default=None, help="score only the first N stacks")
    p.add_argument("--no-vision", action="store_true", help="skip OCAtari's vision mode")
    p.add_argument("--iou-threshold", type=float, default=SuppressionConfig.iou_threshold, help="suppression IoU")
    p.add_argument("--centre-fraction", type=float, default=SuppressionConfig.centre_fraction, help="suppression centre distance")
    p.add_argument("--out", help="folder for eval_<split>.json/.md (default: the weights or run folder)")
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    if bool(args.weights) == bool(args.run):
        p.error("give exactly one of --weights or --run")
    res = evaluate(
        args.game, args.data, args.weights, args.run, args.split, args.device, args.limit,
        vision=not args.no_vision, suppression=SuppressionConfig(args.iou_threshold, args.centre_fraction),
    )  # fmt: skip
    j, m = write_report(res, args.out or args.weights or args.run)
    print(to_markdown(res))
    print(f"wrote {j} and {m}")
    return res


if __name__ == "__main__":
    main()
