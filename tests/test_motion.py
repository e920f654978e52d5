"""Motion targets (trainers.data.motion) on synthetic frames: no emulator needed."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.data.motion import (
    MotionConfig,
    boxes_to_targets,
    mask_to_model,
    match_centres,
    mode_image,
    motion_boxes,
    motion_map,
    targets_to_boxes,
)

BG_COLOUR = (144, 72, 17)


def _background() -> np.ndarray:
    bg = np.zeros((210, 160, 3), np.uint8)
    bg[:] = BG_COLOUR
    return bg


def _frame(*boxes: tuple[int, int, int, int], colour=(236, 236, 236)) -> np.ndarray:
    f = _background()
    for x, y, w, h in boxes:
        f[y : y + h, x : x + w] = colour
    return f


def test_mode_image_picks_most_frequent_value_per_channel():
    frames = np.zeros((5, 4, 3, 3), np.uint8)
    frames[:3, 0, 0] = (10, 20, 30)
    frames[3:, 0, 0] = (99, 99, 99)
    frames[:2, 1, 1, 0] = 7  # 7 twice, 0 three times -> 0
    frames[:, 2, 2, 2] = [1, 2, 2, 3, 3]  # tie between 2 and 3 -> smallest
    bg = mode_image(frames)
    assert bg.shape == (4, 3, 3) and bg.dtype == np.uint8
    assert tuple(bg[0, 0]) == (10, 20, 30)
    assert bg[1, 1, 0] == 0
    assert bg[2, 2, 2] == 2


def test_mode_image_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty uint8"):
        mode_image(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="non-empty uint8"):
        mode_image(np.zeros((2, 4, 4, 3), np.float32))


def test_motion_boxes_find_exact_boxes():
    boxes = [(140, 100, 4, 15), (16, 50, 4, 15), (80, 120, 2, 4)]
    (res,) = motion_boxes(_frame(*boxes), _background())
    found = sorted(tuple(int(v) for v in b) for b in res.boxes)
    assert found == sorted(boxes)
    assert res.mask.dtype == np.uint8 and res.mask.shape == (210, 160)
    assert res.mask.sum() == sum(w * h for _, _, w, h in boxes)
    assert not res.flash and res.dropped == 0


def test_static_frame_has_no_motion():
    (res,) = motion_boxes(_background(), _background())
    assert len(res.boxes) == 0 and res.mask.sum() == 0
    assert motion_map(_background(), _background()).max() == 0


def test_closing_joins_a_one_pixel_gap():
    f = _frame((50, 50, 6, 6), (57, 50, 6, 6))  # one background column between
    (res,) = motion_boxes(f, _background())
    assert [tuple(int(v) for v in b) for b in res.boxes] == [(50, 50, 13, 6)]


def test_ignore_regions_remove_hud_motion():
    f = _frame((40, 2, 12, 20), (100, 100, 4, 15))
    cfg = MotionConfig(ignore=((0, 0, 160, 24),))
    (res,) = motion_boxes(f, _background(), cfg)
    assert [tuple(int(v) for v in b) for b in res.boxes] == [(100, 100, 4, 15)]
    (unmasked,) = motion_boxes(f, _background())
    assert len(unmasked.boxes) == 2


def test_oversize_boxes_are_dropped_and_erased_from_mask():
    f = _frame((10, 40, 60, 20), (100, 100, 4, 15))
    cfg = MotionConfig(max_object_size=(12, 40))
    (res,) = motion_boxes(f, _background(), cfg)
    assert [tuple(int(v) for v in b) for b in res.boxes] == [(100, 100, 4, 15)]
    assert res.dropped == 1
    assert res.mask[40:60, 10:70].sum() == 0
    assert res.mask[100:115, 100:104].all()


def test_full_screen_change_is_a_flash():
    f = _frame((0, 30, 160, 150))
    (res,) = motion_boxes(f, _background(), MotionConfig(max_object_size=(12, 40)))
    assert res.flash and len(res.boxes) == 0 and res.dropped == 1


def test_motion_rejects_wrong_frame_shape():
    with pytest.raises(ValueError, match=r"shape \(N, 210, 160, 3\)"):
        motion_boxes(np.zeros((84, 84, 3), np.uint8), _background())
    with pytest.raises(ValueError, match="uint8"):
        motion_boxes(np.zeros((210, 160, 3), np.float32), _background())


def test_targets_follow_the_spec_convention():
    pres, where = boxes_to_targets(np.array([[140, 100, 4, 15]], np.float32), grid=16)
    assert pres.shape == (256,) and where.shape == (256, 4)
    assert pres.dtype == np.float32 and where.dtype == np.float32
    cx, cy = 142.0, 107.5
    cell = int(cy / 210 * 16) * 16 + int(cx / 160 * 16)
    assert np.flatnonzero(pres).tolist() == [cell]
    np.testing.assert_allclose(
        where[cell], [4 / 160, 15 / 210, 2 * cx / 160 - 1, 2 * cy / 210 - 1], rtol=1e-5
    )
    assert where[pres == 0].sum() == 0


def test_larger_box_wins_a_shared_cell_and_roundtrip():
    small, large = (50, 50, 2, 2), (47, 47, 8, 8)  # same centre cell
    for order in ([small, large], [large, small]):
        pres, where = boxes_to_targets(np.array(order, np.float32), grid=16)
        assert pres.sum() == 1
        np.testing.assert_allclose(targets_to_boxes(pres, where), [large], atol=1e-4)


def test_grid_size_is_a_parameter():
    pres, where = boxes_to_targets(np.array([[0, 0, 4, 4], [150, 200, 4, 4]]), grid=8)
    assert pres.shape == (64,) and where.shape == (64, 4)
    assert np.flatnonzero(pres).tolist() == [0, 63]
    with pytest.raises(ValueError, match="grid must be a positive"):
        boxes_to_targets(np.zeros((0, 4)), grid=0)


def test_mask_resize_keeps_thin_objects():
    m = np.zeros((210, 160), np.uint8)
    m[100, 80:82] = 1  # one pixel high
    small = mask_to_model(m)
    assert small.shape == (1, 128, 128) and small.dtype == np.uint8
    assert small.sum() > 0 and set(np.unique(small)) <= {0, 1}


def test_match_centres_is_one_to_one_within_distance():
    pred = np.array([[10, 10], [10.5, 10], [50, 50]], np.float32)
    truth = np.array([[11, 10], [80, 80]], np.float32)
    pi, gi = match_centres(pred, truth, 4.0)
    assert len(pi) == len(gi) == 1 and gi.tolist() == [0] and pi[0] in (0, 1)
    pi, gi = match_centres(pred, np.zeros((0, 2)), 4.0)
    assert len(pi) == 0


def test_colour_split_separates_touching_sprites():
    f = _frame((40, 60, 14, 46), colour=(214, 214, 214))
    f[60:106, 54:68] = (0, 0, 0)  # a second, black sprite touching the first
    (merged,) = motion_boxes(f, _background())
    assert [tuple(int(v) for v in b) for b in merged.boxes] == [(40, 60, 28, 46)]
    (split,) = motion_boxes(f, _background(), MotionConfig(split_colours=True))
    found = sorted(tuple(int(v) for v in b) for b in split.boxes)
    assert found == [(40, 60, 14, 46), (54, 60, 14, 46)]
