"""The shot readout (moc_envs.readouts.shot): SpaceInvaders' missiles_y (the player's shot) from a
thin line rising in the learned env's frames against the RAM, its fitter, the shipped row, its JSON
round trip and its refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.readouts import readout_from_json
from moc_envs.readouts.registry import ReadoutSet
from moc_envs.readouts.shot import ShotReadout, thin_lines
from trainers.readouts.cli import score_readouts
from trainers.readouts.data import collect_steps
from trainers.readouts.fit_shot import fit_shot

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "SpaceInvaders"
SI = get_game("SpaceInvaders")
GREY = (142, 142, 142)


@pytest.fixture(scope="module")
def plays() -> tuple[list, list]:
    """A short fitting play and a held-out one of the shipped detector (RAM as the truth)."""
    fit = collect_steps(SI, WEIGHTS, 1500, seed=20, threads=1, progress=False)
    held = collect_steps(SI, WEIGHTS, 600, seed=21, threads=1, progress=False)
    return fit, held


@pytest.fixture(scope="module")
def fitted(plays: tuple[list, list]) -> ShotReadout:
    return fit_shot(SI, plays[0], "missiles_y")


def _row(**change: object) -> dict:
    row = {
        "kind": "shot", "labels": ["missiles_y"], "color": list(GREY), "color_tolerance": 0.0,
        "max_width": 1, "min_length": 3, "rise": 8.0, "rise_tolerance": 3.0, "launch": [170],
        "launch_tolerance": 1.0, "scale": 0.5, "offset": 21.0, "early_ages": 1, "early": [[0, 170, 238]],
        "gone_steps": 2, "zone_rows": 16, "gone": [[1, 9, 30]], "idle": 13,
    }  # fmt: skip
    row.update(change)
    return row


def _frame(*lines: tuple[int, int, int]) -> np.ndarray:
    """A black frame with 1-px grey vertical lines (column, top, bottom)."""
    frame = np.zeros((210, 160, 3), np.uint8)
    for x, top, bottom in lines:
        frame[top : bottom + 1, x] = GREY
    return frame


def test_the_fitter_learns_a_rising_grey_line(fitted: ShotReadout) -> None:
    # The shot is the one colour whose isolated thin lines climb steadily; it climbs about 8 rows
    # a step, from one of a few launch rows just above the player; in flight the byte is about half
    # its row (the previous helper's (top + 42) / 2).
    assert fitted.color != (0, 0, 0)
    assert 6.0 <= fitted.rise <= 10.0
    assert fitted.launch and all(150 <= row <= 190 for row in fitted.launch)
    assert 0.4 <= fitted.scale <= 0.6
    assert fitted.idle is not None


def test_held_out_play_reads_the_ram(fitted: ShotReadout, plays: tuple[list, list]) -> None:
    report = score_readouts(SI, ReadoutSet(SI, [fitted]), plays[1])["missiles_y"]
    assert report["right"] >= 0.9, report
    assert report["given"] >= 0.7, report
    # Where the shot flies (drawn, past its first steps), it is read on most steps.
    flying = given = 0
    for episode in plays[1]:
        fitted.reset()
        for s in episode:
            got = fitted.read(s.objects, s.frame)
            if 40 <= s.truth["missiles_y"] < 100:
                flying += 1
                given += "missiles_y" in got
    assert flying and given / flying >= 0.8, (given, flying)


def test_the_shipped_row_reads_the_ram(plays: tuple[list, list]) -> None:
    rows = json.loads((WEIGHTS / "readouts.json").read_text())["readouts"]
    shot = [readout_from_json(r, SI) for r in rows if r["kind"] == "shot"]
    assert len(shot) == 1
    report = score_readouts(SI, ReadoutSet(SI, shot), plays[1])["missiles_y"]
    assert report["right"] >= 0.9 and report["given"] >= 0.7, report


def test_a_rising_line_is_followed_and_a_falling_one_is_not() -> None:
    r = ShotReadout.from_json(_row(), SI)
    assert r.read([], None) == {}
    assert r.read([], _frame()) == {"missiles_y": 13}  # no shot seen yet: idle
    assert r.read([], _frame((40, 170, 177))) == {"missiles_y": 238}  # launched: the early table
    assert r.read([], _frame((40, 162, 169))) == {"missiles_y": round(0.5 * 162 + 21)}  # flying: the line
    assert r.read([], _frame((40, 154, 161))) == {"missiles_y": round(0.5 * 154 + 21)}
    assert r.read([], _frame()) == {"missiles_y": 30}  # gone a step, last seen in zone 154 // 16 = 9
    assert r.read([], _frame()) == {}  # gone two steps: the table says nothing, so no label
    assert r.read([], _frame()) == {"missiles_y": 13}  # longer: idle
    r.reset()
    # An invader's shot falls through the launch row: a line just above it the step before.
    r.read([], _frame((60, 166, 173)))
    assert r.read([], _frame((60, 170, 177))) == {"missiles_y": 13}


def test_thin_lines_keep_lone_one_pixel_lines() -> None:
    mask = np.zeros((50, 40), bool)
    mask[10:18, 5] = True  # a shot
    mask[10:18, 20:22] = True  # two pixels wide
    mask[30:38, 30] = True
    mask[30, 29:32] = True  # a leg under a wider body
    mask[40:42, 10] = True  # too short
    assert thin_lines(mask, 1, 3) == [(5, 10, 17)]


def test_rows_round_trip(fitted: ShotReadout) -> None:
    row = fitted.to_json()
    again = readout_from_json(copy.deepcopy(json.loads(json.dumps(row))), SI)
    assert isinstance(again, ShotReadout) and again.to_json() == row


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["missiles_y", "player_x"]}, "gives one label"),
        ({"labels": ["nope"]}, "has no RAM labels"),
        ({"color": [1, 2]}, "color must be"),
        ({"rise": 0.0}, "rise must be > 0"),
        ({"rise": float("inf")}, "finite"),
        ({"launch": "170"}, "launch must be a list"),
        ({"early": [[0, 170]]}, "early rows must be 2 integers"),
        ({"early": [[0, 170, 1], [0, 170, 2]]}, "twice"),
        ({"gone": [[1, 9, 256]]}, "0..255"),
        ({"idle": 300}, "idle must be an integer 0..255"),
        ({"max_width": 0}, "max_width must be an integer >= 1"),
        ({"extra": 1}, "unknown ['extra']"),
    ],
)
def test_a_malformed_shot_row_is_refused_with_its_reason(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        readout_from_json(_row(**change), SI)
    missing = _row()
    del missing["gone"]
    with pytest.raises(ValueError, match="missing"):
        readout_from_json(missing, SI)


def _thin_lines_row_by_row(mask: np.ndarray, max_width: int, min_length: int) -> list[tuple[int, int, int]]:
    """thin_lines as first written: the row runs found one row at a time (the reference)."""
    from moc_envs.readouts.shot import vertical_lines

    h, w = mask.shape
    run = np.zeros((h, w), np.int32)
    for y in np.flatnonzero(mask.any(axis=1)):
        xs = np.flatnonzero(mask[y])
        for s in np.split(xs, np.flatnonzero(np.diff(xs) > 1) + 1):
            run[y, s] = len(s)
    return vertical_lines(mask, mask & (run <= max_width), min_length)


def test_thin_lines_finds_what_the_row_by_row_reference_finds():
    rng = np.random.default_rng(0)
    for t in range(600):
        mask = rng.random((int(rng.integers(1, 60)), int(rng.integers(1, 60)))) < rng.choice([0.02, 0.1, 0.3, 0.6])
        if t % 3 == 0:
            mask[:, rng.integers(0, mask.shape[1])] = True  # a full line
        for max_width in (1, 2, 3):
            for min_length in (1, 3, 5):
                assert thin_lines(mask, max_width, min_length) == _thin_lines_row_by_row(mask, max_width, min_length)
