"""Duplicate suppression on synthetic boxes."""

from __future__ import annotations

import numpy as np
import pytest

from moc_envs.postprocess import SuppressionConfig, suppress_duplicates


def test_removes_a_neighbouring_duplicate_keeping_the_best():
    paddle = [140.0, 80.0, 4.0, 16.0]
    boxes = np.array([paddle, [140.0, 82.0, 4.0, 15.0], [16.0, 50.0, 4.0, 16.0]])
    keep = suppress_duplicates(boxes, np.array([0.7, 0.95, 0.9]))
    assert sorted(keep.tolist()) == [1, 2]  # the 0.95 box wins over its 0.7 duplicate
    assert keep[0] == 1


def test_small_object_duplicate_found_by_centre_distance():
    ball = np.array([[78.0, 100.0, 2.0, 4.0], [78.6, 100.7, 2.0, 4.0]])
    assert suppress_duplicates(ball, np.array([0.8, 0.9])).tolist() == [1]


def test_distinct_touching_objects_are_kept():
    # The Pong ball touching the paddle, two Boxing players side by side, two Skiing flags.
    cases = [
        np.array([[140.0, 80.0, 4.0, 16.0], [137.0, 86.0, 2.0, 4.0]]),
        np.array([[40.0, 60.0, 30.0, 46.0], [66.0, 62.0, 30.0, 46.0]]),
        np.array([[60.0, 120.0, 5.0, 14.0], [92.0, 120.0, 5.0, 14.0]]),
    ]
    for boxes in cases:
        assert len(suppress_duplicates(boxes, np.array([0.9, 0.8]))) == 2


def test_empty_and_single():
    assert suppress_duplicates(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    assert suppress_duplicates(np.ones((1, 4)), np.ones(1)).tolist() == [0]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        suppress_duplicates(np.ones((2, 4)), np.ones(1))
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        SuppressionConfig(iou_threshold=0.0)
