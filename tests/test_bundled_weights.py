"""The shipped Pong detector finds the ball and both paddles on stored frames.

``tests/fixtures/pong_frames.npz`` holds four full-size Pong frames from the test split of
``data/Pong`` (ball mid-field, paddles fully visible) with their OCAtari RAM boxes. Skipped
until ``weights/Pong`` is shipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moc_envs.weights import REQUIRED_FILES, weights_dir

FRAMES = Path(__file__).parent / "fixtures" / "pong_frames.npz"
PONG = weights_dir("Pong")
pytestmark = pytest.mark.skipif(
    not all((PONG / f).is_file() for f in REQUIRED_FILES), reason=f"no shipped Pong weights in {PONG}"
)


def test_pong_weights_find_ball_and_paddles():
    from moc_envs.games import get_game
    from moc_envs.space_detector import SpaceDetector
    from trainers.detection_metrics import match_pairs

    with np.load(FRAMES) as z:
        frames, boxes, cats = z["frames"], z["boxes"], z["categories"]
    det = SpaceDetector.from_pretrained(PONG, get_game("Pong"), device="cpu")
    found = det.detect(frames)
    for i, dets in enumerate(found):
        pred = np.array([[d.x, d.y, d.w, d.h] for d in dets]).reshape(-1, 4)
        pi, gi = match_pairs(pred, boxes[i], "relative")
        assert sorted(cats[i][gi].tolist()) == ["Ball", "Enemy", "Player"], f"frame {i}: found {cats[i][gi]}"
        assert len(dets) <= 4, f"frame {i}: {len(dets)} detections for 3 objects"
        if det.classifier is not None:
            assert [dets[p].category for p in pi] == cats[i][gi].tolist()


def test_env_runs_on_bundled_weights():
    import gymnasium as gym

    env = gym.make("MOC/Pong-v0", detector="space", device="cpu")
    try:
        obs, info = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
    finally:
        env.close()
