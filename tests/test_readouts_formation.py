"""The formation readout (moc_envs.readouts.formation): SpaceInvaders' enemies_x, enemies_y and
invaders_left_count from the learned env's boxes and frames against the RAM, its fitter, its JSON
round trip and its refusals."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from moc_envs.games import get_game
from moc_envs.perception.detection import Detection
from moc_envs.readouts import readout_from_json
from moc_envs.readouts.formation import FormationReadout, pattern_key
from trainers.readouts.cli import score_readouts
from trainers.readouts.data import collect_steps
from trainers.readouts.fit_formation import fit_formation

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "SpaceInvaders"
SI = get_game("SpaceInvaders")
ALIENS = SI.slot_ranges["Alien"]
LABELS = ("enemies_x", "enemies_y", "invaders_left_count")


@pytest.fixture(scope="module")
def plays() -> tuple[list, list]:
    """A short fitting play and a held-out one of the shipped detector (RAM as the truth)."""
    fit = collect_steps(SI, WEIGHTS, 700, seed=10, threads=1, progress=False)
    held = collect_steps(SI, WEIGHTS, 500, seed=11, threads=1, progress=False)
    return fit, held


@pytest.fixture(scope="module")
def fitted(plays: tuple[list, list]) -> FormationReadout:
    return fit_formation(SI, plays[0], ["Alien"], *LABELS)


def _row(**change: object) -> dict:
    row = {
        "kind": "formation", "labels": list(LABELS), "categories": ["Alien"],
        "x_label": "enemies_x", "x_offset": 1.0,
        "y_label": "enemies_y", "y_levels": [[31.0, 82], [41.0, 80]], "y_tolerance": 3.0,
        "count_label": "invaders_left_count", "grid": [6, 6], "pitch": [16.0, 18.0], "cell": [8.0, 10.0],
        "color": [134, 134, 29], "color_tolerance": 10.0, "min_pixels": 1, "dying": [],
    }  # fmt: skip
    row.update(change)
    return {k: v for k, v in row.items() if v is not None}


def test_the_fitter_learns_the_grid_from_play(fitted: FormationReadout) -> None:
    # The invaders stand 16 px apart in a row and 18 px apart in a column, 6 x 6, drawn 8 x 10;
    # the byte sits one pixel right of the leftmost invader.
    assert fitted.grid == (6, 6)
    assert fitted.pitch == (16.0, 18.0)
    assert fitted.cell == (8.0, 10.0)
    assert fitted.x_offset == 1.0
    assert fitted.color != (0, 0, 0)
    assert (31.0, 82) in fitted.y_levels


def test_held_out_play_reads_the_ram_on_nine_steps_in_ten(fitted: FormationReadout, plays: tuple[list, list]) -> None:
    from moc_envs.readouts.registry import ReadoutSet

    report = score_readouts(SI, ReadoutSet(SI, [fitted]), plays[1])
    for label in LABELS:
        assert report[label]["given"] >= 0.9, (label, report[label])
        assert report[label]["right"] >= 0.9, (label, report[label])


def test_the_count_comes_from_the_frame_and_needs_it(fitted: FormationReadout, plays: tuple[list, list]) -> None:
    step = next(s for s in plays[1][0] if fitted.boxes(s.objects))
    with_frame = fitted.read(step.objects, step.frame)
    assert with_frame["invaders_left_count"] == step.truth["invaders_left_count"]
    # Boxes the detector dropped still count: the cells are read from the frame.
    assert fitted.read(step.objects[:5], step.frame)["invaders_left_count"] == with_frame["invaders_left_count"]
    without = fitted.read(step.objects, None)
    assert "invaders_left_count" not in without and without["enemies_x"] == with_frame["enemies_x"]
    assert fitted.read([], step.frame) == {}
    # A black frame shows no invader.
    assert fitted.read(step.objects, np.zeros_like(step.frame))["invaders_left_count"] == 0


def test_levels_decode_with_the_top_rows_gone_and_unknown_levels_are_left_out() -> None:
    r = FormationReadout.from_json(_row(), SI)
    assert r.read([Detection("Alien", 40.0, 31.0, 8.0, 10.0, slot=ALIENS[0])], None) == {"enemies_x": 41, "enemies_y": 82}
    # Only the third row left of a formation at level 41: still level 41.
    assert r.read([Detection("Alien", 40.0, 77.0, 8.0, 10.0, slot=ALIENS[0])], None)["enemies_y"] == 80
    # A height no level explains gives no enemies_y (never guessed); boxes out of a slot are not read.
    assert "enemies_y" not in r.read([Detection("Alien", 40.0, 36.0, 8.0, 10.0, slot=ALIENS[0])], None)
    assert r.read([Detection("Alien", 40.0, 31.0, 8.0, 10.0, slot=-1)], None) == {}


def test_dying_patterns_are_not_counted() -> None:
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[31:41, 40:48] = (134, 134, 29)
    frame[31:35, 56:60] = (134, 134, 29)
    boxes = [Detection("Alien", 40.0, 31.0, 8.0, 10.0, slot=ALIENS[0])]
    r = FormationReadout.from_json(_row(), SI)
    assert r.read(boxes, frame)["invaders_left_count"] == 2
    dying = pattern_key(np.ones((4, 4), bool))
    assert FormationReadout.from_json(_row(dying=[dying]), SI).read(boxes, frame)["invaders_left_count"] == 1


def test_rows_round_trip(fitted: FormationReadout) -> None:
    row = fitted.to_json()
    again = readout_from_json(copy.deepcopy(row), SI)
    assert isinstance(again, FormationReadout) and again.to_json() == row
    only_x = FormationReadout(SI, ["Alien"], x_label="enemies_x", x_offset=1.0)
    assert readout_from_json(only_x.to_json(), SI).to_json() == only_x.to_json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": ["enemies_x"]}, "must be the named"),
        ({"categories": ["Nope"]}, "categories must be some of"),
        ({"grid": [6.5, 6]}, "positive whole"),
        ({"pitch": [16.0]}, "pair of numbers"),
        ({"color": [134, 134]}, "color must be"),
        ({"color": [134, 134, 300]}, "0..255"),
        ({"min_pixels": 0}, "min_pixels"),
        ({"y_levels": [[31.0, "x"]]}, "0..255"),
        ({"x_offset": float("nan")}, "finite"),
        ({"dying": "abc"}, "dying must be a list"),
        ({"extra": 1}, "unknown ['extra']"),
        ({"grid": None}, "count_label needs keys ['grid']"),
        ({"labels": ["enemies_x", "enemies_y", "nope"], "count_label": "nope"}, "has no RAM labels ['nope']"),
    ],
)
def test_a_malformed_formation_row_is_refused_with_its_reason(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        readout_from_json(_row(**change), SI)
