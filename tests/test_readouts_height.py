"""The height readout (moc_envs.readouts.height): Tennis' ball_y (the ball's height above the
court) from the rows between the ball and its shadow in the learned env's frames against the RAM,
its fitter, the shipped row, its JSON round trip and its refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.readouts import readout_from_json
from moc_envs.readouts.height import HeightReadout, color_top
from moc_envs.readouts.registry import ReadoutSet
from trainers.readouts.cli import score_readouts
from trainers.readouts.data import collect_steps
from trainers.readouts.fit_height import fit_height

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "Tennis"
TENNIS = get_game("Tennis")
BALL, SHADOW = (236, 236, 236), (74, 74, 74)


@pytest.fixture(scope="module")
def plays() -> tuple[list, list]:
    """A short fitting play and a held-out one of the shipped detector (RAM as the truth)."""
    fit = collect_steps(TENNIS, WEIGHTS, 1200, seed=30, threads=1, progress=False)
    held = collect_steps(TENNIS, WEIGHTS, 600, seed=31, threads=1, progress=False)
    return fit, held


@pytest.fixture(scope="module")
def fitted(plays: tuple[list, list]) -> HeightReadout:
    return fit_height(TENNIS, plays[0], "ball_y")


def _row(**change: object) -> dict:
    row = {
        "kind": "height", "labels": ["ball_y"], "ball_color": list(BALL), "shadow_color": list(SHADOW),
        "scale": 1.0, "offset": 0.0, "color_tolerance": 0.0, "max_pixels": 4, "coast": 1, "cover_tolerance": 2.0,
    }  # fmt: skip
    row.update(change)
    return row


def _frame(ball: tuple[int, int] | None, shadow: tuple[int, int] | None) -> np.ndarray:
    """A court-green frame with a 2 x 2 ball and shadow at (x, top row)."""
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:] = (82, 126, 45)
    for spot, colour in ((shadow, SHADOW), (ball, BALL)):
        if spot is not None:
            frame[spot[1] : spot[1] + 2, spot[0] : spot[0] + 2] = colour
    return frame


def test_the_fitter_learns_the_ball_and_its_shadow(fitted: HeightReadout) -> None:
    # Two different small sprites; the byte is about the rows between them (one byte a row).
    assert fitted.ball_color != fitted.shadow_color
    assert fitted.max_pixels <= 8
    assert 0.8 <= fitted.scale <= 1.2
    assert abs(fitted.offset) <= 3


def test_held_out_play_reads_the_ram(fitted: HeightReadout, plays: tuple[list, list]) -> None:
    report = score_readouts(TENNIS, ReadoutSet(TENNIS, [fitted]), plays[1])["ball_y"]
    assert report["right"] >= 0.9, report
    # Given on most steps that draw the ball (between points nothing is drawn, nothing read).
    drawn = given = 0
    for episode in plays[1]:
        fitted.reset()
        for s in episode:
            got = fitted.read(s.objects, s.frame)
            if color_top(s.frame, fitted.ball_color, 0.0, fitted.max_pixels) is not None:
                drawn += 1
                given += "ball_y" in got
    assert drawn and given / drawn >= 0.8, (given, drawn)


def test_the_shipped_row_reads_the_ram(plays: tuple[list, list]) -> None:
    rows = json.loads((WEIGHTS / "readouts.json").read_text())["readouts"]
    height = [readout_from_json(r, TENNIS) for r in rows if r["kind"] == "height"]
    assert len(height) == 1
    report = score_readouts(TENNIS, ReadoutSet(TENNIS, height), plays[1])["ball_y"]
    assert report["right"] >= 0.9 and report["given"] >= 0.4, report


def test_height_from_rows_and_a_hidden_shadow_carried_on() -> None:
    r = HeightReadout.from_json(_row(), TENNIS)
    assert r.read([], None) == {}
    assert r.read([], _frame((50, 60), (50, 90))) == {"ball_y": 30}
    assert r.read([], _frame((50, 70), (50, 96))) == {"ball_y": 26}  # the shadow moves 6 rows a step
    assert r.read([], _frame((50, 80), None)) == {"ball_y": 22}  # hidden (the net): carried on to 102
    assert r.read([], _frame((50, 90), None)) == {}  # hidden longer than coast: nothing
    assert r.read([], _frame(None, (50, 100))) == {}  # no ball: nothing
    r.reset()
    assert r.read([], _frame((50, 80), None)) == {}  # no shadow seen since the reset
    # A ball lying where its shadow was last seen hides it: height 0.
    r.read([], _frame((50, 40), (50, 46)))
    r.read([], _frame((50, 42), (50, 46)))
    r.read([], _frame((50, 44), None))
    r.read([], _frame((50, 45), None))
    assert r.read([], _frame((50, 46), None)) == {"ball_y": 0}
    # A colour lit on more pixels than the ball is not the ball.
    big = _frame((50, 40), (50, 46))
    big[100:110, 100:110] = BALL
    assert r.read([], big) == {}


def test_rows_round_trip(fitted: HeightReadout) -> None:
    row = fitted.to_json()
    again = readout_from_json(copy.deepcopy(json.loads(json.dumps(row))), TENNIS)
    assert isinstance(again, HeightReadout) and again.to_json() == row


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["ball_y", "ball_x"]}, "gives one label"),
        ({"labels": ["nope"]}, "has no RAM labels"),
        ({"ball_color": [1, 2]}, "ball_color must be"),
        ({"shadow_color": list(BALL)}, "must differ"),
        ({"scale": float("nan")}, "finite"),
        ({"max_pixels": 0}, "max_pixels must be an integer >= 1"),
        ({"coast": -1}, "coast must be an integer >= 0"),
        ({"color_tolerance": -1.0}, "color_tolerance must be >= 0"),
        ({"extra": 1}, "unknown ['extra']"),
    ],
)
def test_a_malformed_height_row_is_refused_with_its_reason(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        readout_from_json(_row(**change), TENNIS)
    missing = _row()
    del missing["coast"]
    with pytest.raises(ValueError, match="missing"):
        readout_from_json(missing, TENNIS)
