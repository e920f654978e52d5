"""Slot tracking: identity across crossings, disappearances and re-appearances."""

from __future__ import annotations

import numpy as np

from moc_envs import Detection, GameSpec
from moc_envs.games import CategorySpec
from moc_envs.perception.tracking import SlotTracker

SPEC = GameSpec(
    name="Test",
    ale_id="ALE/Test-v5",
    categories=(CategorySpec("Player", 1), CategorySpec("Ball", 3)),
)


def ball(x: float, y: float) -> Detection:
    return Detection("Ball", x, y, 2, 4)


def slot_of(tracked: list[Detection], x: float) -> int:
    return next(d.slot for d in tracked if d.x == x)


def test_crossing_objects_keep_their_slots() -> None:
    tracker = SlotTracker(SPEC)
    # A runs right and down, B runs left and down; they meet at step 10.
    first = tracker.update([ball(10, 50), ball(110, 50)])
    slot_a, slot_b = first[0].slot, first[1].slot
    assert {slot_a, slot_b} <= set(SPEC.slot_ranges["Ball"]) and slot_a != slot_b
    for t in range(1, 21):
        ax, bx = 10 + 5 * t, 110 - 5 * t
        # Reversed input order so that order cannot carry identity.
        tracked = tracker.update([ball(bx, 50 + t), ball(ax, 50 + t)])
        if ax != bx:
            assert slot_of(tracked, ax) == slot_a, t
            assert slot_of(tracked, bx) == slot_b, t
    assert tracker.velocity[slot_a, 0] == 5 and tracker.velocity[slot_b, 0] == -5


def test_object_that_disappears_gets_its_slot_back() -> None:
    tracker = SlotTracker(SPEC, max_age=10)
    tracked = tracker.update([ball(20, 20), ball(100, 100), Detection("Player", 140, 90, 4, 15)])
    slot_far = slot_of(tracked, 100)
    player_slot = tracked[2].slot
    assert player_slot == 0
    for _ in range(5):  # the far ball blinks out for five steps
        tracked = tracker.update([ball(20, 20)])
        assert not tracker.present[slot_far]
    # Meanwhile a new ball appears: it must not take the missing ball's slot.
    tracked = tracker.update([ball(20, 20), ball(60, 180)])
    assert slot_of(tracked, 60) not in (slot_far, slot_of(tracked, 20))
    tracked = tracker.update([ball(20, 20), ball(60, 180), ball(101, 101)])
    assert slot_of(tracked, 101) == slot_far


def test_memory_expires_after_max_age() -> None:
    tracker = SlotTracker(SPEC, max_age=2)
    slot = tracker.update([ball(100, 100)])[0].slot
    for _ in range(3):
        tracker.update([])
    assert tracker.age[slot] == -1  # forgotten: the slot is free again


def test_far_jump_is_a_new_object() -> None:
    tracker = SlotTracker(SPEC, max_distance=20)
    a = tracker.update([ball(10, 10)])[0].slot
    b = tracker.update([ball(150, 200)])[0].slot
    assert a != b


def test_unknown_category_and_overflow_get_no_slot() -> None:
    tracker = SlotTracker(SPEC)
    dets = [Detection("unknown", 5, 5, 3, 3), *(ball(30 * i, 10) for i in range(4))]
    tracked = tracker.update(dets)
    assert tracked[0].slot == -1
    ball_slots = [d.slot for d in tracked[1:]]
    assert sorted(s for s in ball_slots if s >= 0) == list(SPEC.slot_ranges["Ball"])
    assert ball_slots.count(-1) == 1


def test_reset_forgets_everything() -> None:
    tracker = SlotTracker(SPEC)
    tracker.update([ball(10, 10)])
    tracker.reset()
    assert not tracker.present.any() and (tracker.age == -1).all()


def test_coasting_shows_a_missed_object_at_its_predicted_box_for_coast_steps() -> None:
    from moc_envs.perception.observation import ObjectObservationBuilder

    builder = ObjectObservationBuilder(SPEC, coast=2)
    builder.update([ball(10, 50)])
    obs, _ = builder.update([ball(14, 53)])  # velocity (4, 3) px per step
    row = builder.objects[0].slot
    for missed in (1, 2):
        obs, info = builder.update([])
        assert info["objects"] == [] and info["labels"] == {}
        assert obs[row, 0] == 1.0
        assert np.isclose(obs[row, 1] * 160, 14 + 4 * missed) and np.isclose(
            obs[row, 2] * 210, 53 + 3 * missed
        )
        assert np.isclose(obs[row, 5] * 160, 4.0) and np.isclose(obs[row, 6] * 210, 3.0)
    obs, _ = builder.update([])  # a third miss: past coast, the row is empty
    assert not obs[row].any()
    # It comes back where it was predicted: same slot, velocity over the four steps.
    back = builder.update([ball(30, 65)])[1]["objects"][0]
    assert back.slot == row


def test_without_coast_a_missed_object_leaves_its_row_empty() -> None:
    from moc_envs.perception.observation import ObjectObservationBuilder

    builder = ObjectObservationBuilder(SPEC)
    builder.update([ball(10, 50)])
    obs, _ = builder.update([])
    assert not obs.any()


def test_bad_coast_is_refused_with_the_expected_range() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"coast must be in 0\.\.max_age=5 steps, got 6"):
        SlotTracker(SPEC, max_age=5, coast=6)
    with pytest.raises(TypeError, match="coast must be an int"):
        SlotTracker(SPEC, coast=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="coast must be an int"):
        SlotTracker(SPEC, coast=True)


def _tracked_run(seed: int) -> list[tuple]:
    """A tracker of many objects fed random, jittered, blinking detections: every step's slots and state."""
    rng = np.random.default_rng(seed)
    spec = GameSpec(
        name="Many",
        ale_id="ALE/Many-v5",
        categories=(CategorySpec("Player", 1), CategorySpec("Ball", 12)),
    )
    tracker = SlotTracker(spec, max_distance=15.0, max_age=3)
    pos = rng.uniform(0, 150, (14, 2))
    out = []
    for _ in range(60):
        pos += rng.normal(0, 4, pos.shape)
        dets = [
            Detection(
                "Player" if k == 0 else "Ball",
                float(x),
                float(y),
                4.0,
                4.0,
                score=float(rng.choice([0.6, 0.9])),
            )
            for k, (x, y) in enumerate(pos.round())
            if rng.random() > 0.2
        ]
        rng.shuffle(dets)
        tracked = tracker.update(dets)
        out.append(
            (
                [(d.category, d.x, d.y, d.slot) for d in tracked],
                tracker.boxes.tobytes(),
                tracker.velocity.tobytes(),
                tracker.age.tobytes(),
            )
        )
    return out


def test_many_objects_are_stored_as_one_by_one(monkeypatch) -> None:
    # The array path for many placed objects gives the per-object path's slots, boxes and velocities.
    import moc_envs.perception.tracking as tracking

    monkeypatch.setattr(tracking, "_FEW_PLACED", 10**9)
    one_by_one = [_tracked_run(seed) for seed in range(3)]
    monkeypatch.setattr(tracking, "_FEW_PLACED", 0)
    assert [_tracked_run(seed) for seed in range(3)] == one_by_one
