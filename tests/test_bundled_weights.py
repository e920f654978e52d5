"""The shipped Pong detector finds the ball and both paddles on stored frames.

``tests/fixtures/pong_frames.npz`` holds four full-size Pong frames from the test split of
``data/Pong`` (ball mid-field, paddles fully visible) with their OCAtari RAM boxes. Skipped
until ``weights/Pong`` is shipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.weights.search import REQUIRED_FILES, bundled_games, weights_dir

FRAMES = Path(__file__).parent / "fixtures" / "pong_frames.npz"
PONG = weights_dir("Pong")
pytestmark = pytest.mark.skipif(
    not all((PONG / f).is_file() for f in REQUIRED_FILES), reason=f"no shipped Pong weights in {PONG}"
)


def test_pong_weights_find_ball_and_paddles():
    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector
    from trainers.evaluate.detection_metrics import iou_matrix, match_pairs

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
        if det.refine:  # boxes tightened to the pixels fit the objects, not just their centres
            assert (iou_matrix(pred[pi], boxes[i][gi]).diagonal() >= 0.5).all(), f"frame {i}: {pred[pi]} vs {boxes[i][gi]}"


def test_env_defaults_to_bundled_weights():
    import gymnasium as gym

    from moc_envs.perception.space_detector import SpaceDetector

    env = gym.make("MOC/Pong-v0", device="cpu")  # no detector argument: the learned one
    try:
        assert isinstance(_detector(env), SpaceDetector) and _detector(env).classifier is not None
        obs, info = env.reset(seed=0)
        seen: set[str] = set()
        for _ in range(20):
            obs, *_, info = env.step(env.action_space.sample())
            seen |= {d.category for d in info["objects"]}
        assert env.observation_space.contains(obs)
        # The shipped classifier names the paddles (the ball may be off screen after a point).
        assert {"Player", "Enemy"} <= seen
        assert obs[:, 0].sum() >= 2  # at least two slots filled
    finally:
        env.close()


def _detector(env):
    """The detector of a MOC env (through Gymnasium's wrappers)."""
    while not hasattr(env, "detector"):
        env = env.env
    return env.detector


def test_games_without_weights_name_the_training_commands(tmp_path, monkeypatch):
    import gymnasium as gym

    import moc_envs.weights.search
    from moc_envs.errors import MissingWeightsError

    # Every game ships weights: an installation whose bundled root is empty stands in for a
    # game without them.
    monkeypatch.setattr(moc_envs.weights.search, "weights_root", lambda: tmp_path)
    monkeypatch.delenv("MOC_ENVS_WEIGHTS", raising=False)
    game = "Tennis"
    with pytest.raises(MissingWeightsError, match=f"No trained SPACE\\+MOC detector for {game}") as err:
        gym.make(f"MOC/{game}-v0")
    assert f"moc-envs train-detector --game {game}" in str(err.value)


def test_demo_defaults_to_bundled_weights(tmp_path, capsys):
    from moc_envs.cli import main

    out = tmp_path / "pong.gif"
    assert main(["demo", "--game", "Pong", "--steps", "10", "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(space detector)" in text and out.is_file()


@pytest.mark.parametrize("game", bundled_games())
def test_a_black_frame_is_detected_without_error(game):
    # Asterix's first frame is black: no cell is present, and a classifier that reads colours
    # must not be asked to name an empty set without them.
    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector

    detector = SpaceDetector.from_pretrained(weights_dir(game), get_game(game), device="cpu")
    out = detector.detect(np.zeros((2, 210, 160, 3), np.uint8))
    assert len(out) == 2  # some detectors see things in black (Boxing's ring is not black)
    if game == "Asterix":  # its detector finds nothing there: the empty path is exercised
        assert out == [[], []] and detector.classifier.uses_colours


@pytest.mark.parametrize("game", bundled_games())
def test_every_shipped_game_runs_on_its_weights(game):
    import gymnasium as gym

    from moc_envs.games import get_game
    from moc_envs.perception.classifier import (
        CLASSIFIER_FILE,
        CLASSIFIER_JSON,
        LEGACY_CLASSIFIER_FILE,
        load_classifier,
    )
    from moc_envs.weights.manifest import verify_folder

    spec = get_game(game)
    folder = weights_dir(game)
    # The contents of a weight set: detector, config, verified classifier, card; < 10 MB.
    for name in ("card.json", "card.md"):
        assert (folder / name).is_file(), f"{game}: {name} missing"
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 10e6
    # Every shipped file is in the manifest and matches it; no pickle is shipped.
    listed = verify_folder(folder, spec.name).files
    assert set(listed) == {p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.json"}
    baseline = folder / "space"
    if baseline.is_dir():
        # The SPACE detector a lean one was distilled from: verified, loadable, and the one named.
        from moc_envs.perception.space_detector import SpaceDetector

        base_files = verify_folder(baseline, spec.name)
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model"]["image_encoder"] == "lean"
        assert cfg["distillation"]["teacher_detector_sha256"] == base_files.files["detector.safetensors"].sha256
        assert SpaceDetector.from_pretrained(baseline, spec).config.image_encoder == "space"
    assert {CLASSIFIER_FILE, CLASSIFIER_JSON, *REQUIRED_FILES} <= set(listed)
    assert not (folder / LEGACY_CLASSIFIER_FILE).exists()
    classes = set(load_classifier(folder, spec.name).classes)
    # Every category the classifier names has a slot, except ones the observation leaves out on
    # purpose (Breakout's brick pieces, SpaceInvaders' shields, MsPacman's pills: static, no
    # slot); those the card must name as dropped and score without.
    extra = classes - set(spec.category_names)
    assert classes & set(spec.category_names)
    card = json.loads((folder / "card.json").read_text())
    assert extra == set(card["evaluation"].get("dropped_categories") or []), (game, extra)
    env = gym.make(f"MOC/{game}-v0", device="cpu")
    try:
        obs, info = env.reset(seed=0)
        for _ in range(5):
            obs, *_, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert all(d.category in (*classes, "unknown") for d in info["objects"])
        # Detections without a slot stay in info["objects"] but never enter the observation.
        assert all(d.slot == -1 for d in info["objects"] if d.category not in spec.category_names)
    finally:
        env.close()


@pytest.mark.skipif("SpaceInvaders" not in bundled_games(), reason="no shipped SpaceInvaders weights")
def test_cpu_detector_encodes_only_the_kept_cells_and_agrees_with_the_torch_path():
    from moc_envs.envs.registration import make_ale_env
    from moc_envs.games import get_game
    from moc_envs.perception.detectors import make_detector
    from moc_envs.perception.frames import frame_source

    env = make_ale_env(get_game("SpaceInvaders"))
    env.reset(seed=0)
    grab, rng, frames = frame_source(env), np.random.default_rng(0), []
    for i in range(120):
        env.step(int(rng.integers(env.action_space.n)))
        if i % 30 == 29:
            frames.append(grab())
    env.close()
    frames = np.stack(frames)
    det = make_detector("space", "SpaceInvaders", "cpu")
    asked: list[int] = []
    encode = det._z_what_cpu

    def spy(images, b_idx, where, marks=None):
        asked.append(len(b_idx))
        return encode(images, b_idx, where, marks)

    det._z_what_cpu = spy
    found = det.detect(frames)
    b_idx, prob, _, z_all = det._infer_torch(frames)
    # Glimpses are encoded for the detections only, not for the suppressed duplicate cells...
    assert asked == [sum(len(d) for d in found)] and asked[0] < len(b_idx)
    # ...and each detection's z_what is the one the all-cells torch path gives its cell.
    for f, dets in enumerate(found):
        for d in dets:
            (cell,) = np.flatnonzero((b_idx == f) & np.isclose(prob, d.score, rtol=0, atol=1e-6))[:1]
            np.testing.assert_allclose(d.z_what, z_all[cell], atol=1e-4)
