"""Readouts (moc_envs.readouts): readouts.json loading and refusals, the count kind, the labels in
the single and vector envs, and the fitting command's pieces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from moc_envs.errors import CorruptWeightsError
from moc_envs.games import get_game
from moc_envs.perception.detection import Detection
from moc_envs.readouts import (
    READOUTS_FORMAT,
    READOUTS_JSON,
    Readout,
    ReadoutSet,
    detector_readouts,
    read_readouts,
    readout_from_json,
    save_readouts,
)
from moc_envs.readouts.count import CountReadout
from moc_envs.weights.manifest import verify_folder, write_manifest

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SI = get_game("SpaceInvaders")
ALIENS = SI.slot_ranges["Alien"]
COUNT_ROW = {"kind": "count", "labels": ["invaders_left_count"], "categories": ["Alien"], "scale": 1.0, "bias": 0.0}


def _detector_copy(tmp_path: Path, game: str = "SpaceInvaders") -> Path:
    """A folder with the shipped detector of ``game`` (no readouts) and a manifest."""
    folder = tmp_path / game
    folder.mkdir()
    for name in ("config.json", "detector.safetensors", "classifier.json", "classifier.safetensors", "labels.json", "hud.json", "hud.safetensors"):
        if (WEIGHTS / game / name).exists():
            shutil.copy(WEIGHTS / game / name, folder / name)
    write_manifest(folder, game)
    return folder


def _with_readouts(folder: Path, doc: object, game: str = "SpaceInvaders") -> Path:
    (folder / READOUTS_JSON).write_text(json.dumps(doc))
    write_manifest(folder, game)
    return folder


def _doc(*rows: object, game: str = "SpaceInvaders") -> dict:
    return {"format": READOUTS_FORMAT, "game": game, "readouts": list(rows), "info": {}}


def _alien(slot: int, x: float = 40.0, y: float = 60.0) -> Detection:
    return Detection("Alien", x, y, 8.0, 10.0, slot=slot)


# ----------------------------------------------------------------- the count kind


def test_count_reads_shown_boxes_of_its_categories_in_its_region() -> None:
    r = CountReadout(SI, "invaders_left_count", ["Alien"], scale=1.0, bias=2.0, region=("y", 50.0, 100.0))
    objects = [
        _alien(ALIENS[0]), _alien(ALIENS[1], y=70.0),
        _alien(-1),  # outside the slots: not shown, not counted
        _alien(ALIENS[2], y=120.0),  # outside the region
        Detection("Player", 40.0, 60.0, 8.0, 10.0, slot=SI.slot_ranges["Player"][0]),
    ]  # fmt: skip
    assert r.count(objects) == 2
    assert r.read(objects, None) == {"invaders_left_count": 4}
    down = CountReadout(SI, "invaders_left_count", ["Alien"], scale=-1.0, bias=1.0)
    assert down.read(objects, None) == {}  # 1 - 3 < 0: no byte, left out


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(kind="tally"), "unknown readout kind 'tally'"),
        (lambda r: r.pop("bias"), r"missing \['bias'\]"),
        (lambda r: r.update(colour=[1, 2, 3]), r"unknown \['colour'\]"),
        (lambda r: r.update(labels=["lives"]), r"has no RAM labels \['lives'\]"),
        (lambda r: r.update(labels=["invaders_left_count", "missiles_y"]), "gives one label"),
        (lambda r: r.update(categories=["Ghost"]), "categories must be some of"),
        (lambda r: r.update(scale=float("nan")), "scale must be a finite number"),
        (lambda r: r.update(scale=True), "scale must be a finite number"),
        (lambda r: r.update(region=["z", 0, 10]), "region must be"),
        (lambda r: r.update(region=["y", 10, 0]), "lo < hi"),
    ],
)
def test_a_malformed_count_row_is_refused_with_its_reason(change, message: str) -> None:
    row = dict(COUNT_ROW)
    change(row)
    with pytest.raises(ValueError, match=message):
        readout_from_json(row, SI)


def test_count_rows_round_trip() -> None:
    r = CountReadout(SI, "invaders_left_count", ["Alien"], scale=-1.0, bias=36.0, region=("x", 0.0, 160.0))
    again = readout_from_json(json.loads(json.dumps(r.to_json())), SI)
    assert isinstance(again, CountReadout) and again.to_json() == r.to_json()


def test_a_set_refuses_one_label_from_two_readouts_and_copies_state_per_env() -> None:
    r = CountReadout(SI, "invaders_left_count", ["Alien"])
    with pytest.raises(ValueError, match="given by two readouts"):
        ReadoutSet(SI, [r, CountReadout(SI, "invaders_left_count", ["Alien"], bias=1.0)])
    with pytest.raises(TypeError, match="Readout instances"):
        ReadoutSet(SI, [COUNT_ROW])  # type: ignore[list-item]
    s = ReadoutSet(SI, [r])
    other = s.fresh()
    assert other.readouts[0] is not r and other.labels == ("invaders_left_count",)


# ----------------------------------------------------------------- readouts.json


def test_a_folder_without_readouts_json_has_none_and_a_saved_one_loads(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    write_manifest(folder, "SpaceInvaders")
    assert read_readouts(verify_folder(folder, "SpaceInvaders"), SI) is None
    save_readouts(ReadoutSet(SI, [CountReadout(SI, "invaders_left_count", ["Alien"], bias=3.0)], {"fit": {"seed": 4}}), folder)
    write_manifest(folder, "SpaceInvaders")
    loaded = read_readouts(verify_folder(folder, "SpaceInvaders"), SI)
    assert loaded is not None and loaded.labels == ("invaders_left_count",)
    assert loaded.info == {"fit": {"seed": 4}} and loaded.readouts[0].to_json()["bias"] == 3.0


@pytest.mark.parametrize(
    "doc, message",
    [
        ([COUNT_ROW], "must hold a JSON object"),
        ({**_doc(COUNT_ROW), "format": "moc_envs.readouts/0"}, "has format"),
        (_doc(COUNT_ROW, game="Pong"), "holds readouts for game 'Pong'"),
        ({**_doc(COUNT_ROW), "extra": 1}, "must have the keys"),
        ({**_doc(), "readouts": {"a": 1}}, "readouts must be a list"),
        (_doc({**COUNT_ROW, "kind": "tally"}), "unknown readout kind"),
        (_doc(COUNT_ROW, COUNT_ROW), "given by two readouts"),
        (_doc({**COUNT_ROW, "labels": ["player_x"], "categories": ["Player"]}), "already give"),
    ],
)
def test_a_bad_readouts_json_is_refused_with_its_reason(tmp_path: Path, doc: object, message: str) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    _with_readouts(folder, doc)
    taken = SI.localization_labels  # player_x: a label link already gives it
    with pytest.raises(CorruptWeightsError, match=message):
        read_readouts(verify_folder(folder, "SpaceInvaders"), SI, taken)


def test_an_unlisted_or_changed_readouts_json_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    write_manifest(folder, "SpaceInvaders")
    (folder / READOUTS_JSON).write_text(json.dumps(_doc(COUNT_ROW)))
    with pytest.raises(CorruptWeightsError):
        read_readouts(verify_folder(folder, "SpaceInvaders"), SI)
    write_manifest(folder, "SpaceInvaders")
    files = verify_folder(folder, "SpaceInvaders")
    (folder / READOUTS_JSON).write_text(json.dumps(_doc({**COUNT_ROW, "bias": 9.0})))
    with pytest.raises(CorruptWeightsError):
        read_readouts(files, SI)


def test_detector_readouts_refuses_a_stranger() -> None:
    class Odd:
        readouts = "some readouts"

    with pytest.raises(TypeError, match="ReadoutSet or None"):
        detector_readouts(Odd())


# ----------------------------------------------------------------- in the env


def _aliens_shown(objects: list[Detection]) -> int:
    return sum(1 for o in objects if o.category == "Alien" and o.slot in ALIENS)


def test_the_env_adds_what_the_folder_s_readouts_read(tmp_path: Path) -> None:
    folder = _with_readouts(_detector_copy(tmp_path), _doc({**COUNT_ROW, "bias": 5.0}))
    env = gym.make("MOC/SpaceInvaders-v0", weights=str(folder), ram_labels=True)
    assert isinstance(detector_readouts(env.get_wrapper_attr("detector")), ReadoutSet)
    _, info = env.reset(seed=2)
    for _ in range(20):
        assert info["labels"]["invaders_left_count"] == _aliens_shown(info["objects"]) + 5
        _, _, _, _, info = env.step(env.action_space.sample())
    env.close()
    envs = gym.make_vec("MOC/SpaceInvaders-v0", num_envs=2, weights=str(folder))
    _, infos = envs.reset(seed=3)
    assert infos["labels"]["_invaders_left_count"].all() and (infos["labels"]["invaders_left_count"] > 5).all()
    envs.close()


class _Tally(Readout):
    """A stateful readout: how many steps since the episode started (for the reset test)."""

    kind = "tally"

    def __init__(self) -> None:
        self.labels = ("invaders_left_count",)
        self.n = 0

    def reset(self) -> None:
        self.n = 0

    def read(self, objects, frame):  # type: ignore[no-untyped-def]
        self.n += 1
        return {"invaders_left_count": self.n}

    def to_json(self):  # type: ignore[no-untyped-def]
        return {"kind": self.kind}

    @classmethod
    def from_json(cls, row, spec):  # type: ignore[no-untyped-def]
        return cls()


def test_each_env_keeps_its_own_readout_state_and_resets_it() -> None:
    from moc_envs.perception.observation import ObjectObservationBuilder

    shared = ReadoutSet(SI, [_Tally()])
    a, b = ObjectObservationBuilder(SI, readouts=shared), ObjectObservationBuilder(SI, readouts=shared)
    assert [a.update([])[1]["labels"]["invaders_left_count"] for _ in range(3)] == [1, 2, 3]
    assert b.update([])[1]["labels"]["invaders_left_count"] == 1
    a.reset()
    assert a.update([])[1]["labels"]["invaders_left_count"] == 1


# ----------------------------------------------------------------- fitting


def _episode(counts: list[int], truth: list[int]) -> list:
    from trainers.readouts.data import Step

    frame, ram = np.zeros((210, 160, 3), np.uint8), np.zeros(128, np.uint8)
    return [
        Step([_alien(ALIENS[i]) for i in range(n)], frame, ram, {"invaders_left_count": t})
        for n, t in zip(counts, truth, strict=True)
    ]


def test_fit_count_finds_slope_and_bias_and_the_scores_say_how_right() -> None:
    from trainers.readouts.cli import score_readouts, to_markdown
    from trainers.readouts.fit_count import fit_count

    ep = _episode([10, 9, 8, 8, 7], [26, 27, 28, 28, 30])  # 36 - n, one step wrong
    r = fit_count(SI, [ep], "invaders_left_count", ["Alien"])
    assert (r.scale, r.bias) == (-1.0, 36.0)
    report = score_readouts(SI, ReadoutSet(SI, [r]), [ep])
    row = report["invaders_left_count"]
    assert row["given"] == 1.0 and row["exact"] == pytest.approx(0.8) and row["within_1"] == 1.0 and row["tolerance"] == 0
    assert "| invaders_left_count | 1.000 | 0.800 |" in to_markdown(report)


def test_the_command_refuses_a_game_with_no_readouts_to_fit() -> None:
    from trainers.readouts.plans import plan

    with pytest.raises(ValueError, match="Boxing has no readouts to fit"):
        plan("Boxing")


def test_readouts_command_refuses_a_game_without_readouts(capsys) -> None:
    from trainers.readouts.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--game", "Boxing", "--weights", "weights/Boxing", "--dry-run"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Boxing has no readouts to fit" in err and "Traceback" not in err
