"""Duplicate suppression on synthetic boxes."""

from __future__ import annotations

import numpy as np
import pytest

from moc_envs.perception.postprocess import (
    SuppressionConfig,
    refine_boxes,
    size_mask,
    suppress_duplicates,
)


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


def _pong_like_frame() -> np.ndarray:
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:] = (144, 72, 17)  # playfield
    frame[24:34] = (236, 236, 236)  # top wall
    frame[34:49, 140:144] = (92, 186, 92)  # a 4x15 paddle right under the wall
    frame[120:124, 80:82] = (236, 236, 236)  # the 2x4 ball
    return frame


def test_refine_tightens_loose_boxes_to_the_object():
    frame = _pong_like_frame()
    loose = np.array([[137.0, 31.0, 10.0, 21.0], [77.0, 116.0, 9.0, 12.0]])
    tight = refine_boxes(frame, loose)
    # The wall touches the paddle's loose box but has another colour: it stays out.
    np.testing.assert_allclose(tight, [[140, 34, 4, 15], [80, 120, 2, 4]])


def test_refine_keeps_boxes_on_background_and_checks_the_frame():
    frame = _pong_like_frame()
    empty = np.array([[60.0, 150.0, 10.0, 10.0]])
    np.testing.assert_allclose(refine_boxes(frame, empty), empty)
    assert refine_boxes(frame, np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(ValueError, match=r"frame must be \(H, W, 3\)"):
        refine_boxes(frame[..., 0], empty)


def test_refine_keeps_the_box_when_scenery_crosses_the_crop():
    """Freeway's chicken on the kerb: the pavement fills most of the box's centre, not the chicken."""
    from moc_envs.perception.postprocess import refine_boxes_batched

    frame = np.full((210, 160, 3), 142, dtype=np.uint8)  # road
    frame[186:195] = (170, 170, 170)  # pavement, across the screen
    frame[180:188, 44:50] = (252, 252, 84)  # the 6x8 chicken, half on the road
    loose = np.array([[32.0, 180.0, 26.0, 16.0], [40.0, 177.0, 14.0, 14.0]])
    # The first box's central half is mostly pavement: the pavement would become a 40-px box.
    # The second is centred on the chicken and still tightens to it.
    expected = [[32, 180, 26, 16], [44, 180, 6, 8]]
    np.testing.assert_allclose(refine_boxes(frame, loose), expected)
    many = np.repeat(loose, 20, axis=0)  # past the batched function's few-box shortcut
    np.testing.assert_allclose(refine_boxes_batched(frame[None], many, np.zeros(len(many), dtype=int)), np.repeat(expected, 20, axis=0))


def test_size_mask_drops_boxes_beyond_the_limit():
    boxes = np.array([[0, 0, 10, 20], [5, 5, 30, 20], [5, 5, 10, 61], [1, 1, 30, 60]], dtype=float)
    assert size_mask(boxes, (30.0, 60.0)).tolist() == [True, True, False, True]
    assert size_mask(boxes, (29.0, 60.0)).tolist() == [True, False, False, False]
    assert size_mask(boxes, None).all()
    assert size_mask(np.zeros((0, 4)), (1.0, 1.0)).shape == (0,)
