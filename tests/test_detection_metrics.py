"""Box metrics on hand-made boxes with known answers, and agreement with trainers.evaluate.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.evaluate.detection_metrics import (
    FrameSet,
    average_precision,
    detection_report,
    duplicate_stats,
    iou_matrix,
)
from trainers.evaluate.metrics import evaluate_boxes

A = np.array([[10.0, 10.0, 10.0, 10.0]])
B = np.array([[50.0, 50.0, 4.0, 8.0]])


def fs(boxes, scores, gt, cats=None, ignore=None) -> FrameSet:
    n = len(boxes)
    cats = cats if cats is not None else [np.array(["X"] * len(g)) for g in gt]
    ignore = ignore if ignore is not None else [np.zeros((0, 4))] * n
    return FrameSet([np.asarray(b, float).reshape(-1, 4) for b in boxes], [np.asarray(s, float) for s in scores],
                    [np.asarray(g, float).reshape(-1, 4) for g in gt], cats, ignore)  # fmt: skip


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 1.0, 0.0]])


def test_ap_perfect_and_ranking():
    perfect = fs([A, B], [[0.9], [0.8]], [A, B])
    ap = average_precision(perfect)
    assert ap["mean"] == pytest.approx(1.0)
    assert list(ap["per_iou"]) == [f"{0.1 * i:.1f}" for i in range(1, 10)]
    # A confident false positive ranked first: precision 0, 1/2, 2/3 at recalls 0, 1/2, 1.
    fp_first = fs([np.vstack([A, [[100, 100, 5, 5]]]), B], [[0.5, 0.99], [0.4]], [A, B])
    expected = (6 * (2 / 3) + 5 * (2 / 3)) / 11  # best precision at recall >= r is 2/3 for every r
    assert average_precision(fp_first)["per_iou"]["0.5"] == pytest.approx(expected)
    # A box shifted by half its width: IoU 1/3 -> found at 0.1..0.3, missed from 0.4 on.
    shifted = fs([A + [5, 0, 0, 0]], [[0.9]], [A])
    per = average_precision(shifted)["per_iou"]
    assert per["0.3"] == pytest.approx(1.0) and per["0.4"] == 0.0


def test_ap_ignores_boxes_on_unscored_objects():
    hud = np.array([[0.0, 0.0, 20.0, 10.0]])
    f = fs([np.vstack([hud, A])], [[0.99, 0.5]], [A], ignore=[hud])
    assert average_precision(f)["mean"] == pytest.approx(1.0)
    r = detection_report(f)
    assert r["relative"]["fp"] == 0 and r["relative"]["ignored_predictions"] == 1
    assert r["count_accuracy"] == 1.0


def test_duplicates_and_counting():
    dup = A + [1, 0, 0, 0]  # a neighbouring cell's box on the same object
    f = fs([np.vstack([A, dup, B]), B], [[0.9, 0.8, 0.7], [0.9]], [np.vstack([A, B]), B])
    d = duplicate_stats(f)
    assert d["objects"] == 3 and d["objects_with_duplicates"] == 1
    assert d["duplicate_rate"] == pytest.approx(1 / 3) and d["extra_per_object"] == pytest.approx(1 / 3)
    r = detection_report(f)
    assert r["count_accuracy"] == pytest.approx(0.5)  # frame 0 has 3 boxes for 2 objects
    assert r["relative"]["tp"] == 3 and r["relative"]["fp"] == 1 and r["relative"]["fn"] == 0
    assert r["iou"]["f1"] == pytest.approx(r["relative"]["f1"])


def test_recall_by_category():
    gt = np.vstack([A, B])
    f = fs([A], [[0.9]], [gt], cats=[np.array(["Player", "Ball"])])
    rc = detection_report(f)["recall_by_category"]
    assert rc == {"Ball": {"objects": 1, "recall": 0.0}, "Player": {"objects": 1, "recall": 1.0}}


def test_agrees_with_centre_metrics_module():
    rng = np.random.default_rng(0)
    preds, gts = [], []
    for _ in range(30):
        g = np.column_stack([rng.uniform(0, 150, (3, 2)), rng.uniform(2, 12, (3, 2))])
        p = g[rng.random(3) < 0.7] + rng.normal(0, 2, (1, 4)) * [1, 1, 0, 0]
        p = np.vstack([p, np.column_stack([rng.uniform(0, 150, (1, 2)), [[5.0, 5.0]]])])
        preds.append(p)
        gts.append(g)
    ref = evaluate_boxes(preds, gts)
    ours = detection_report(fs(preds, [np.ones(len(p)) for p in preds], gts))
    for crit in ("ocatari", "relative"):
        for k in ("tp", "fp", "fn"):
            assert ours[crit][k] == ref[crit][k]


def test_frameset_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="one entry per frame"):
        FrameSet([A], [], [A], [np.array(["X"])], [np.zeros((0, 4))])


def test_box_on_an_ignored_neighbour_is_not_a_duplicate():
    still = A + [6, 0, 0, 0]  # a still object overlapping the moving one, predicted correctly
    f = fs([np.vstack([A, still])], [[0.9, 0.8]], [A], ignore=[still])
    assert duplicate_stats(f)["objects_with_duplicates"] == 0
    assert duplicate_stats(fs([np.vstack([A, still])], [[0.9, 0.8]], [A]))["objects_with_duplicates"] == 1
