"""The batched post-processing gives exactly the per-frame functions' results (issue 11).

``suppress_duplicates_batched`` and ``refine_boxes_batched`` replace per-frame loops in
``SpaceDetector.detect``; the shipped detectors' evaluation numbers must not move, so every test
here compares bit for bit with the per-frame reference (``suppress_duplicates`` and
``refine_boxes``, kept as the readable definitions) on real Atari frames, adversarial boxes and
random property cases.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import moc_envs.perception.postprocess as postprocess
from moc_envs.kernels import boxes as box_kernels
from moc_envs.perception.postprocess import (
    SuppressionConfig,
    drawn_mask,
    refine_boxes,
    refine_boxes_batched,
    suppress_duplicates,
    suppress_duplicates_batched,
)
from moc_envs.perception.preprocess import resize_frames

FIXTURE = Path(__file__).parent / "fixtures" / "pong_frames.npz"
ROOT = Path(__file__).resolve().parents[1]
ALE_GAMES = ["Boxing", "Skiing", "Freeway", "MsPacman"]


# The per-frame references, used the way SpaceDetector.detect used them before batching.


def per_frame_refine(
    frames: np.ndarray, boxes: np.ndarray, fi: np.ndarray, margin: float = 0.25
) -> np.ndarray:
    out = np.asarray(boxes, dtype=np.float64).copy()
    for f in np.unique(fi):
        rows = np.flatnonzero(fi == f)
        out[rows] = refine_boxes(frames[int(f)], out[rows], margin=margin)
    return out


def per_frame_suppress(
    boxes: np.ndarray, scores: np.ndarray, fi: np.ndarray, config: SuppressionConfig | None = None
) -> np.ndarray:
    parts = [np.zeros(0, dtype=int)]
    for f in np.unique(fi):
        rows = np.flatnonzero(fi == f)
        parts.append(rows[suppress_duplicates(boxes[rows], scores[rows], config)])
    return np.concatenate(parts)


# Frames and RAM-oracle boxes of real games.


@pytest.fixture(scope="module")
def real_frames(oracle_frames) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Per game: frames (N, 210, 160, 3) and each frame's RAM-oracle boxes (k, 4)."""
    data: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
    pong = np.load(FIXTURE)
    data["Pong"] = (pong["frames"], [b.astype(np.float64) for b in pong["boxes"]])
    for game in ALE_GAMES:
        data[game] = oracle_frames(game, seed=3, steps=120, every=5)
    return data


def adversarial_boxes(
    rng: np.random.Generator, oracle: list[np.ndarray], fw: int = 160, fh: int = 210
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (M, 4) and their frame indices: the oracle's boxes grown and shifted, random, tiny,
    huge, at and beyond the frame border, and exact duplicates, in shuffled order."""
    boxes: list[np.ndarray] = []
    fis: list[np.ndarray] = []
    for f, ob in enumerate(oracle):
        parts = []
        if len(ob):
            grown = ob.copy()
            grown[:, 2:] *= rng.uniform(1.0, 2.5, (len(ob), 2))
            grown[:, :2] -= rng.uniform(0.0, 1.0, (len(ob), 2)) * (grown[:, 2:] - ob[:, 2:])
            grown[:, :2] += rng.uniform(-3, 3, (len(ob), 2))
            parts += [ob, grown, grown[rng.integers(0, len(ob), 2)]]  # the last: duplicates
        k = 6
        parts.append(np.c_[rng.uniform(-40, 200, (k, 2)), rng.uniform(0, 60, (k, 2))])  # random
        parts.append(
            np.c_[rng.uniform(0, fw, (k, 1)), rng.uniform(0, fh, (k, 1)), rng.uniform(0, 3, (k, 2))]
        )
        parts.append(np.c_[rng.uniform(-100, 50, (2, 2)), rng.uniform(100, 400, (2, 2))])  # huge
        edge = np.array(
            [
                [-5.0, 50.0, 8.0, 10.0],  # cut by the left border
                [fw - 4.0, 80.0, 9.0, 12.0],  # cut by the right border
                [30.0, -7.0, 12.0, 9.0],  # cut by the top
                [60.0, fh - 3.0, 10.0, 10.0],  # cut by the bottom
                [fw + 2.0, 20.0, 10.0, 10.0],  # wholly outside
                [-30.0, -30.0, 10.0, 10.0],  # wholly outside
                [fw - 2.0, fh - 2.0, 2.0, 2.0],  # the last pixels
                [0.0, 0.0, float(fw), float(fh)],  # the whole frame
                [10.3, 20.7, 0.0, 0.0],  # empty
                [40.0, 40.0, -6.0, 8.0],  # negative width
            ]
        )
        parts.append(edge)
        b = np.concatenate(parts)
        boxes.append(b)
        fis.append(np.full(len(b), f))
    all_boxes, all_fi = np.concatenate(boxes), np.concatenate(fis)
    order = rng.permutation(len(all_boxes))
    return all_boxes[order], all_fi[order]


# refine_boxes_batched


@pytest.mark.parametrize("game", ["Pong", *ALE_GAMES])
def test_refine_batched_equals_per_frame_on_real_frames(real_frames, game):
    frames, oracle = real_frames[game]
    rng = np.random.default_rng(sum(map(ord, game)))
    changed = 0
    for _ in range(2):
        boxes, fi = adversarial_boxes(rng, oracle)
        got = refine_boxes_batched(frames, boxes, fi)
        np.testing.assert_array_equal(got, per_frame_refine(frames, boxes, fi))
        changed += int((got != boxes).any(axis=1).sum())
    # Not vacuous: many boxes were tightened, and the outside ones were kept.
    assert changed > len(oracle)


def test_refine_batched_tightens_grown_oracle_boxes(real_frames):
    # The grown loose boxes of Pong come back to the objects, as refine_boxes does.
    frames, oracle = real_frames["Pong"]
    boxes = np.concatenate(oracle)
    fi = np.repeat(np.arange(len(oracle)), [len(b) for b in oracle])
    loose = boxes + np.array([-3.0, -3.0, 6.0, 6.0])
    np.testing.assert_array_equal(
        refine_boxes_batched(frames, loose, fi), per_frame_refine(frames, loose, fi)
    )
    assert (
        np.abs(refine_boxes_batched(frames, loose, fi) - boxes).max() < np.abs(loose - boxes).max()
    )


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5, 1.0, -0.2])
def test_refine_batched_margins(real_frames, margin):
    frames, oracle = real_frames["Skiing"]
    boxes, fi = adversarial_boxes(np.random.default_rng(7), oracle)
    np.testing.assert_array_equal(
        refine_boxes_batched(frames, boxes, fi, margin=margin),
        per_frame_refine(frames, boxes, fi, margin),
    )


def test_refine_batched_ties_follow_the_per_box_order():
    # Few colours and blobs of equal size: the modes and the votes tie often, so the colour and
    # region chosen hang on the tie rules (smallest colour, lowest OpenCV label).
    rng = np.random.default_rng(11)
    palette = np.array([[0, 0, 0], [200, 72, 72], [72, 200, 72], [72, 72, 200]], dtype=np.uint8)
    frames = palette[rng.integers(0, 4, (6, 210, 160))]
    blocky = np.kron(rng.integers(0, 3, (6, 105, 80)), np.ones((2, 2), dtype=np.int64))
    frames[3:] = palette[blocky[3:]]
    # Equal blobs side by side, on odd and even rows and columns, diagonal neighbours.
    frames[0, 100:130, 60:100] = 0
    for r0, c0 in [
        (101, 61),
        (101, 66),
        (104, 62),
        (105, 70),
        (110, 61),
        (110, 64),
        (111, 67),
        (120, 70),
    ]:
        frames[0, r0 : r0 + 2, c0 : c0 + 2] = palette[1]
    boxes = np.c_[rng.uniform(-10, 170, (600, 2)), rng.uniform(1, 30, (600, 2))]
    boxes = np.concatenate(
        [boxes, [[58.0, 98.0, 20.0, 26.0], [60.0, 100.0, 14.0, 14.0], [61.0, 101.0, 12.0, 20.0]]]
    )
    fi = np.concatenate([rng.integers(0, 6, 600), [0, 0, 0]])
    got = refine_boxes_batched(frames, boxes, fi)
    np.testing.assert_array_equal(got, per_frame_refine(frames, boxes, fi))
    assert (got != boxes).any(axis=1).sum() > 300


def test_refine_batched_equal_regions_resolve_by_opencv_label_order():
    # Two 2x2 blobs of the object colour with equal votes: A from crop row 9, column 8, and B from
    # crop row 8, column 12. OpenCV scans 2x2 blocks, so A (same block row, further left) gets the
    # lower label and wins in refine_boxes; labelled from an odd canvas row, B would.
    frames = np.zeros((2, 210, 160, 3), np.uint8)
    frames[:] = (144, 72, 17)
    boxes, fi, expected = [], [], []
    for k, (x, y) in enumerate([(40, 40), (100, 30), (20, 120), (90, 150), (120, 90)]):
        f = k % 2
        frames[f, y + 5 : y + 7, x + 4 : x + 6] = (236, 236, 236)  # A
        frames[f, y + 4 : y + 6, x + 8 : x + 10] = (236, 236, 236)  # B
        # Boxes of odd and even heights before each pair, so that crops start on either parity.
        boxes += [[x - 20.0, y, 4.0, 3.0 + k], [float(x), float(y), 16.0, 16.0]]
        fi += [f, f]
        expected.append([x + 4.0, y + 5.0, 2.0, 2.0])
    boxes_arr, fi_arr = np.array(boxes), np.array(fi)
    got = refine_boxes_batched(frames, boxes_arr, fi_arr)
    np.testing.assert_array_equal(got, per_frame_refine(frames, boxes_arr, fi_arr))
    np.testing.assert_array_equal(got[1::2], expected)


@pytest.mark.parametrize("few", [0, 3])
def test_refine_batched_special_cases(monkeypatch, few):
    # few=0: every batch takes the batched path, even one box; 3: the shipped dispatch.
    monkeypatch.setattr(postprocess, "_FEW_BOXES", few)
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:] = (144, 72, 17)
    frame[120:124, 80:82] = (236, 236, 236)  # a ball
    frame[0:6, 0:5] = (92, 186, 92)  # an object in the corner
    frames = np.stack([frame, frame[::-1].copy()])
    boxes = np.array(
        [
            [79.0, 119.0, 4.0, 6.0],  # tightened to the ball
            [79.5, 119.5, 0.5, 0.5],  # crop under 3 px: kept
            [20.0, 150.0, 10.0, 10.0],  # centre holds only background: kept
            [-2.0, -1.0, 6.0, 6.0],  # clipped at the border, tightened
            [300.0, 300.0, 5.0, 5.0],  # wholly outside: kept
            [79.0, 119.0, 4.0, 6.0],  # the same box on the mirrored frame: the ball is elsewhere
        ]
    )
    fi = np.array([0, 0, 0, 0, 0, 1])
    got = refine_boxes_batched(frames, boxes, fi)
    np.testing.assert_array_equal(got, per_frame_refine(frames, boxes, fi))
    np.testing.assert_array_equal(got[0], [80, 120, 2, 4])
    np.testing.assert_array_equal(got[1:3], boxes[1:3])
    np.testing.assert_array_equal(got[3], [0, 0, 5, 6])
    np.testing.assert_array_equal(got[4:], boxes[4:])
    # Nothing to do, or nothing inside the frames.
    assert refine_boxes_batched(frames, np.zeros((0, 4)), np.zeros(0, dtype=int)).shape == (0, 4)
    assert refine_boxes_batched(frames, [], []).shape == (0, 4)
    np.testing.assert_array_equal(refine_boxes_batched(frames, boxes[4:5], [1]), boxes[4:5])
    # Frames of another size work as refine_boxes does.
    small = np.ascontiguousarray(frames[:, 100:140, 60:100])
    sb = np.array([[19.0, 19.0, 4.0, 6.0], [35.0, 35.0, 10.0, 10.0]])
    np.testing.assert_array_equal(
        refine_boxes_batched(small, sb, [0, 1]), per_frame_refine(small, sb, np.array([0, 1]))
    )


def test_refine_batched_many_chunks_give_the_same_boxes(real_frames, monkeypatch):
    frames, oracle = real_frames["Freeway"]
    boxes, fi = adversarial_boxes(np.random.default_rng(5), oracle)
    whole = refine_boxes_batched(frames, boxes, fi)
    monkeypatch.setattr(postprocess, "_CANVAS_PIXELS", 3000)
    np.testing.assert_array_equal(refine_boxes_batched(frames, boxes, fi), whole)
    np.testing.assert_array_equal(whole, per_frame_refine(frames, boxes, fi))


def test_refine_batched_bad_arguments_are_clear_errors():
    frames = np.zeros((2, 210, 160, 3), np.uint8)
    box = np.array([[10.0, 10.0, 5.0, 5.0]])
    with pytest.raises(
        ValueError, match=r"frames must be \(N, H, W, 3\), got shape \(210, 160, 3\)"
    ):
        refine_boxes_batched(frames[0], box, [0])
    with pytest.raises(TypeError, match="frames must be uint8, got float32"):
        refine_boxes_batched(frames.astype(np.float32), box, [0])
    with pytest.raises(
        ValueError, match=r"boxes must be \(M, 4\) \(x, y, w, h\), got shape \(1, 5\)"
    ):
        refine_boxes_batched(frames, np.ones((1, 5)), [0])
    with pytest.raises(
        ValueError, match=r"frame_index must have shape \(1,\) \(one per box\), got \(2,\)"
    ):
        refine_boxes_batched(frames, box, [0, 1])
    with pytest.raises(TypeError, match="frame_index must hold integers, got float64"):
        refine_boxes_batched(frames, box, [0.0])
    with pytest.raises(
        ValueError, match=r"frame_index must lie in \[0, 2\) for 2 frames, got \[2, 2\]"
    ):
        refine_boxes_batched(frames, box, [2])
    with pytest.raises(ValueError, match=r"frame_index must lie in \[0, 2\).*got \[-1, -1\]"):
        refine_boxes_batched(frames, box, [-1])
    with pytest.raises(ValueError, match="boxes must be finite, got NaN or infinity"):
        refine_boxes_batched(frames, [[np.nan, 1.0, 2.0, 3.0]], [0])


# suppress_duplicates_batched


def test_suppress_batched_equals_per_frame_on_real_boxes(real_frames):
    rng = np.random.default_rng(2)
    for game, (_, oracle) in real_frames.items():
        boxes, fi = adversarial_boxes(rng, oracle)
        # Scores with ties, as a trained detector's saturated probabilities have.
        scores = rng.choice([0.6, 0.8, 0.95, 1.0], len(boxes))
        keep = suppress_duplicates_batched(boxes, scores, fi)
        np.testing.assert_array_equal(keep, per_frame_suppress(boxes, scores, fi), err_msg=game)
        assert len(keep) < len(boxes)  # the duplicates went


def test_suppress_batched_long_chain_of_duplicates():
    # Each box is a duplicate of its neighbours only: greedy keeps every other box, which the
    # fixpoint reaches only after as many rounds as the chain is long.
    n = 40
    boxes = np.c_[np.arange(n) * 1.0, np.zeros(n), np.full(n, 4.0), np.full(n, 4.0)]
    scores = np.linspace(1.0, 0.5, n)
    fi = np.zeros(n, dtype=int)
    keep = suppress_duplicates_batched(
        boxes, scores, fi, SuppressionConfig(iou_threshold=0.5, centre_fraction=0.0)
    )
    np.testing.assert_array_equal(keep, np.arange(0, n, 2))
    np.testing.assert_array_equal(
        keep, per_frame_suppress(boxes, scores, fi, SuppressionConfig(0.5, 0.0))
    )


@pytest.mark.parametrize("few", [0, 3])
def test_suppress_batched_frames_do_not_suppress_each_other(monkeypatch, few):
    monkeypatch.setattr(postprocess, "_FEW_BOXES", few)  # 0: the batched path even for 3 boxes
    box = [10.0, 10.0, 5.0, 5.0]
    keep = suppress_duplicates_batched([box, box, box], [0.5, 0.9, 0.7], [4, 2, 4])
    np.testing.assert_array_equal(keep, [1, 2])  # frame 2 first, then frame 4's best
    np.testing.assert_array_equal(suppress_duplicates_batched([box, box], [0.5, 0.9], [7, 7]), [1])


def test_suppress_batched_non_finite_values_match(real_frames):
    boxes, fi = adversarial_boxes(np.random.default_rng(9), real_frames["Skiing"][1])
    scores = np.random.default_rng(9).uniform(0, 1, len(boxes))
    scores[::7] = np.nan
    boxes[::11, 0] = np.nan
    boxes[5::13, 2] = np.inf
    with np.errstate(invalid="ignore"):
        keep = suppress_duplicates_batched(boxes, scores, fi)
        reference = per_frame_suppress(boxes, scores, fi)
    np.testing.assert_array_equal(keep, reference)


def test_suppress_batched_many_chunks(real_frames, monkeypatch):
    boxes, fi = adversarial_boxes(np.random.default_rng(4), real_frames["Freeway"][1])
    scores = np.random.default_rng(4).uniform(0, 1, len(boxes))
    whole = suppress_duplicates_batched(boxes, scores, fi)
    monkeypatch.setattr(postprocess, "_PAIR_CHUNK", 7)
    np.testing.assert_array_equal(suppress_duplicates_batched(boxes, scores, fi), whole)
    np.testing.assert_array_equal(whole, per_frame_suppress(boxes, scores, fi))


@pytest.mark.parametrize("few", [0, 3])
def test_suppress_batched_empty_and_bad_arguments(monkeypatch, few):
    monkeypatch.setattr(postprocess, "_FEW_BOXES", few)
    assert (
        suppress_duplicates_batched(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int)).tolist()
        == []
    )
    assert suppress_duplicates_batched([], [], []).tolist() == []
    with pytest.raises(ValueError, match="got 2 boxes but 1 scores"):
        suppress_duplicates_batched(np.ones((2, 4)), np.ones(1), [0, 0])
    with pytest.raises(
        ValueError, match=r"frame_index must have shape \(2,\) \(one per box\), got \(3,\)"
    ):
        suppress_duplicates_batched(np.ones((2, 4)), np.ones(2), [0, 0, 1])
    with pytest.raises(TypeError, match="frame_index must hold integers, got float64"):
        suppress_duplicates_batched(np.ones((2, 4)), np.ones(2), [0.0, 1.0])


# Coordinates and scores from small sets, so that duplicates, exact ties and equal boxes abound.
coord = st.sampled_from([-5.0, 0.0, 0.5, 1.0, 2.0, 3.5, 4.0, 10.0, 11.0, 150.0])
size = st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 4.5, 16.0, 40.0])
box = st.tuples(coord, coord, size, size)
entry = st.tuples(box, st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0]), st.integers(-2, 3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(entry, max_size=40),
    iou=st.sampled_from([0.01, 0.3, 0.5, 1.0]),
    centre=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_suppress_batched_property(entries, iou, centre):
    cfg = SuppressionConfig(iou_threshold=iou, centre_fraction=centre)
    boxes = np.array([e[0] for e in entries], dtype=np.float64).reshape(-1, 4)
    scores = np.array([e[1] for e in entries], dtype=np.float64)
    fi = np.array([e[2] for e in entries], dtype=np.int64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(postprocess, "_FEW_BOXES", 0)  # the batched path for every size
        np.testing.assert_array_equal(
            suppress_duplicates_batched(boxes, scores, fi, cfg),
            per_frame_suppress(boxes, scores, fi, cfg),
        )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    boxes=st.lists(
        st.tuples(
            st.floats(-50, 220, allow_nan=False),
            st.floats(-50, 220, allow_nan=False),
            st.floats(0, 120, allow_nan=False),
            st.floats(0, 120, allow_nan=False),
        ),
        max_size=30,
    ),
    seed=st.integers(0, 2**16),
)
def test_refine_batched_property(boxes, seed):
    rng = np.random.default_rng(seed)
    # Three colours in 2x2 blocks and one frame of noise: ties and fragmented regions.
    palette = np.array([[0, 0, 0], [236, 236, 236], [92, 186, 92]], dtype=np.uint8)
    frames = palette[np.kron(rng.integers(0, 3, (3, 105, 80)), np.ones((2, 2), dtype=np.int64))]
    frames[2] = rng.integers(0, 256, (210, 160, 3), dtype=np.uint8)
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    fi = rng.integers(0, 3, len(b))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(postprocess, "_FEW_BOXES", 0)  # the batched path for every size
        want = per_frame_refine(frames, b, fi)
        np.testing.assert_array_equal(refine_boxes_batched(frames, b, fi), want)
    # The detector's compiled kernel too, with the colours (moc_envs.kernels.boxes).
    got, packed = box_kernels.refine(frames, b, fi)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        postprocess.unpack_colours(packed), postprocess.refine_and_colour(frames, b, fi)[1]
    )


# SpaceDetector.detect: the batched calls change nothing.


@pytest.mark.parametrize("game", ["Pong", "Skiing"])
def test_detect_equals_the_per_frame_post_processing(monkeypatch, game):
    pytest.importorskip("torch")
    import moc_envs.perception.space_detector as space_detector
    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector

    data = ROOT / "data" / game / "test_raw.npz"
    folder = ROOT / "weights" / game
    if not data.exists() or not folder.exists():
        pytest.skip(f"needs {data} and {folder}")
    frames = np.load(data)["frames"].reshape(-1, 210, 160, 3)[:24]
    detector = SpaceDetector.from_pretrained(folder, get_game(game))
    batched = detector.detect(frames)

    def suppress(boxes, scores, fi, iou, centre):
        config = SuppressionConfig(iou, centre)
        return per_frame_suppress(
            np.asarray(boxes, np.float64), np.asarray(scores, np.float64), fi, config
        )

    def refine(frames, boxes, fi):
        return per_frame_refine(frames, boxes, fi), np.zeros(len(boxes), np.int64)

    # The detector's compiled kernels swapped for the per-frame definitions.
    monkeypatch.setattr(
        space_detector,
        "box_kernels",
        SimpleNamespace(suppress=suppress, drawn=drawn_mask, refine=refine),
    )
    reference = detector.detect(frames)
    assert sum(map(len, batched)) > len(frames)
    for got, want in zip(batched, reference, strict=True):
        assert [(d.category, d.x, d.y, d.w, d.h, d.score) for d in got] == [
            (d.category, d.x, d.y, d.w, d.h, d.score) for d in want
        ]


# resize_frames


@pytest.mark.parametrize("n", [1, 7, 64, 200])
def test_resize_frames_is_the_per_frame_area_resize(real_frames, n):
    rng = np.random.default_rng(n)
    real = np.concatenate([f for f, _ in real_frames.values()])
    frames = np.concatenate(
        [
            rng.integers(0, 256, (n, 210, 160, 3), dtype=np.uint8),
            real[rng.integers(0, len(real), n)],
        ]
    )
    expected = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in frames])
    for batch in (frames[:n], frames[n:]):
        got = resize_frames(batch)
        assert got.shape == (n, 128, 128, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(resize_frames(frames), expected)
    np.testing.assert_array_equal(resize_frames(frames[n:]), expected[n:])


# refine_and_colour: the object colour the refinement looks for


@pytest.mark.parametrize("few", [0, 64])
def test_refine_and_colour_gives_the_objects_colour(real_frames, monkeypatch, few):
    monkeypatch.setattr(postprocess, "_FEW_BOXES", few)  # the batched path, then the per-frame one
    frames, oracle = real_frames["Boxing"]
    boxes = np.concatenate(oracle)
    fi = np.repeat(np.arange(len(oracle)), [len(b) for b in oracle])
    loose = boxes + np.array([-3.0, -3.0, 6.0, 6.0])
    refined, colours = postprocess.refine_and_colour(frames, loose, fi)
    np.testing.assert_array_equal(refined, refine_boxes_batched(frames, loose, fi))
    assert colours.shape == (len(boxes), 3) and colours.dtype == np.uint8
    # Each colour is the most common pixel colour inside the refined box other than the ring's.
    for k in range(len(boxes)):
        x, y, w, h = refined[k].astype(int)
        inside = frames[fi[k], y : y + h, x : x + w].reshape(-1, 3)
        assert (inside == colours[k]).all(axis=1).any()
    # Boxing's two boxers: one white, one black, never the ring's green.
    ring = np.array([110, 156, 66], np.uint8)
    assert not (colours == ring).all(axis=1).any()
    assert len(np.unique(colours, axis=0)) >= 2


def test_refine_and_colour_background_and_edge_cases():
    frame = np.zeros((1, 210, 160, 3), np.uint8)
    frame[0, 50:60, 40:44] = (200, 72, 72)
    boxes = np.array(
        [
            [36.0, 46.0, 12.0, 18.0],  # around the object: its colour
            [100.0, 100.0, 10.0, 10.0],  # over empty background: the background's
            [159.0, 209.0, 1.0, 1.0],  # a crop under 3x3 at the corner: the pixel under its centre
        ]
    )
    _, colours = postprocess.refine_and_colour(frame, boxes, np.zeros(3, np.int64))
    np.testing.assert_array_equal(colours, [[200, 72, 72], [0, 0, 0], [0, 0, 0]])
    _, none = postprocess.refine_and_colour(frame, np.zeros((0, 4)), np.zeros(0, np.int64))
    assert none.shape == (0, 3)
    np.testing.assert_array_equal(postprocess.unpack_colours(np.array([0xC84848])), [[200, 72, 72]])


@pytest.mark.parametrize("game", ["Pong", *ALE_GAMES])
def test_refine_and_colour_batched_equals_per_frame(real_frames, monkeypatch, game):
    frames, oracle = real_frames[game]
    boxes, fi = adversarial_boxes(np.random.default_rng(11), oracle)
    monkeypatch.setattr(postprocess, "_FEW_BOXES", 0)
    batched = postprocess.refine_and_colour(frames, boxes, fi)
    monkeypatch.setattr(postprocess, "_FEW_BOXES", 10**9)
    per_frame = postprocess.refine_and_colour(frames, boxes, fi)
    np.testing.assert_array_equal(batched[0], per_frame[0])
    np.testing.assert_array_equal(batched[1], per_frame[1])


def test_detect_names_objects_by_colour_with_a_colour_classifier():
    # A classifier that reads nothing but the colour (z_what and size standardised away) names
    # Pong's objects right: the detector hands it the colours of the full-size frame.
    pytest.importorskip("torch")
    from moc_envs.games import get_game
    from moc_envs.perception.classifier import ZWhatClassifier
    from moc_envs.perception.space_detector import SpaceDetector

    folder = ROOT / "weights" / "Pong"
    detector = SpaceDetector.from_pretrained(folder, get_game("Pong"))
    d = detector.classifier.z_what_dim
    rgb = np.array([[236, 236, 236], [213, 130, 74], [92, 186, 92]], np.float32) / 255.0
    colour_only = ZWhatClassifier(
        classes=("Ball", "Enemy", "Player"),
        centroids=np.hstack([np.zeros((3, d + 2)), rgb]),
        centroid_class=np.arange(3),
        radius=np.full(3, 0.2),
        mean=np.zeros(d + 5),
        scale=np.r_[np.full(d + 2, 1e6), np.ones(3)],
        max_ratio=1.0,
        size_dims=2,
        colour_dims=3,
    )
    detector.classifier = colour_only
    pong = np.load(FIXTURE)
    found = 0
    for frame_dets, boxes, cats in zip(
        detector.detect(pong["frames"]), pong["boxes"], pong["categories"], strict=True
    ):
        for det in frame_dets:
            centre = np.array([det.x + det.w / 2, det.y + det.h / 2])
            truth = np.linalg.norm(boxes[:, :2] + boxes[:, 2:] / 2 - centre, axis=1)
            if truth.min() < 3:
                assert det.category == str(cats[truth.argmin()])
                found += 1
    assert found >= len(pong["frames"]) * 2
