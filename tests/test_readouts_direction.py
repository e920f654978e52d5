"""The ``direction`` and ``lane`` readouts (moc_envs.readouts.direction, moc_envs.readouts.lane)
and their fitters: Seaquest's submarine heading, torpedo heading and enemy lanes fitted on a short
learned play and read on another with the RAM as truth; the sprite window; hold and reset; the
JSON round trip and the refusal of malformed rows; Seaquest's diver lanes (one object a lane)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.perception.detection import Detection
from moc_envs.readouts import readout_from_json
from moc_envs.readouts.direction import DirectionReadout, SpriteClassifier, lit_window
from moc_envs.readouts.lane import LaneReadout
from trainers.readouts.data import Episode, collect_steps
from trainers.readouts.fit_direction import fit_direction, train_softmax
from trainers.readouts.fit_lane import byte_heading, fit_lane, fit_lane_objects

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SEAQUEST = get_game("Seaquest")
LANES = [f"enemy_obstacle_x_{i}" for i in range(4)]
REGIONS = [(133.0 - 24 * i, 157.0 - 24 * i) for i in range(4)]


@pytest.fixture(scope="module")
def plays() -> tuple[list[Episode], list[Episode]]:
    """A fitting play and a held-out one of the learned Seaquest env (random held actions)."""
    fit = collect_steps(SEAQUEST, WEIGHTS / "Seaquest", 1500, seed=3, progress=False)
    held = collect_steps(SEAQUEST, WEIGHTS / "Seaquest", 800, seed=4, progress=False)
    return fit, held


def _right(readout: object, episodes: list[Episode], tolerance: int = 0) -> dict[str, tuple[int, int]]:
    """Per label: (reads within ``tolerance`` of the RAM byte, reads), episodes read in order."""
    out: dict[str, list[int]] = {lab: [0, 0] for lab in readout.labels}  # type: ignore[attr-defined]
    for episode in episodes:
        readout.reset()  # type: ignore[attr-defined]
        for s in episode:
            for lab, v in readout.read(s.objects, s.frame).items():  # type: ignore[attr-defined]
                out[lab][1] += 1
                out[lab][0] += abs((v - s.truth[lab] + 128) % 256 - 128) <= tolerance
    return {lab: (r, n) for lab, (r, n) in out.items()}


def _round_trip(readout: object) -> object:
    row = json.loads(json.dumps(readout.to_json()))  # type: ignore[attr-defined]
    return readout_from_json(row, SEAQUEST)


def test_submarine_heading_is_read_from_its_sprite_on_unseen_play(plays) -> None:
    fit, held = plays
    readout = fit_direction(SEAQUEST, fit, "player_direction", "Player")
    assert readout.cue == "sprite" and set(readout.classifier.values) == {0, 8}
    right, given = _right(readout, held)["player_direction"]
    steps = sum(len(e) for e in held)
    assert given >= 0.8 * steps and right >= 0.95 * given, (right, given, steps)
    # Read back from JSON, it reads the same values step by step.
    again = _round_trip(readout)
    for episode in held[:1]:
        readout.reset()
        again.reset()
        for s in episode[:200]:
            assert readout.read(s.objects, s.frame) == again.read(s.objects, s.frame)


def test_torpedo_heading_from_its_side_of_the_submarine(plays) -> None:
    fit, held = plays
    readout = fit_direction(SEAQUEST, fit, "player_missile_direction", "PlayerMissile", cue="side", reference="Player")
    # A torpedo right of the submarine flies right: byte 0 (OCAtari: 0 is east), left: 8.
    assert readout.sides == (8, 0)
    right, given = _right(readout, held)["player_missile_direction"]
    assert given > 0 and right >= 0.85 * given, (right, given)
    assert _round_trip(readout).to_json() == readout.to_json()
    # The shipped fit (3000 steps, lives lost in its held-back episodes) learned that the torpedo
    # byte keeps its value while a new submarine waits at the surface.
    shipped = json.loads((WEIGHTS / "Seaquest" / "readouts.json").read_text())["readouts"]
    row = next(r for r in shipped if r["labels"] == ["player_missile_direction"])
    assert row["respawn"][1] >= 16, row


def test_enemy_lanes_are_read_from_the_leading_sprite(plays) -> None:
    fit, held = plays
    readout = fit_lane(SEAQUEST, fit, LANES, REGIONS, ("Shark", "Submarine"))
    # Facing right, a lone enemy sits in the formation's last place, 32 px right of its byte.
    assert readout.offsets == (0.0, -32.0)
    scores = _right(readout, held, tolerance=5)
    assert sum(n for _, n in scores.values()) > 300
    for lab, (right, n) in scores.items():
        assert n == 0 or right >= 0.85 * n, (lab, right, n)
    assert _round_trip(readout).to_json() == readout.to_json()


def test_byte_heading_follows_the_next_move_and_skips_jumps() -> None:
    assert byte_heading([10, 10, 11, 12]) == [1, 1, 1, None]
    assert byte_heading([1, 0, 255, 254]) == [0, 0, 0, None]  # across the wrap
    assert byte_heading([200, 10, 9]) == [None, 0, None]  # a new formation is no move


def _sprite_frame(facing_right: bool, band: bool = False) -> np.ndarray:
    """A blue field with a yellow arrow pointing right or left at x 40..47, y 60..65."""
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:] = (0, 0, 150)
    if band:
        frame[58:60] = (200, 60, 60)  # a horizontal band crossing the window: background
    arrow = np.zeros((6, 8), bool)
    for r in range(6):
        n = 8 - abs(r - 2.5) * 2
        arrow[r, : int(n)] = True
    if not facing_right:
        arrow = arrow[:, ::-1]
    frame[60:66, 40:48][arrow] = (220, 220, 0)
    return frame


def test_lit_window_keys_on_the_sprite_colour_not_the_background() -> None:
    box = Detection("Player", 40.0, 60.0, 8.0, 6.0, slot=0)
    plain = lit_window(_sprite_frame(True), box, (10, 12))
    banded = lit_window(_sprite_frame(True, band=True), box, (10, 12))
    assert plain.sum() > 10 and np.array_equal(plain, banded)
    flipped = lit_window(_sprite_frame(False), box, (10, 12)).reshape(10, 12)
    assert not np.array_equal(plain.reshape(10, 12), flipped)
    # A box off the frame sees nothing lit.
    assert lit_window(_sprite_frame(True), Detection("Player", -40.0, -40.0, 8.0, 6.0, slot=0), (10, 12)).sum() == 0


def _tiny_classifier() -> SpriteClassifier:
    box = Detection("Player", 40.0, 60.0, 8.0, 6.0, slot=0)
    feats = np.array([lit_window(_sprite_frame(r), box, (10, 12)) for r in (True, False)])
    return SpriteClassifier((10, 12), (0, 8), train_softmax(feats, np.array([0, 1]), 2))


def test_hold_repeats_the_last_read_until_reset() -> None:
    clf = _tiny_classifier()
    player = Detection("Player", 40.0, 60.0, 8.0, 6.0, slot=0)
    held = DirectionReadout(SEAQUEST, "player_direction", "Player", "sprite", classifier=clf, hold=True)
    plain = DirectionReadout(SEAQUEST, "player_direction", "Player", "sprite", classifier=clf)
    for r in (held, plain):
        assert r.read([player], _sprite_frame(False)) == {"player_direction": 8}
        assert r.read([player], _sprite_frame(True)) == {"player_direction": 0}
    assert plain.read([player], None) == {}  # no frame: no read
    assert held.read([player], None) == {"player_direction": 0}  # ... but the last one held
    assert held.read([], _sprite_frame(True)) == {"player_direction": 0}
    assert plain.read([], _sprite_frame(True)) == {}
    held.reset()
    assert held.read([], _sprite_frame(True)) == {}


def test_side_cue_reads_the_reference_sprite_when_the_box_is_gone() -> None:
    clf = _tiny_classifier()
    player = Detection("Player", 40.0, 60.0, 8.0, 6.0, slot=0)
    torpedo = Detection("PlayerMissile", 20.0, 62.0, 8.0, 1.0, slot=SEAQUEST.slot_ranges["PlayerMissile"].start)
    r = DirectionReadout(SEAQUEST, "player_missile_direction", "PlayerMissile", "side", reference="Player", sides=(8, 0))
    assert r.read([player, torpedo], None) == {"player_missile_direction": 8}
    assert r.read([player], _sprite_frame(True)) == {}
    with_clf = DirectionReadout(
        SEAQUEST, "player_missile_direction", "PlayerMissile", "side", classifier=clf, reference="Player", sides=(8, 0)
    )
    assert with_clf.read([player], _sprite_frame(True)) == {"player_missile_direction": 0}


def test_respawn_keeps_the_last_value_while_the_new_life_waits() -> None:
    clf = _tiny_classifier()
    player = Detection("Player", 40.0, 60.0, 8.0, 6.0, slot=0)
    r = DirectionReadout(
        SEAQUEST, "player_missile_direction", "PlayerMissile", "side", classifier=clf, reference="Player",
        sides=(8, 0), hold=True, respawn=[3, 2],
    )  # fmt: skip
    label = "player_missile_direction"
    assert r.read([player], _sprite_frame(False)) == {label: 8}
    for _ in range(3):  # the submarine is gone for 3 steps: a life lost
        assert r.read([], _sprite_frame(False)) == {label: 8}
    # Back, drawn facing the other way: the byte is kept for the 2 respawn steps, then read.
    assert r.read([player], _sprite_frame(True)) == {label: 8}
    assert r.read([player], _sprite_frame(True)) == {label: 8}
    assert r.read([player], _sprite_frame(True)) == {label: 0}
    # Away for fewer steps than the gap (a missed box): no respawn.
    r.read([], _sprite_frame(True))
    assert r.read([player], _sprite_frame(False)) == {label: 8}
    # The first sight after reset is no respawn either.
    r.reset()
    r.read([], None)
    r.read([], None)
    r.read([], None)
    assert r.read([player], _sprite_frame(True)) == {label: 0}
    assert _round_trip(r).to_json() == r.to_json() and r.to_json()["respawn"] == [3, 2]


def _direction_row() -> dict:
    return DirectionReadout(SEAQUEST, "player_direction", "Player", "sprite", classifier=_tiny_classifier()).to_json()


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.update(extra=1),
        lambda r: r.pop("hold"),
        lambda r: r.update(labels=["no_such_label"]),
        lambda r: r.update(labels=["player_direction", "player_missile_direction"]),
        lambda r: r.update(category="Ghost"),
        lambda r: r.update(category=["Player"]),
        lambda r: r.update(cue="motion"),
        lambda r: r.update(hold="yes"),
        lambda r: r.update(min_confidence=1.5),
        lambda r: r.update(min_confidence=float("nan")),
        lambda r: r.pop("classifier"),
        lambda r: r.update(reference="Player"),
        lambda r: r["classifier"].update(window=[10, 0]),
        lambda r: r["classifier"].update(values=[0, 0]),
        lambda r: r["classifier"].update(values=[0, 300]),
        lambda r: r["classifier"]["weights"][0].pop(),
        lambda r: r["classifier"]["weights"][1].__setitem__(0, float("inf")),
        lambda r: r["classifier"]["weights"][1].__setitem__(0, True),
        lambda r: r.update(cue="side", classifier=None, reference="Ghost", sides=[8, 0]),
        lambda r: r.update(respawn=[8]),
        lambda r: r.update(respawn=[0, 32]),
        lambda r: r.update(respawn=[8, 32.5]),
        lambda r: r.update(respawn="32"),
    ],
)
def test_malformed_direction_rows_are_refused(edit) -> None:
    row = copy.deepcopy(_direction_row())
    readout_from_json(copy.deepcopy(row), SEAQUEST)  # the row itself is fine
    edit(row)
    if row.get("classifier", 0) is None:
        row.pop("classifier")
    with pytest.raises(ValueError):
        readout_from_json(row, SEAQUEST)


def _lane_row() -> dict:
    clf = SpriteClassifier((4, 4), (0, 1), np.zeros((2, 17)))
    return LaneReadout(SEAQUEST, LANES, [list(r) for r in REGIONS], ["Shark", "Submarine"], clf, (0, -32), (8, 8)).to_json()


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.update(regions=r["regions"][:3]),
        lambda r: r["regions"].__setitem__(0, [150, 140]),
        lambda r: r.update(categories=["Kraken"]),
        lambda r: r.update(offsets=[0]),
        lambda r: r.update(clip=[8, float("nan")]),
        lambda r: r.update(wrap=0),
        lambda r: r["classifier"].update(values=[0, 8]),
        lambda r: r.pop("wrap"),
        lambda r: r.update(offsets=[0, 1, 2]),
        lambda r: r.update(classifier=None),  # two offsets need a classifier
        lambda r: r.update(category_offsets={"Diver": 1.0}),
        lambda r: r.update(category_offsets={"Shark": "far"}),
        lambda r: r.update(hidden_by=["Kraken"]),
        lambda r: r.update(hidden_by="Shark"),
        lambda r: r.update(requires={"Shark": "Submarine"}),
        lambda r: r.update(requires={"Diver": ["Submarine"]}),
        lambda r: r.update(requires=["Submarine"]),
    ],
)
def test_malformed_lane_rows_are_refused(edit) -> None:
    row = copy.deepcopy(_lane_row())
    readout_from_json(copy.deepcopy(row), SEAQUEST)
    edit(row)
    with pytest.raises(ValueError):
        readout_from_json(row, SEAQUEST)


def test_lane_reads_the_leading_box_cut_boxes_by_their_right_edge_and_skips_debris() -> None:
    frame = _sprite_frame(True)
    box = Detection("Player", 40.0, 60.0, 8.0, 6.0, slot=0)
    feats = np.array([lit_window(_sprite_frame(r), box, (10, 12)) for r in (False, True)])
    clf = SpriteClassifier((10, 12), (0, 1), train_softmax(feats, np.array([0, 1]), 2))
    lane = LaneReadout(SEAQUEST, LANES[:1], [[50.0, 70.0]], ["Shark"], clf, (0.0, -32.0), (8.0, 8.0))
    sharks = SEAQUEST.slot_ranges["Shark"]
    lead = Detection("Shark", 40.0, 60.0, 8.0, 6.0, slot=sharks[0])
    trail = Detection("Shark", 24.0, 60.0, 8.0, 6.0, slot=sharks[1])
    assert lane.read([trail, lead], frame) == {LANES[0]: 8}  # facing right: rightmost - 32
    assert lane.read([lead], _sprite_frame(False)) == {LANES[0]: 40}  # facing left: leftmost
    cut = Detection("Shark", 8.0, 60.0, 3.0, 6.0, slot=sharks[0])  # 5 px hidden under the bar
    assert lane.facing(frame, [cut]) in (0, 1)
    assert lane.start(cut) == 3.0
    debris = Detection("Shark", 5.0, 60.0, 8.0, 6.0, slot=sharks[0])  # left of the border: not read
    assert lane.read([debris], frame) == {}
    assert lane.read([lead], None) == {}


def test_diver_lanes_read_the_leftmost_diver_or_torpedo_with_the_fitted_rules(plays) -> None:
    fit, held = plays
    labels = [f"diver_or_enemy_missile_x_{i}" for i in range(4)]
    readout = fit_lane_objects(
        SEAQUEST, fit, labels, REGIONS, ("Diver", "EnemyMissile"),
        hidden_by=("Shark", "Submarine"), requires={"EnemyMissile": ("Submarine",)},
    )  # fmt: skip
    assert readout.classifier is None and len(readout.offsets) == 1
    # A diver is drawn at its byte, a torpedo right of it (OCAtari: 3 px; a short play may show
    # no torpedo beside a submarine, and then keeps no offset for it).
    total = {c: readout.offsets[0] + readout.category_offsets.get(c, 0.0) for c in ("Diver", "EnemyMissile")}
    assert total["Diver"] == 0.0 and -5 <= total["EnemyMissile"] <= 0, total
    scores = _right(readout, held, tolerance=5)
    right, given = sum(r for r, _ in scores.values()), sum(n for _, n in scores.values())
    assert given > 100 and right >= 0.85 * given, scores
    for lab, (r, n) in scores.items():
        assert n == 0 or r >= 0.7 * n, (lab, r, n)
    assert _round_trip(readout).to_json() == readout.to_json()


def test_object_lanes_drop_boxes_on_an_enemy_and_torpedoes_without_a_submarine() -> None:
    r = SEAQUEST.slot_ranges
    labels = [f"diver_or_enemy_missile_x_{i}" for i in range(4)]
    lanes = LaneReadout(
        SEAQUEST, labels, [list(x) for x in REGIONS], ["Diver", "EnemyMissile"], None, [0.0], (8.0, 8.0),
        category_offsets={"EnemyMissile": -3.0}, hidden_by=["Shark"], requires={"EnemyMissile": ["Submarine"]},
    )  # fmt: skip
    diver = Detection("Diver", 30.0, 141.0, 8.0, 9.0, slot=r["Diver"][0])
    torpedo = Detection("EnemyMissile", 83.0, 145.0 - 48, 4.0, 1.0, slot=r["EnemyMissile"][0])
    sub = Detection("Submarine", 120.0, 93.0, 8.0, 11.0, slot=r["Submarine"][0])
    shark_on_diver = Detection("Shark", 31.0, 142.0, 8.0, 7.0, slot=r["Shark"][0])
    assert lanes.read([diver, torpedo, sub], None) == {labels[0]: 30, labels[2]: 80}
    assert lanes.read([diver, torpedo], None) == {labels[0]: 30}  # no submarine in lane 2
    assert lanes.read([diver, shark_on_diver, torpedo, sub], None) == {labels[2]: 80}
    # Without the rules every box counts.
    plain = LaneReadout(SEAQUEST, labels, [list(x) for x in REGIONS], ["Diver", "EnemyMissile"], None, [0.0], (8.0, 8.0))
    assert plain.read([diver, shark_on_diver, torpedo], None) == {labels[0]: 30, labels[2]: 83}
