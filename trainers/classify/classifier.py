"""Fit the z_what -> category classifier shipped beside a detector.

    moc-envs classifier --game Pong --weights weights/Pong --data data/Pong [--labels-per-class 8]

On the validation split: the detector's predictions (after duplicate suppression, as at
inference) and their z_what. Only ``labels_per_class`` predictions per category are labelled
(with the category of the ground-truth object they overlap most, a stand-in for a person
naming a handful of crops). The classifier is a semi-supervised k-means: one centroid per
category, started at the mean of its labelled samples, then refined on every validation z_what
(labelled samples stay with their category, the rest join their nearest centroid; samples far
from every centroid are left out). Each centroid's radius is a quantile of its members'
distances times a margin; beyond it a prediction is "unknown". Per-class accuracy is reported
on the test split. Saved as ``classifier.safetensors`` (arrays) + ``classifier.json`` (classes,
settings, fit details), then the folder's ``manifest.json`` is refreshed. A detector that finds
no object in the validation split raises :class:`NoObjectsFoundError` with the likely causes.
The fitting itself is :mod:`trainers.classify.centroids`; ``--auto`` chooses the options with
:mod:`trainers.classify.options`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.errors import MocEnvsError
from moc_envs.perception.classifier import CLASSIFIER_FILE, CLASSIFIER_JSON, save_classifier
from moc_envs.threads import add_threads_argument, set_torch_threads
from moc_envs.weights.manifest import write_manifest
from trainers.classify.centroids import METHODS, fit_classifier, score_classifier
from trainers.classify.options import ClassifierOptions, choose_options

__all__ = ["METHODS", "NoObjectsFoundError", "fit_classifier", "score_classifier", "split_colours", "choose_options", "fit_from_weights", "fit_from_play", "main"]


class NoObjectsFoundError(MocEnvsError, ValueError):
    """The detector found no object of the dataset's ground truth in a split: nothing to label."""


def _split_samples(
    encoder: Any, data: str | Path, split: str, device: str, limit: int | None, max_box: tuple[float, float] | None = None,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Suppressed predictions' z_what, best-IoU categories ("" when on no object), box sizes,
    object colours (None when the split's full-size frames have not been recovered:
    :mod:`trainers.data.raw_frames`) and stack indices of a split.

    Boxes larger than ``max_box`` are dropped first, as the env does.
    """
    from trainers.data.reader import load_ground_truth, load_split
    from trainers.evaluate.detector import drop_oversized, gt_frames, predict_frames, suppress
    from trainers.evaluate.latent_metrics import label_by_iou

    d = load_split(data, split)
    S, T = d.frames.shape[:2]
    if limit is not None:
        S = min(S, limit)
    frames = np.ascontiguousarray(d.frames[:S]).reshape(S * T, *d.frames.shape[2:])
    pred = suppress(drop_oversized(predict_frames(encoder, frames, device, threshold=threshold), max_box))
    gt_boxes, gt_cats, _ = gt_frames(load_ground_truth(data, split), S, T)["all"]
    labels = label_by_iou(pred.boxes, gt_boxes, gt_cats)
    dim = encoder.cfg.z_what_dim
    z = np.concatenate([p.reshape(-1, dim) for p in pred.z_what]) if pred.z_what else np.zeros((0, dim))
    sizes = np.concatenate([b.reshape(-1, 4)[:, 2:4] for b in pred.boxes]) if pred.boxes else np.zeros((0, 2))
    stacks = np.repeat(np.arange(len(pred.boxes)) // T, [len(b) for b in pred.boxes])
    colours = split_colours(data, split, S, pred.boxes)
    return z, np.concatenate(labels) if labels else np.zeros(0, object), sizes, colours, stacks


def split_colours(data: str | Path, split: str, stacks: int, boxes: Sequence[np.ndarray]) -> np.ndarray | None:
    """The object colour (M, 3) of every box of the split's first ``stacks`` stacks (``boxes``: one
    (m, 4) array of frame-pixel boxes per frame, in order), read from the full-size frames as the
    env reads them; None when the split's full-size frames have not been recovered."""
    from trainers.data.raw_frames import has_raw_frames, load_raw_frames
    from trainers.evaluate.detector import box_colours

    if not has_raw_frames(data, split):
        return None
    raw = load_raw_frames(data, split)[:stacks]
    return box_colours(raw.reshape(-1, *raw.shape[2:]), boxes)


def fit_from_weights(
    game: str,
    weights: str | Path,
    data: str | Path,
    labels_per_class: int = 8,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    limit: int | None = None,
    max_ratio: float = 0.9,
    method: str = "kmeans",
    size_weight: float = 0.0,
    auto: bool = False,
    colour_weight: float = 0.0,
) -> dict[str, Any]:
    """Fit on the val split, score on the test split, save beside the weights (or in ``out``).

    ``auto``: ``labels_per_class``, ``method``, ``size_weight``, ``colour_weight`` and
    ``max_ratio`` are chosen by :func:`choose_options` instead (the search is kept in
    classifier.json as ``options_search``). Colours need the full-size frames of the val and test
    splits (``moc-envs raw-frames --data DATA --split val --split test``).
    """
    from moc_envs.games import get_game
    from trainers.evaluate.detector import load_encoder, max_box_of

    spec = get_game(game)
    encoder, meta = load_encoder(weights, None, spec.name, device)
    max_box = max_box_of(meta)
    threshold = float(meta.get("pres_threshold", 0.5))  # the detector's own z_pres threshold
    z_val, lab_val, wh_val, rgb_val, stack_val = _split_samples(encoder, data, "val", device, limit, max_box, threshold)
    if colour_weight > 0 and rgb_val is None:
        raise MocEnvsError(
            f"colour_weight {colour_weight:g} needs the full-size frames of the val split of {data}: "
            f"moc-envs raw-frames --data {data} --split val --split test"
        )
    if not any(lab_val.tolist()):
        # fit_classifier would only say "no labelled samples"; say what that means here.
        raise NoObjectsFoundError(
            f"the detector in {weights} found no objects in the val split of {data}: "
            f"{len(z_val)} predictions after suppression, none on a ground-truth object, so there "
            "is nothing to label. Likely causes: an undertrained run (train longer, check its "
            "losses and the evaluation of `moc-envs evaluate --run <run>`), the wrong "
            f"--weights for {spec.name} or for this dataset, or a max_box in config.json "
            f"({'none' if max_box is None else f'{max_box[0]:g} x {max_box[1]:g} px'}) that "
            "drops the real boxes (re-export with a larger --max-box-margin, or none)"
        )
    search = None
    if auto:
        try:
            chosen, search = choose_options(z_val, lab_val, wh_val, stack_val, seed, colours=rgb_val)
        except ValueError as err:
            # Too few labelled predictions to compare options (a tiny val split): keep the
            # given ones, and say so where the options are recorded.
            chosen = ClassifierOptions(labels_per_class, method, size_weight, max_ratio, colour_weight)
            search = {"chosen": chosen.as_json(), "held_out_accuracy": None, "why": f"not searched: {err}"}
        labels_per_class, method = chosen.labels_per_class, chosen.method
        size_weight, max_ratio, colour_weight = chosen.size_weight, chosen.max_ratio, chosen.colour_weight
    clf = fit_classifier(
        z_val, lab_val, labels_per_class, seed, max_ratio=max_ratio, method=method, sizes=wh_val, size_weight=size_weight,
        colours=rgb_val, colour_weight=colour_weight,
    )  # fmt: skip
    if search is not None:
        clf.info["options_search"] = search
    z_test, lab_test, wh_test, rgb_test, _ = _split_samples(encoder, data, "test", device, limit, max_box, threshold)
    if clf.uses_colours and rgb_test is None:
        raise MocEnvsError(
            f"the classifier reads colours but the test split of {data} has no full-size frames: "
            f"moc-envs raw-frames --data {data} --split test"
        )
    report = {
        "val": score_classifier(clf, z_val, lab_val, wh_val, rgb_val),
        "test": score_classifier(clf, z_test, lab_test, wh_test, rgb_test),
    }
    clf.info["test"] = report["test"]
    clf.info["val"] = report["val"]
    folder = Path(out or weights)
    report["classifier"] = str(save_classifier(clf, folder, spec.name))
    report["manifest"] = str(write_manifest(folder, spec.name, written=[CLASSIFIER_FILE, CLASSIFIER_JSON]))
    return report


def fit_from_play(
    game: str,
    weights: str | Path,
    frames: int = 400,
    fit_seeds: Sequence[int] = (6000, 6001),
    test_seeds: Sequence[int] = (6100,),
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Fit the classifier of ``weights`` on samples of random play (:mod:`trainers.classify.play_samples`)
    with its options chosen as ``--auto`` chooses them, score it on play of other seeds, save it.

    For a weights folder whose data set is gone. A refit classifier drops the folder's extents
    (fitted for the old one's names): run ``moc-envs extents`` again after it.
    """
    from moc_envs.games import get_game
    from trainers.classify.play_samples import play_samples

    spec = get_game(game)
    fit = play_samples(spec.name, weights, frames, fit_seeds, device)
    if not any(fit.labels.tolist()):
        raise NoObjectsFoundError(
            f"the detector in {weights} found no object of {spec.name} in {fit.frames} frames of random play "
            "(none of its boxes matches a RAM object): nothing to name"
        )
    try:
        chosen, search = choose_options(fit.z_what, fit.labels, fit.sizes, fit.groups, seed, colours=fit.colours)
    except ValueError as err:
        # Too little play to compare options on two halves: the defaults, and the record says so.
        chosen = ClassifierOptions(8, "kmeans", 0.0, 0.9, 0.0)
        search = {"chosen": chosen.as_json(), "held_out_accuracy": None, "why": f"not searched: {err}"}
    clf = fit_classifier(
        fit.z_what, fit.labels, chosen.labels_per_class, seed, max_ratio=chosen.max_ratio, method=chosen.method,
        sizes=fit.sizes, size_weight=chosen.size_weight, colours=fit.colours, colour_weight=chosen.colour_weight,
    )  # fmt: skip
    test = play_samples(spec.name, weights, frames, test_seeds, device)
    report = {
        "val": score_classifier(clf, fit.z_what, fit.labels, fit.sizes, fit.colours),
        "test": score_classifier(clf, test.z_what, test.labels, test.sizes, test.colours),
    }
    clf.info.update(options_search=search, test=report["test"], val=report["val"],
                    fitted_on={"policy": "random", "fit_seeds": list(fit_seeds), "test_seeds": list(test_seeds),
                               "frames": fit.frames, "samples": len(fit.labels)})  # fmt: skip
    folder = Path(out or weights)
    report["classifier"] = str(save_classifier(clf, folder, spec.name))
    report["manifest"] = str(write_manifest(folder, spec.name, written=[CLASSIFIER_FILE, CLASSIFIER_JSON]))
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs classifier",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--game", required=True, help="game name, e.g. Pong")
    p.add_argument("--weights", required=True, help="exported weights folder (weights/<Game>)")
    p.add_argument("--data", default=None, help="dataset directory (trainers.data.dataset output); or --from-play")
    p.add_argument(
        "--from-play", action="store_true",
        help="fit on random play named by OCAtari RAM instead of a data set (options chosen as --auto; "
        "trainers.classify.play_samples); then run moc-envs extents again",
    )  # fmt: skip
    p.add_argument("--frames", type=int, default=400, help="--from-play: recorded frames per seed of random play")
    p.add_argument("--labels-per-class", type=int, default=8, help="labelled samples per category")
    p.add_argument("--seed", type=int, default=0, help="seed of the labelled-sample draw")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--limit", type=int, default=None, help="use only the first N stacks of each split (default: all)")
    p.add_argument("--out", default=None, help="output folder (default: the weights folder)")
    p.add_argument("--max-ratio", type=float, default=0.9, help="ambiguity ratio beyond which a prediction is unknown (1: off)")
    p.add_argument("--method", choices=METHODS, default="kmeans", help="kmeans: one refined centroid per category; prototypes: the labelled samples")
    p.add_argument("--size-weight", type=float, default=0.0, help="weight of the boxes' log width/height as features (0: z_what only)")
    p.add_argument(
        "--colour-weight", type=float, default=0.0,
        help="weight of the objects' RGB colour as features (0: none; needs the val/test full-size frames of trainers.data.raw_frames)",
    )  # fmt: skip
    p.add_argument(
        "--auto", action="store_true",
        help="choose --labels-per-class, --method, --size-weight, --colour-weight and --max-ratio instead: fitted on one half of "
        "the val split's stacks, scored on the other (the given values are ignored)",
    )  # fmt: skip
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_torch_threads(args.threads)
    if (args.data is None) == (not args.from_play):
        p.error("give exactly one of --data DATA or --from-play")
    if args.from_play:
        try:
            report = fit_from_play(args.game, args.weights, args.frames, seed=args.seed, device=args.device, out=args.out)
        except MocEnvsError as err:
            p.exit(2, f"error: {err}\n")
        print(json.dumps(report, indent=2))
        return report
    try:
        report = fit_from_weights(
            args.game, args.weights, args.data, args.labels_per_class, args.seed, args.device, args.out, args.limit,
            args.max_ratio, args.method, args.size_weight, args.auto, args.colour_weight,
        )  # fmt: skip
    except MocEnvsError as err:
        p.exit(2, f"error: {err}\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
