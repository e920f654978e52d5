"""The course readout (moc_envs.readouts.course): Skiing's object_y_0..6 (RAM 87..93, the seven
lowest course objects, slot 6 the lowest) from the course objects found in the learned env's frames
against the RAM, its fitter, the shipped row, its JSON round trip and its refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.readouts import readout_from_json
from moc_envs.readouts.course import CourseReadout
from moc_envs.readouts.registry import ReadoutSet
from trainers.readouts.cli import score_readouts
from trainers.readouts.course.fit_course import fit_course
from trainers.readouts.data import collect_steps

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "Skiing"
SKIING = get_game("Skiing")
LABELS = [f"object_y_{i}" for i in range(7)]
TREE, FLAG, MOGUL, SNOW = (110, 156, 66), (66, 72, 200), (214, 214, 214), (236, 236, 236)


@pytest.fixture(scope="module")
def plays() -> tuple[list, list]:
    """A short fitting play and a held-out one of the shipped detector (RAM as the truth)."""
    fit = collect_steps(SKIING, WEIGHTS, 1000, seed=30, threads=1, progress=False)
    held = collect_steps(SKIING, WEIGHTS, 600, seed=31, threads=1, progress=False)
    return fit, held


@pytest.fixture(scope="module")
def fitted(plays: tuple[list, list]) -> CourseReadout:
    return fit_course(SKIING, plays[0], LABELS)


def _row(**change: object) -> dict:
    row = {
        "kind": "course", "labels": list(LABELS), "colours": [list(TREE), list(FLAG), list(MOGUL)],
        "heights": [30, 14, 6], "gaps": [36, 20, 12], "rows": [32, 177], "cols": [8, 151], "offset": 181.0,
        "clamp": 149, "merge": 3, "edge_rows": [[0, 1, 3, 28]],
    }  # fmt: skip
    row.update(change)
    return row


def _frame(*sprites: tuple[tuple[int, int, int], int, int, int, int]) -> np.ndarray:
    """A snow frame with black borders and solid sprites ``(colour, x, top, width, height)``
    (cut to the playfield rows 32..177 and columns 8..151, as the game draws them)."""
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:, 8:152] = SNOW
    for colour, x, top, w, h in sprites:
        y0, y1 = max(top, 32), min(top + h, 178)
        frame[y0:y1, max(x, 8) : min(x + w, 152)] = colour
    return frame


def _drawn(s: object, label_index: int) -> bool:
    """Whether the RAM says slot ``label_index``'s object is drawn: its top row within the
    playfield, or clamped at its first row."""
    byte = int(s.ram[87 + label_index])  # type: ignore[attr-defined]
    return 4 <= byte <= 150


def test_the_fitter_learns_the_course(fitted: CourseReadout) -> None:
    # One byte a row from the bottom of the playfield; a tree is 30 rows, a flag 14, a mogul 6.
    assert 175 <= fitted.offset <= 187
    assert 140 <= fitted.clamp <= 155
    assert {30, 14, 6} <= set(fitted.heights)
    snow = np.array(SNOW, np.int16)
    assert not (fitted.colours == snow).all(axis=1).any()


def test_held_out_play_reads_the_ram(fitted: CourseReadout, plays: tuple[list, list]) -> None:
    report = score_readouts(SKIING, ReadoutSet(SKIING, [fitted]), plays[1])
    for label in LABELS:
        assert report[label]["right"] >= 0.9, (label, report[label])
    # Given on most steps whose RAM says the slot's object is drawn. Less often at the ends: the
    # top slot's object, clamped at the first row, is at times cut to nothing under the border;
    # the bottom slot's, still entering, is left out when the side border cuts it too (neither
    # its top nor its bottom shows).
    for i, label in enumerate(LABELS):
        drawn = given = 0
        for episode in plays[1]:
            for s in episode:
                if _drawn(s, i):
                    drawn += 1
                    given += label in fitted.read(s.objects, s.frame)
        assert drawn and given / drawn >= {0: 0.6, 6: 0.7}.get(i, 0.8), (label, given, drawn)


def test_the_shipped_row_reads_the_ram(plays: tuple[list, list]) -> None:
    rows = json.loads((WEIGHTS / "readouts.json").read_text())["readouts"]
    course = [readout_from_json(r, SKIING) for r in rows if r["kind"] == "course"]
    assert len(course) == 1 and list(course[0].labels) == LABELS
    report = score_readouts(SKIING, ReadoutSet(SKIING, course), plays[1])
    for label in LABELS:
        assert report[label]["right"] >= 0.9, (label, report[label])
    assert report["object_y_3"]["given"] >= 0.8, report


def test_slots_from_the_bottom_with_an_undrawn_newest_object() -> None:
    r = CourseReadout.from_json(_row(), SKIING)
    assert r.read([], None) == {}
    assert r.read([], _frame()) == {}
    # A mogul 21 rows above the end (past its gap of 12): the newest object is still undrawn
    # below it, so the mogul is slot 5. A flag pair is one object; a tree cut by the first row
    # reads the clamped byte.
    frame = _frame(
        (MOGUL, 60, 160, 16, 6), (FLAG, 40, 120, 5, 14), (FLAG, 72, 120, 5, 14),
        (TREE, 100, 60, 16, 30), (TREE, 30, 20, 16, 30),
    )  # fmt: skip
    assert r.read([], frame) == {"object_y_5": 21, "object_y_4": 61, "object_y_3": 121, "object_y_2": 149}
    # The same mogul within its gap of the end: it is the newest, slot 6.
    frame = _frame((MOGUL, 60, 170, 16, 6), (FLAG, 40, 130, 5, 14), (FLAG, 72, 130, 5, 14))
    assert r.read([], frame) == {"object_y_6": 11, "object_y_5": 51}
    # A tree cut by the right edge: its top from its bottom row and the edge table (3 columns
    # shown: 28 rows above the bottom); 5 columns shown are not in the table: left out, counted.
    frame = _frame((MOGUL, 60, 170, 16, 6), (TREE, 149, 100, 16, 29), (FLAG, 40, 60, 5, 14))
    assert r.read([], frame) == {"object_y_6": 11, "object_y_5": 81, "object_y_4": 121}
    frame = _frame((MOGUL, 60, 170, 16, 6), (TREE, 147, 100, 16, 29), (FLAG, 40, 60, 5, 14))
    assert r.read([], frame) == {"object_y_6": 11, "object_y_4": 121}


def test_rows_round_trip(fitted: CourseReadout) -> None:
    row = fitted.to_json()
    again = readout_from_json(copy.deepcopy(json.loads(json.dumps(row))), SKIING)
    assert isinstance(again, CourseReadout) and again.to_json() == row


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["nope"]}, "has no RAM labels"),
        ({"colours": []}, "colours must be a non-empty list"),
        ({"colours": [[1, 2]] * 3}, "each colour must be [r, g, b]"),
        ({"colours": [list(TREE), list(TREE), list(MOGUL)]}, "listed twice"),
        ({"heights": [30, 14]}, "heights must be a list of 3 integers"),
        ({"gaps": [36, 20, 0]}, "gaps must be an integer 1..255"),
        ({"rows": [177, 32]}, "first < last"),
        ({"offset": float("inf")}, "finite"),
        ({"clamp": 300}, "clamp must be an integer 0..255"),
        ({"merge": -1}, "merge must be an integer 0..16"),
        ({"edge_rows": [[5, 1, 3, 28]]}, "names colour >= 3"),
        ({"edge_rows": [[0, 1, 3, 28], [0, 1, 3, 27]]}, "twice"),
        ({"extra": 1}, "unknown ['extra']"),
    ],
)
def test_a_malformed_course_row_is_refused_with_its_reason(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        readout_from_json(_row(**change), SKIING)
    missing = _row()
    del missing["gaps"]
    with pytest.raises(ValueError, match="missing"):
        readout_from_json(missing, SKIING)
