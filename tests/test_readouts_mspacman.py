"""MsPacman's readouts: the identity kind (ghosts and fruit by colour) and the dots kind (dots
eaten from the dots the maze still shows): reading, JSON round trips, refusals of malformed rows,
and the shipped readouts against RAM on real play."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.perception.detection import Detection
from moc_envs.readouts import READOUTS_JSON, ReadoutSet, read_readouts, readout_from_json
from moc_envs.readouts.dots import DotsReadout
from moc_envs.readouts.identity import (
    Identity,
    IdentityReadout,
    Search,
    find_cluster,
    find_clusters,
)
from moc_envs.weights.manifest import verify_folder

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
MP = get_game("MsPacman")
BG = (0, 28, 136)
RED, PINK, BLUE = (200, 72, 72), (198, 89, 179), (66, 114, 194)


def _frame() -> np.ndarray:
    f = np.zeros((210, 160, 3), np.uint8)
    f[:] = BG
    return f


def _paint(f: np.ndarray, x: int, y: int, colour: tuple[int, int, int], w: int = 8, h: int = 10) -> None:
    f[y : y + h, x : x + w] = colour


def _ghost(x: float, y: float, slot: int = -1) -> Detection:
    return Detection("Ghost", x, y, 8.0, 10.0, slot=slot)


def _readout(search: bool = False, memory: tuple[float, int] | None = (5.0, 8)) -> IdentityReadout:
    ids = [
        Identity("enemy_blinky", "enemy_blinky_x", "enemy_blinky_y", (RED,), alike=True),
        Identity("enemy_pinky", "enemy_pinky_x", "enemy_pinky_y", (PINK,), alike=True),
    ]
    s = Search((4, 2, 154, 169), (8, 10), (12.0, -1.0)) if search else None
    return IdentityReadout(MP, ("Ghost", "Fruit"), ids, (BLUE,), (12.0, -1.0), 2, s, memory)


# ----------------------------------------------------------------- identity


def test_identity_reads_each_ghost_from_the_box_in_its_colour() -> None:
    f = _frame()
    _paint(f, 40, 50, RED)
    _paint(f, 90, 100, PINK)
    r = _readout()
    out = r.read([_ghost(90, 100, 2), _ghost(40, 50, 1), _ghost(10, 10, 3)], f)  # the third box is empty
    assert out == {"enemy_blinky_x": 52, "enemy_blinky_y": 49, "enemy_pinky_x": 102, "enemy_pinky_y": 99}
    assert r.read([], None) == {}  # colours need the frame


def test_a_look_alike_keeps_the_identity_last_read_near_it_and_only_near() -> None:
    r = _readout()
    f = _frame()
    _paint(f, 40, 50, RED)
    r.read([_ghost(40, 50, 1)], f)
    f = _frame()
    _paint(f, 43, 50, BLUE)  # frightened: drawn alike, 3 px on
    assert r.read([_ghost(43, 50, 1)], f) == {"enemy_blinky_x": 55, "enemy_blinky_y": 49}
    f = _frame()
    _paint(f, 90, 50, BLUE)  # too far for one step: which ghost this is is unknown
    assert r.read([_ghost(90, 50, 1)], f) == {}
    r.reset()
    f = _frame()
    _paint(f, 43, 50, BLUE)
    assert r.read([_ghost(43, 50, 1)], f) == {}  # a new episode remembers nothing
    assert _readout(memory=None).read([_ghost(43, 50, 1)], f) == {}


def test_two_look_alikes_passing_close_are_left_out_not_guessed() -> None:
    r = _readout()
    f = _frame()
    _paint(f, 30, 50, RED)
    _paint(f, 60, 50, PINK)
    r.read([_ghost(30, 50, 1), _ghost(60, 50, 2)], f)
    f = _frame()
    _paint(f, 34, 50, BLUE)
    _paint(f, 56, 50, BLUE)
    both = r.read([_ghost(34, 50, 1), _ghost(56, 50, 2)], f)  # each near one name only
    assert both == {"enemy_blinky_x": 46, "enemy_blinky_y": 49, "enemy_pinky_x": 68, "enemy_pinky_y": 49}
    f = _frame()
    _paint(f, 37, 46, BLUE)
    _paint(f, 37, 54, BLUE)
    assert r.read([_ghost(37, 46, 1), _ghost(37, 54, 2)], f) == {}  # blinky could be either: unknown
    f = _frame()
    _paint(f, 38, 60, BLUE)
    _paint(f, 52, 50, BLUE)
    out = r.read([_ghost(38, 60, 1), _ghost(52, 50, 2)], f)
    assert out == {"enemy_pinky_x": 64, "enemy_pinky_y": 49}  # blinky forgotten, pinky still followed
    _paint(f, 38, 60, RED)
    assert r.read([_ghost(38, 60, 1)], f)["enemy_blinky_x"] == 50  # colours name it again


def test_the_search_finds_a_ghost_the_detector_missed_and_refuses_two_clusters() -> None:
    f = _frame()
    _paint(f, 40, 50, RED)
    assert _readout(search=True).read([], f) == {"enemy_blinky_x": 52, "enemy_blinky_y": 49}
    assert _readout(search=False).read([], f) == {}
    _paint(f, 120, 120, RED)
    assert _readout(search=True).read([], f) == {}  # two red sprites: which one is blinky is unknown
    mask = np.zeros((20, 30), bool)
    mask[2:5, 3:6] = True
    assert find_cluster(mask, (8, 10), 2) == (3, 2)
    mask[12:15, 20:24] = True
    assert find_cluster(mask, (8, 10), 2) is None and sorted(find_clusters(mask, (8, 10), 2)) == [(3, 2), (20, 12)]


def test_identity_rows_round_trip_and_the_set_reads_them() -> None:
    r = _readout(search=True)
    again = readout_from_json(json.loads(json.dumps(r.to_json())), MP)
    assert isinstance(again, IdentityReadout) and again.to_json() == r.to_json()
    assert ReadoutSet(MP, [again]).labels == ("enemy_blinky_x", "enemy_blinky_y", "enemy_pinky_x", "enemy_pinky_y")


def _set(row: dict, key: str, value: object) -> None:
    row[key] = value


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("offset"), r"missing \['offset'\]"),
        (lambda r: _set(r, "colour", 1), r"unknown \['colour'\]"),
        (lambda r: _set(r, "categories", ["Alien"]), "categories must be some of"),
        (lambda r: _set(r, "offset", [1.0, float("inf")]), "offset y must be a finite number"),
        (lambda r: _set(r, "offset", [1.0]), r"offset must be \[dx, dy\]"),
        (lambda r: _set(r, "min_pixels", 0), "min_pixels must be an int >= 1"),
        (lambda r: _set(r, "shared", [[1, 2]]), r"a colour must be \[r, g, b\]"),
        (lambda r: _set(r, "shared", [[1, 2, 300]]), "channel must be an integer 0..255"),
        (lambda r: r["identities"][0].pop("alike"), "an identity must have the keys"),
        (lambda r: _set(r["identities"][0], "alike", "yes"), "alike a bool"),
        (lambda r: _set(r["identities"][0], "x", "lives_x"), r"has no RAM labels \['lives_x'\]"),
        (lambda r: _set(r, "labels", list(reversed(r["labels"]))), "labels must be the identities' x and y in order"),
        (lambda r: _set(r, "memory", [0.0, 8]), "memory needs reach > 0"),
        (lambda r: _set(r, "memory", 5), r"memory must be \[reach, steps\]"),
        (lambda r: _set(r, "search", {"area": [4, 2, 154, 300], "size": [8, 10], "offset": [0, 0]}), "search area"),
        (lambda r: _set(r, "search", {"area": [4, 2, 154, 169]}), "search must have the keys"),
        (lambda r: _set(r, "identities", []), "identities must be a non-empty list"),
    ],
)
def test_a_malformed_identity_row_is_refused_with_its_reason(change, message: str) -> None:
    row = json.loads(json.dumps(_readout(search=True).to_json()))
    change(row)
    with pytest.raises(ValueError, match=message):
        readout_from_json(row, MP)


# ----------------------------------------------------------------- dots

DOT, WALL = (228, 111, 111), (228, 111, 111)
DOTS = [[20, 30, 4, 2], [40, 30, 4, 2], [60, 30, 4, 7]]


def _dots() -> DotsReadout:
    return DotsReadout(MP, "dots_eaten_count", DOTS, [0, 0, 2], list(DOT), list(BG))


def _board(eaten: tuple[int, ...] = (), pill: bool = True) -> np.ndarray:
    f = _frame()
    for k, (x, y, w, h) in enumerate(DOTS):
        if k not in eaten and (k != 2 or pill):
            f[y : y + h, x : x + w] = DOT
    return f


def test_dots_count_the_eaten_ones_keep_them_under_sprites_and_wait_out_a_blink() -> None:
    r = _dots()
    assert r.read([], _board()) == {"dots_eaten_count": 0}
    assert r.read([], _board(eaten=(0,))) == {"dots_eaten_count": 1}
    f = _board(eaten=(0,))
    f[28:34, 38:46] = RED  # a ghost over the second dot: it keeps its last state
    assert r.read([], f) == {"dots_eaten_count": 1}
    f = _board(eaten=(0,))
    f[30, 40:42] = RED  # the player over part of it: the rest shows it gone
    f[30, 42:44] = BG
    f[31, 40:44] = BG
    assert r.read([], f) == {"dots_eaten_count": 2}
    # The pill blinks: dark for up to 2 steps it is still there, for 3 it is gone.
    counts = [r.read([], _board(eaten=(0, 1), pill=False))["dots_eaten_count"] for _ in range(3)]
    assert counts == [2, 2, 3]
    assert r.read([], None) == {}


def test_dots_are_unknown_until_every_dot_was_seen() -> None:
    r = _dots()
    f = _board()
    f[28:34, 18:26] = RED  # the first dot hidden from the start
    assert r.read([], f) == {}
    assert r.read([], _board()) == {"dots_eaten_count": 0}
    r.reset()
    assert r.read([], f) == {}


def test_dots_rows_round_trip() -> None:
    r = DotsReadout(MP, "dots_eaten_count", DOTS, [0, 0, 2], list(DOT), list(BG), scale=1.0, bias=2.0)
    again = readout_from_json(json.loads(json.dumps(r.to_json())), MP)
    assert isinstance(again, DotsReadout) and again.to_json() == r.to_json()
    assert again.read([], _board(eaten=(1,))) == {"dots_eaten_count": 3}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("gaps"), r"missing \['gaps'\]"),
        (lambda r: _set(r, "labels", ["dots_eaten_count", "ghosts_count"]), "gives one label"),
        (lambda r: _set(r, "dots", []), "dots must be a non-empty list"),
        (lambda r: _set(r, "dots", [[20, 30, 4]]), r"a dot must be \[x, y, w, h\]"),
        (lambda r: _set(r, "dots", [[158, 30, 4, 2]]), "dot w must be an int in 1..2"),
        (lambda r: _set(r, "gaps", [0]), "gaps must be a list of 3 ints"),
        (lambda r: _set(r, "gaps", [0, 0, -1]), "gap must be an int"),
        (lambda r: _set(r, "lit", list(BG)), "lit and empty must differ"),
        (lambda r: _set(r, "empty", [0, 28]), r"empty must be \[r, g, b\]"),
        (lambda r: _set(r, "bias", float("nan")), "bias must be a finite number"),
    ],
)
def test_a_malformed_dots_row_is_refused_with_its_reason(change, message: str) -> None:
    row = json.loads(json.dumps(_dots().to_json()))
    change(row)
    with pytest.raises(ValueError, match=message):
        readout_from_json(row, MP)


# ----------------------------------------------------------------- the shipped readouts on real play


def test_the_shipped_readouts_read_ghosts_fruit_and_dots_against_ram() -> None:
    """The fitted readouts of weights/MsPacman on a short held-out play (a seed not fitted on)."""
    from trainers.readouts.cli import score_readouts
    from trainers.readouts.data import collect_steps

    files = verify_folder(WEIGHTS / "MsPacman", "MsPacman")
    assert files.holds(READOUTS_JSON)
    readouts = read_readouts(files, MP)
    assert readouts is not None
    mine = ReadoutSet(MP, [r for r in readouts.readouts if r.kind in ("identity", "dots")])
    assert set(mine.labels) >= {f"enemy_{g}_{a}" for g in ("sue", "inky", "pinky", "blinky") for a in "xy"}
    assert "dots_eaten_count" in mine.labels
    report = score_readouts(MP, mine, collect_steps(MP, WEIGHTS / "MsPacman", 400, seed=77, progress=False))
    for g in ("sue", "inky", "pinky", "blinky"):
        for a in "xy":
            row = report[f"enemy_{g}_{a}"]
            assert row["given"] >= 0.5 and row["right"] >= 0.85, (g, a, row)
    assert report["dots_eaten_count"]["given"] >= 0.9 and report["dots_eaten_count"]["right"] >= 0.9
