"""The evaluation of what users get: held-out play, category-aware scores, spurious singleton slots."""

from __future__ import annotations

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.perception.postprocess import drawn_mask
from trainers.evaluate.held_out import POLICY_SETS, PolicyRun, drawn, make_play_policy, play
from trainers.evaluate.object_scores import frame_errors, score_objects

PONG = get_game("Pong")


def _frame(p: tuple[list[tuple[float, ...]], list[str]]) -> tuple[np.ndarray, list[str]]:
    return np.array(p[0], np.float64).reshape(-1, 4), p[1]


def test_a_box_of_the_wrong_category_is_a_false_positive_and_a_miss() -> None:
    truth = [_frame(([(140, 100, 4, 16), (20, 100, 4, 16), (80, 90, 2, 4)], ["Player", "Enemy", "Ball"]))]
    preds = [_frame(([(140, 100, 4, 16), (20, 100, 4, 16), (80, 90, 2, 4)], ["Player", "Ball", "Ball"]))]
    s = score_objects(PONG, preds, truth, [True])
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["category_accuracy"] == pytest.approx(2 / 3)
    assert s["per_category"]["Enemy"]["recall"] == 0.0 and s["per_category"]["Ball"]["precision"] == 0.5
    assert frame_errors(preds[0], truth[0]) == 2


def test_the_strict_criterion_is_five_pixels_and_the_relative_one_half_the_diagonal() -> None:
    truth = [_frame(([(140, 100, 4, 16)], ["Player"]))]
    # 6 px below: more than OCAtari's 5 px, less than half the 16.5 px diagonal.
    preds = [_frame(([(140, 106, 4, 16)], ["Player"]))]
    s = score_objects(PONG, preds, truth, [True])
    assert s["f1"] == 1.0 and s["f1_5px"] == 0.0


def test_categories_without_a_slot_are_left_out() -> None:
    truth = [_frame(([(140, 100, 4, 16)], ["Player"]))]
    preds = [_frame(([(140, 100, 4, 16), (60, 60, 8, 8), (90, 60, 8, 8)], ["Player", "unknown", "Block"]))]
    s = score_objects(PONG, preds, truth, [True])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 0, 0)


def test_a_singleton_slot_holding_a_box_no_truth_matches_is_counted() -> None:
    player = (140, 100, 4, 16)
    truth = [_frame(([player], ["Player"]))] * 4
    far = (140, 190, 40, 5)  # a bar at the bottom named Player, the player itself missed
    preds = [_frame(([player], ["Player"])), _frame(([far], ["Player"])), _frame(([far], ["Player"])),
             _frame(([], []))]
    s = score_objects(PONG, preds, truth, [True, False, False, False])
    assert s["spurious_singleton_frames"]["Player"] == 2
    assert s["spurious_singleton_share"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one prediction, truth and window flag per frame"):
        score_objects(PONG, preds, truth, [True])


def test_drawn_tells_a_sprite_from_plain_background() -> None:
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:] = (0, 0, 80)
    frame[50:54, 30:32] = 255
    assert drawn(frame, (30, 50, 2, 4))  # a box as tight as a one-colour sprite: grown, it shows both
    assert not drawn(frame, (100, 100, 6, 6))
    assert not drawn(frame, (170, 220, 4, 4))  # off the screen


def test_drawn_mask_matches_a_pixel_by_pixel_reading() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        frames = np.zeros((2, 210, 160, 3), np.uint8)
        for k in range(2):
            for _ in range(5):
                x, y = rng.integers(0, 160), rng.integers(0, 210)
                frames[k, y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = rng.integers(0, 255, 3)
        boxes = np.c_[rng.uniform(-10, 170, 20), rng.uniform(-10, 220, 20), rng.uniform(0, 30, 20), rng.uniform(0, 30, 20)]
        index = rng.integers(0, 2, 20)
        expected = []
        for i, (x, y, w, h) in zip(index, boxes, strict=True):
            x0, y0 = int(np.clip(np.floor(x), 0, 160)), int(np.clip(np.floor(y), 0, 210))
            x1, y1 = int(np.clip(np.ceil(x + w), 0, 160)), int(np.clip(np.ceil(y + h), 0, 210))
            crop = frames[i, y0:y1, x0:x1].reshape(-1, 3)
            expected.append(bool(len(crop)) and bool((crop != crop[0]).any()))
        assert drawn_mask(frames, boxes, index).tolist() == expected


def test_policies_hold_fire_and_refuse_unknown_names() -> None:
    import gymnasium as gym

    from moc_envs.envs.registration import make_ale_env

    env = make_ale_env(get_game("SpaceInvaders"))
    try:
        held = make_play_policy(PolicyRun("held", 5), "SpaceInvaders", env)
        actions = [held(np.zeros(128, np.uint8), []) for _ in range(200)]
        runs = sum(a != b for a, b in zip(actions, actions[1:], strict=False)) + 1
        assert runs <= 200 / 4  # held at least 4 steps each
        fire = make_play_policy(PolicyRun("fire", 5), "SpaceInvaders", env)
        meanings = env.unwrapped.get_action_meanings()
        fired = np.mean(["FIRE" in meanings[fire(np.zeros(128, np.uint8), [])] for _ in range(2000)])
        assert fired > 0.7
    finally:
        env.close()
    assert isinstance(env.action_space, gym.spaces.Discrete)
    with pytest.raises(ValueError, match="policy must be one of"):
        PolicyRun("clever", 0)
    assert {r.seed for r in POLICY_SETS["held-out"]}.isdisjoint({r.seed for r in POLICY_SETS["tune"]})


def test_play_records_windows_of_later_frames_with_truth() -> None:
    rec = play("Pong", PolicyRun("held", 7), frames=40, window=16, gap=50)
    assert rec.frames.shape == (40, 210, 160, 3) and len(rec.records) == 40
    assert [i for i, r in enumerate(rec.records) if r.window_start] == [0, 16, 32]
    assert rec.steps_played >= 50 + 16 + 50 + 16 + 50 + 8
    # Both paddles are on screen in every frame; OCAtari's vision finds them as well.
    assert all({"Player", "Enemy"} <= set(r.truth_cats) for r in rec.records)
    assert all(set(r.vision_cats) <= {"Player", "Enemy", "Ball"} for r in rec.records)


def test_play_leaves_out_mspacman_bottom_bar_fruit() -> None:
    # With its HUD on, OCAtari's MsPacman reports the level's fruit icon in the bottom bar as a
    # Fruit not flagged HUD; the truth keeps only objects RAM mode also reports with the HUD off.
    rec = play("MsPacman", PolicyRun("random", 0), frames=20, window=20, gap=10)
    assert all(len(r.truth) and (r.truth[:, 1] < 171).all() for r in rec.records)
