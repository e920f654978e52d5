"""Centre-distance precision / recall used to score trained detectors."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.evaluate.metrics import evaluate_boxes, match_frame


def test_ocatari_criterion_matches_centres_closer_than_5_px():
    gt = np.array([[10.0, 10.0, 4.0, 16.0], [100.0, 50.0, 2.0, 4.0]])
    pred = np.array([[12.0, 12.0, 4.0, 16.0], [130.0, 50.0, 2.0, 4.0]])  # 2.8 px off; 30 px off
    c = match_frame(pred, gt, "ocatari")
    assert (c.tp, c.fp, c.fn) == (1, 1, 1)
    assert c.precision == 0.5 and c.recall == 0.5


def test_relative_criterion_uses_half_the_gt_diagonal():
    gt = np.array([[0.0, 0.0, 30.0, 40.0]])  # diagonal 50: centres within 25 px match
    assert match_frame(np.array([[20.0, 0.0, 30.0, 40.0]]), gt, "relative").tp == 1
    assert match_frame(np.array([[26.0, 0.0, 30.0, 40.0]]), gt, "relative").tp == 0
    assert match_frame(np.array([[20.0, 0.0, 30.0, 40.0]]), gt, "ocatari").tp == 0


def test_hungarian_matching_is_one_to_one_and_counts_duplicates():
    gt = np.array([[10.0, 10.0, 4.0, 4.0]])
    pred = np.array([[10.0, 10.0, 4.0, 4.0], [11.0, 10.0, 4.0, 4.0]])
    c = match_frame(pred, gt, "ocatari")
    assert (c.tp, c.fp, c.fn, c.duplicates) == (1, 1, 0, 1)


def test_predictions_on_hud_objects_are_set_aside():
    gt = np.zeros((0, 4))
    hud = np.array([[40.0, 1.0, 12.0, 20.0]])
    pred = np.array([[40.0, 1.0, 12.0, 20.0]])
    c = match_frame(pred, gt, "ocatari", hud=hud)
    assert (c.tp, c.fp, c.hud_predictions) == (0, 0, 1)
    assert match_frame(pred, gt, "ocatari", hud=hud, ignore_hud=False).fp == 1


def test_evaluate_boxes_over_frames():
    gts = [np.array([[10.0, 10.0, 4.0, 4.0]]), np.array([[50.0, 50.0, 4.0, 4.0]])]
    preds = [np.array([[10.0, 10.0, 4.0, 4.0]]), np.zeros((0, 4))]
    r = evaluate_boxes(preds, gts)
    assert r["ocatari"]["precision"] == 1.0 and r["ocatari"]["recall"] == 0.5
    assert r["count_accuracy"] == 0.5 and r["frames"] == 2
    with pytest.raises(ValueError, match="prediction frames"):
        evaluate_boxes(preds, gts[:1])
    with pytest.raises(ValueError, match="criterion must be"):
        match_frame(preds[0], gts[0], "iou")  # type: ignore[arg-type]
