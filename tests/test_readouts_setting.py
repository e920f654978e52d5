"""The setting readout: a byte the env's game mode fixes (MsPacman's ghosts_count, RAM 19), from the
mode an env was made with, in the single env and the vector env; fitting and refusals."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import moc_envs  # noqa: F401 - registers the MOC ids
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.games import get_game
from moc_envs.readouts import ReadoutSet, readout_from_json
from moc_envs.readouts.setting import SettingReadout
from trainers.readouts.fit_count import fit_setting

MP = get_game("MsPacman")


def _setting() -> SettingReadout:
    return SettingReadout(MP, "ghosts_count", {"default": 3, "0": 3, "1": 0})


def test_the_byte_follows_the_env_s_mode_and_an_unknown_mode_gets_none() -> None:
    r = _setting()
    assert r.read([], None) == {"ghosts_count": 3}  # not configured: ALE's default mode
    one = ReadoutSet(MP, [r]).fresh(game_mode=1)
    assert one.read([], None) == {"ghosts_count": 0}
    assert ReadoutSet(MP, [r]).fresh(game_mode=2).read([], None) == {}  # never fitted: not guessed
    assert r.read([], None) == {"ghosts_count": 3}  # fresh() configured a copy, not the shared one


def test_setting_rows_round_trip() -> None:
    r = _setting()
    again = readout_from_json(json.loads(json.dumps(r.to_json())), MP)
    assert isinstance(again, SettingReadout) and again.to_json() == r.to_json()


def _set(row: dict, key: str, value: object) -> None:
    row[key] = value


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("values"), r"missing \['values'\]"),
        (lambda r: _set(r, "extra", 1), r"unknown \['extra'\]"),
        (lambda r: _set(r, "labels", ["ghosts_count", "num_lives"]), "gives one label"),
        (lambda r: _set(r, "labels", ["ghost_count"]), "has no RAM labels"),
        (lambda r: _set(r, "values", {}), "values must map game modes to bytes"),
        (lambda r: _set(r, "values", [3]), "values must be a JSON object"),
        (lambda r: _set(r, "values", {"easy": 3}), "a game mode is 'default' or a mode number"),
        (lambda r: _set(r, "values", {"0": 256}), "must be an integer 0..255"),
        (lambda r: _set(r, "values", {"0": 2.5}), "must be an integer 0..255"),
    ],
)
def test_a_malformed_setting_row_is_refused_with_its_reason(change, message: str) -> None:
    row = json.loads(json.dumps(_setting().to_json()))
    change(row)
    with pytest.raises(ValueError, match=message):
        readout_from_json(row, MP)


def test_fit_setting_reads_each_mode_s_byte_and_refuses_a_byte_that_moves() -> None:
    r = fit_setting(MP, [], "ghosts_count", steps=40)
    assert r.values == {"default": 3, "0": 3, "1": 0, "2": 1, "3": 2}
    with pytest.raises(ValueError, match="changes during play .* not a setting"):
        fit_setting(MP, [], "player_x", steps=80)


@pytest.mark.parametrize("mode", [None, 1, 3])
def test_the_env_gives_the_byte_of_its_mode(mode: int | None) -> None:
    """The shipped weights/MsPacman readouts.json, made as a user would, against RAM 19."""
    kw = {} if mode is None else {"mode": mode}
    env = gym.make("MOC/MsPacman-v0", ram_labels=True, threads=1, **kw)
    try:
        _, info = env.reset(seed=0)
        for _ in range(3):
            _, _, _, _, info = env.step(0)
            assert info["labels"]["ghosts_count"] == info["ram_labels"]["ghosts_count"]
        assert info["labels"]["ghosts_count"] == {None: 3, 1: 0, 3: 2}[mode]
    finally:
        env.close()


def test_the_vector_env_gives_each_row_the_byte_of_its_mode() -> None:
    venv = MocVectorEnv("MsPacman", 2, ram_labels=True, threads=1, mode=2)
    try:
        venv.reset(seed=0)
        _, _, _, _, info = venv.step([0, 0])
        assert list(info["labels"]["ghosts_count"]) == [1, 1] == list(info["ram_labels"]["ghosts_count"])
    finally:
        venv.close()
