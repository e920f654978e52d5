"""The compiled kernels (moc_envs.kernels) give bit for bit their NumPy references' results.

The detector runs the kernels; the readable references stay in moc_envs.perception.postprocess
and moc_envs.model.decode_np. Real frames of five games with adversarial boxes, frames built so
that colour modes and region votes tie, random property cases, and the detector end to end with
the references swapped back in.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

import moc_envs.perception.postprocess as postprocess
from moc_envs.kernels import boxes as kernels
from moc_envs.kernels.glimpses import crop
from moc_envs.model.decode_np import crop_glimpses_np
from moc_envs.perception.postprocess import (
    SuppressionConfig,
    drawn_mask,
    refine_and_colour,
    suppress_duplicates_batched,
)

FIXTURE = Path(__file__).parent / "fixtures" / "pong_frames.npz"
ROOT = Path(__file__).resolve().parents[1]
GAMES = ["Boxing", "Freeway", "MsPacman", "SpaceInvaders"]


@pytest.fixture(scope="module")
def frames_and_boxes(oracle_frames) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per game: frames, boxes around, across and beside the RAM oracle's objects, and their frames."""
    rng = np.random.default_rng(7)
    out = {}
    pong = np.load(FIXTURE)
    sources = {"Pong": (pong["frames"], [b.astype(np.float64) for b in pong["boxes"]])}
    for game in GAMES:
        sources[game] = oracle_frames(game, seed=5, steps=100, every=5)
    for game, (frames, oracle) in sources.items():
        boxes, fi = [], []
        for f, ob in enumerate(oracle):
            grown = (
                ob * rng.uniform(0.9, 1.1, ob.shape)
                + np.c_[rng.uniform(-4, 1, (len(ob), 2)), rng.uniform(0, 8, (len(ob), 2))]
            )
            random = np.c_[rng.uniform(-30, 190, (8, 2)), rng.uniform(0, 50, (8, 2))]
            edge = np.array([[-5, 50, 8, 10], [156, 80, 9, 12], [30, -7, 12, 9], [60, 207, 10, 10], [158, 208, 2, 2],
                             [0, 0, 160, 210], [10.3, 20.7, 0, 0], [300, 300, 5, 5]], np.float64)  # fmt: skip
            part = np.concatenate(
                [ob, grown, grown[:2], random, edge]
            )  # grown[:2] again: duplicates
            boxes.append(part)
            fi.append(np.full(len(part), f))
        out[game] = (frames, np.concatenate(boxes), np.concatenate(fi))
    return out


@pytest.mark.parametrize("game", ["Pong", *GAMES])
def test_refine_kernel_is_refine_and_colour(frames_and_boxes, game):
    frames, boxes, fi = frames_and_boxes[game]
    want_boxes, want_colours = refine_and_colour(frames, boxes, fi)
    got_boxes, packed = kernels.refine(frames, boxes, fi)
    np.testing.assert_array_equal(got_boxes, want_boxes)
    np.testing.assert_array_equal(postprocess.unpack_colours(packed), want_colours)
    assert (got_boxes != boxes).any(axis=1).mean() > 0.1  # the test tightens boxes


@pytest.mark.parametrize("game", ["Pong", *GAMES])
def test_suppress_and_drawn_kernels_are_their_references(frames_and_boxes, game):
    frames, boxes, fi = frames_and_boxes[game]
    scores = np.random.default_rng(1).choice([0.6, 0.7, 0.9], len(boxes))  # ties abound
    for cfg in (SuppressionConfig(), SuppressionConfig(0.2, 2.0), SuppressionConfig(1.0, 0.0)):
        want = suppress_duplicates_batched(boxes, scores, fi, cfg)
        got = kernels.suppress(boxes, scores, fi, cfg.iou_threshold, cfg.centre_fraction)
        np.testing.assert_array_equal(got, want)
    drawn = kernels.drawn(frames, boxes, fi)
    np.testing.assert_array_equal(drawn, drawn_mask(frames, boxes, fi))
    assert drawn.any() and not drawn.all()


def test_refine_kernel_breaks_ties_as_opencv_numbers_regions():
    # Two 2x2 blobs of the object colour with equal votes: A from crop row 9, column 8, B from
    # row 8, column 12. OpenCV scans 2x2 blocks, so A (same block row, further left) wins.
    frames = np.zeros((2, 210, 160, 3), np.uint8)
    frames[:] = (144, 72, 17)
    boxes, fi, expected = [], [], []
    for k, (x, y) in enumerate([(40, 40), (100, 30), (20, 120), (90, 150), (121, 91)]):
        f = k % 2
        frames[f, y + 5 : y + 7, x + 4 : x + 6] = (236, 236, 236)  # A
        frames[f, y + 4 : y + 6, x + 8 : x + 10] = (236, 236, 236)  # B
        boxes.append([float(x), float(y), 16.0, 16.0])
        fi.append(f)
        expected.append([x + 4.0, y + 5.0, 2.0, 2.0])
    got, _ = kernels.refine(frames, np.array(boxes), np.array(fi))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, refine_and_colour(frames, np.array(boxes), np.array(fi))[0])


def test_kernels_on_no_boxes_and_bad_boxes():
    frames = np.zeros((1, 210, 160, 3), np.uint8)
    none = np.zeros((0, 4))
    assert kernels.suppress(none, np.zeros(0), np.zeros(0, int), 0.5, 0.5).shape == (0,)
    assert kernels.drawn(frames, none, np.zeros(0, int)).shape == (0,)
    got, colours = kernels.refine(frames, none, np.zeros(0, int))
    assert got.shape == (0, 4) and colours.shape == (0,)
    with pytest.raises(ValueError, match="finite"):
        kernels.refine(frames, np.array([[np.nan, 1.0, 2.0, 2.0]]), np.zeros(1, int))


@pytest.mark.parametrize("size", [16, 32])
def test_glimpse_kernel_is_the_numpy_crop(size):
    rng = np.random.default_rng(size)
    images = rng.random((4, 128, 128, 3), dtype=np.float32)
    frame_index = np.repeat(np.arange(4), 50)
    # Boxes inside the image, across its border and far outside it (zero padding).
    where = np.c_[rng.uniform(0.005, 0.6, (200, 2)), rng.uniform(-1.6, 1.6, (200, 2))].astype(
        np.float32
    )
    got = crop(images, frame_index, where, size)
    assert got.dtype == np.float32 and got.shape == (200, size, size, 3)
    np.testing.assert_array_equal(got, crop_glimpses_np(images, frame_index, where, size))
    assert crop(images, np.zeros(0, int), np.zeros((0, 4), np.float32), size).shape == (
        0,
        size,
        size,
        3,
    )


def test_detect_with_kernels_is_detect_with_the_references(monkeypatch):
    pytest.importorskip("torch")
    import moc_envs.perception.space_detector as space_detector
    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector

    detector = SpaceDetector.from_pretrained(
        ROOT / "weights" / "SpaceInvaders", get_game("SpaceInvaders")
    )
    env = gym.make("MOC/SpaceInvaders-v0", detector="ram", obs_mode="objects+frame")
    try:
        obs, _ = env.reset(seed=2)
        env.action_space.seed(2)
        frames = [env.step(env.action_space.sample())[0]["frame"] for _ in range(24)]
    finally:
        env.close()
    frames = np.stack(frames)
    fast = detector.detect(frames)

    def refine(frames, boxes, fi):
        refined, colours = refine_and_colour(frames, boxes, fi)
        return refined, (colours.astype(np.int64) * [1 << 16, 1 << 8, 1]).sum(axis=1)

    def suppress(boxes, scores, fi, iou, centre):
        return suppress_duplicates_batched(boxes, scores, fi, SuppressionConfig(iou, centre))

    reference = SimpleNamespace(suppress=suppress, drawn=drawn_mask, refine=refine)
    monkeypatch.setattr(space_detector, "box_kernels", reference)
    monkeypatch.setattr(space_detector, "crop_glimpses", crop_glimpses_np)
    slow = detector.detect(frames)
    assert sum(map(len, fast)) > 10 * len(frames)
    for got, want in zip(fast, slow, strict=True):
        assert [(d.category, d.x, d.y, d.w, d.h, d.score) for d in got] == [
            (d.category, d.x, d.y, d.w, d.h, d.score) for d in want
        ]
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a.z_what, b.z_what)


def test_resize_unit_is_the_area_resize_divided_bit_for_bit(frames_and_boxes):
    """The detector's compiled input path equals resize_frames(frames) / 255 on real and random
    frames, one at a time and batched, and refuses the shapes OpenCV resizes another way."""
    from moc_envs.kernels.resize import area_taps, resize_unit
    from moc_envs.perception.preprocess import resize_frames

    rng = np.random.default_rng(3)
    batches = [frames for frames, _, _ in frames_and_boxes.values()]
    batches.append(rng.integers(0, 256, (5, 210, 160, 3), dtype=np.uint8))
    batches.append(np.full((2, 210, 160, 3), 255, np.uint8))
    for frames in batches:
        want = np.divide(resize_frames(frames), np.float32(255.0), dtype=np.float32)
        np.testing.assert_array_equal(resize_unit(frames, 128), want)
        np.testing.assert_array_equal(resize_unit(frames[:1], 128), want[:1])
    assert resize_unit(np.zeros((0, 210, 160, 3), np.uint8), 128).shape == (0, 128, 128, 3)
    # Every input pixel is covered once in all: each output's weights sum to one.
    starts, _, weight = area_taps(210, 128)
    np.testing.assert_allclose(np.add.reduceat(weight, starts[:-1]), 1.0, rtol=1e-6)
    for bad in (np.zeros((1, 256, 256, 3), np.uint8), np.zeros((1, 100, 160, 3), np.uint8), np.zeros((1, 210, 160, 3))):
        with pytest.raises(ValueError, match="resize_unit"):
            resize_unit(bad, 128)
    with pytest.raises(ValueError, match="area_taps"):
        area_taps(100, 128)
