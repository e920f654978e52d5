"""Detector output is checked at the env boundary (issue 10, item 4): errors, drops, clipping."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moc_envs import GAMES, Detection, DetectorOutputError, make_vec
from moc_envs.perception.detection import validate_detections


class Scripted:
    """A stateless detector (no reset) that returns whatever ``output`` holds for every frame.

    ``output`` is either one frame's detection list, repeated for each frame, or, with
    ``raw=True``, the exact object ``detect`` returns.
    """

    def __init__(self, output: Any = (), raw: bool = False) -> None:
        self.output = output
        self.raw = raw

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> Any:
        if self.raw:
            return self.output
        return [list(self.output) for _ in frames]


NAN = float("nan")
INF = float("inf")


# ------------------------------------------------------------ the shared check, unit level
@pytest.mark.parametrize(
    ("output", "pattern"),
    [
        (None, r"Scripted\.detect returned NoneType None; expected a list of 2 per-frame lists"),
        ({0: [], 1: []}, r"returned dict \{0: \[\], 1: \[\]\}; expected a list of 2"),
        ("ab", r"returned str 'ab'; expected a list of 2"),
        (([],), r"returned 1 per-frame lists for 2 frame\(s\); expected .* got tuple \(\[\],\)"),
        ([[], [], []], r"returned 3 per-frame lists for 2 frame\(s\)"),
        ([[], None], r"returned NoneType None for frame 1; expected a list of Detection"),
        ([[], {"x": 1}], r"returned dict \{'x': 1\} for frame 1"),
        ([[(1, 2, 3, 4)], []], r"returned tuple \(1, 2, 3, \.\.\.\) as detection 0 of frame 0; "
         r"expected a moc_envs\.Detection"),
        ([[], [Detection("Ball", 1, 2, 3, 4), "Ball"]], r"returned str 'Ball' as detection 1 of frame 1"),
        ([[Detection("Ball", "12", 2, 3, 4)], []], r"Detection with x=str '12' \(detection 0 of "
         r"frame 0\); expected a real number"),
        ([[Detection("Ball", 1, None, 3, 4)], []], r"with y=NoneType None"),  # type: ignore[arg-type]
        ([[Detection("Ball", 1, 2, 3, 4, score="high")], []], r"with score=str 'high'"),
        ([[Detection("Ball", 1, 2, True, 4)], []], r"with w=bool True"),
        ([[Detection("Ball", 1, 2, 3, np.array([4.0]))], []], r"with h=ndarray"),
        ([[Detection(3, 1, 2, 3, 4)], []], r"category int 3 \(detection 0 of frame 0\); expected a str"),
        ([[Detection(None, 1, 2, 3, 4)], []], r"category NoneType None"),  # type: ignore[arg-type]
    ],
)
def test_malformed_output_names_the_detector_and_what_it_returned(output: Any, pattern: str) -> None:
    with pytest.raises(DetectorOutputError, match=pattern):
        validate_detections(output, 2, Scripted())


def test_non_finite_boxes_and_scores_are_dropped_and_counted() -> None:
    good = Detection("Ball", 10, 20, 2, 4)
    frame = [
        Detection("Ball", NAN, 20, 2, 4),
        Detection("Ball", 10, INF, 2, 4),
        Detection("Ball", 10, 20, -INF, 4),
        Detection("Ball", 10, 20, 2, NAN),
        Detection("Ball", 10, 20, 2, 4, score=NAN),
        Detection("Ball", 10**400, 20, 2, 4),  # an int beyond float range
        good,
    ]
    out, dropped = validate_detections([frame, [good]], 2, Scripted())
    assert out == [[good], [good]] and dropped == [6, 0]
    assert out[0][0] is good  # in-frame boxes pass untouched


def test_boxes_are_clipped_to_the_frame_and_empty_ones_dropped() -> None:
    frame = [
        Detection("Car", 156, 27, 8, 10),  # straddles the right edge
        Detection("Car", -5, -3, 10, 10),  # straddles the top-left corner
        Detection("Ball", 1e6, 100, 2, 4),  # far right: nothing left inside
        Detection("Ball", -1e300, 100, 1e300, 4),  # ends exactly at x=0
        Detection("Ball", 50, 300, 2, 4),  # below the frame
        Detection("Ball", 50, 100, 0, 4),  # zero width
        Detection("Ball", 50, 100, 2, -4),  # negative height
        Detection("Ball", 0, 0, 160, 210),  # the whole frame
        Detection("Ball", 100, 200, 1e308, 1e308),  # huge: clipped at the bottom-right corner
    ]
    out, dropped = validate_detections([frame], 1, Scripted())
    assert dropped == [5]
    boxes = [(d.x, d.y, d.w, d.h) for d in out[0]]
    assert boxes == [(156, 27, 4, 10), (0, 0, 5, 7), (0, 0, 160, 210), (100, 200, 60, 10)]


def test_sequences_and_numpy_numbers_are_accepted() -> None:
    det = Detection("Ball", np.float32(10.5), np.int64(20), np.float64(2), 4, score=np.float32(0.5))
    out, dropped = validate_detections(((det,), [det]), 2, Scripted())
    assert out == [[det], [det]] and dropped == [0, 0]
    assert validate_detections([], 0, Scripted()) == ([], [])


# ------------------------------------------------------------ through the envs
@pytest.mark.parametrize("game", ["Asterix", "Carnival", "Pong"])
def test_nan_boxes_give_observations_inside_the_space(make_moc, game: str) -> None:
    category = next(iter(GAMES[game].slot_ranges))
    detector = Scripted([Detection(category, NAN, 50, 8, 8), Detection(category, 40, 50, 8, 8)])
    env = make_moc(game, detector=detector)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["dropped_detections"] == 1 and len(info["objects"]) == 1
    for _ in range(3):  # the tracker (scipy) and the labels get only finite boxes
        obs, *_, info = env.step(0)
        assert env.observation_space.contains(obs) and info["dropped_detections"] == 1


def test_far_away_box_gives_no_label_instead_of_255(make_moc) -> None:
    env = make_moc("Pong", detector=Scripted([Detection("Ball", 1e6, 100, 2, 4)]))
    obs, info = env.reset(seed=0)
    assert "ball_x" not in info["labels"] and info["dropped_detections"] == 1
    assert obs[:, 0].sum() == 0


@pytest.mark.parametrize(
    ("output", "pattern"),
    [
        (None, r"Scripted\.detect returned NoneType None; expected a list of 1"),
        ([[Detection("Ball", "80", 100, 2, 4)]], r"x=str '80'"),
        # A bare tuple instead of a Detection: read as frame 0's sequence, of non-Detections.
        ([("Ball", 80, 100, 2, 4)], r"returned str 'Ball' as detection 0 of frame 0"),
    ],
)
def test_malformed_output_raises_in_the_env(make_moc, output: Any, pattern: str) -> None:
    env = make_moc("Pong", detector=Scripted(output, raw=True))
    with pytest.raises(DetectorOutputError, match=pattern):
        env.reset(seed=0)


def test_vector_env_counts_drops_per_env_and_checks_the_batch() -> None:
    class PerRow:
        def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
            # Row i gets i NaN boxes and one good ball.
            return [
                [Detection("Ball", NAN, 0, 1, 1)] * i + [Detection("Ball", 80, 100, 2, 4)]
                for i in range(len(frames))
            ]

    envs = make_vec("MOC/Pong-v0", 3, detector=PerRow())  # rows 0..2 in one batch
    try:
        obs, infos = envs.reset(seed=0)
        assert envs.observation_space.contains(obs)
        np.testing.assert_array_equal(infos["dropped_detections"], [0, 1, 2])
        assert infos["dropped_detections"].dtype.kind == "i"
        obs, _, _, _, infos = envs.step(np.zeros(3, dtype=np.int64))
        np.testing.assert_array_equal(infos["dropped_detections"], [0, 1, 2])
    finally:
        envs.close()
    short = make_vec("MOC/Pong-v0", 2, detector=Scripted([[]], raw=True))
    try:
        with pytest.raises(DetectorOutputError, match=r"returned 1 per-frame lists for 2 frame"):
            short.reset(seed=0)
    finally:
        short.close()


# ------------------------------------------------------------ property: any output, valid obs
_COORD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-20, max_value=230),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 159.5, 160.0, 210.0, np.float32(80.5)]),
)
_CATEGORY = st.sampled_from(["Player", "Enemy", "Ball", "unknown", "object", ""])
_DETECTION = st.builds(Detection, _CATEGORY, _COORD, _COORD, _COORD, _COORD, score=_COORD)
_FRAME = st.lists(_DETECTION, max_size=25)
_LOW, _HIGH = 0, 255  # AtariARI labels are RAM bytes


def _check_labels(labels: dict[str, Any]) -> None:
    for name, value in labels.items():
        assert type(value) is int and _LOW <= value <= _HIGH and math.isfinite(value), name


@pytest.fixture(scope="module")
def scripted_pong():
    detector = Scripted()
    env = gym.make("MOC/Pong-v0", detector=detector)
    yield env, detector
    env.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_FRAME, min_size=1, max_size=4))
def test_any_detector_output_gives_a_valid_observation(scripted_pong, frames) -> None:
    env, detector = scripted_pong
    detector.output = frames[0]
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _check_labels(info["labels"])
    for found in frames[1:]:
        detector.output = found
        obs, *_, info = env.step(0)
        assert env.observation_space.contains(obs)
        _check_labels(info["labels"])
        assert 0 <= info["dropped_detections"] <= len(found)
        assert all(0 <= d.x and d.x + d.w <= 160 and d.w > 0 for d in info["objects"])
        assert all(0 <= d.y and d.y + d.h <= 210 and d.h > 0 for d in info["objects"])


@pytest.fixture(scope="module")
def scripted_vec():
    class Rows:
        output: list[list[Detection]] = [[], []]

        def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> Any:
            return self.output

    detector = Rows()
    envs = make_vec("MOC/Pong-v0", 2, detector=detector)  # one batch of both rows
    yield envs, detector
    envs.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.lists(_FRAME, min_size=2, max_size=2), min_size=1, max_size=3))
def test_any_batched_output_gives_valid_vector_observations(scripted_vec, steps) -> None:
    envs, detector = scripted_vec
    detector.output = steps[0]
    obs, infos = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    for batch in steps[1:]:
        detector.output = batch
        obs, *_, infos = envs.step(np.zeros(2, dtype=np.int64))
        assert envs.observation_space.contains(obs)
        for i in range(2):
            assert 0 <= infos["dropped_detections"][i] <= len(batch[i])
            for name, values in infos["labels"].items():
                if not name.startswith("_") and infos["labels"][f"_{name}"][i]:
                    assert _LOW <= int(values[i]) <= _HIGH
