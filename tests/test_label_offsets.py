"""Label calibration: offsets fitted for a learned detector, stored in labels.json, applied by the env."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from moc_envs import get_game, labels_from_detections
from moc_envs.errors import CorruptWeightsError
from moc_envs.perception.detection import Detection
from moc_envs.perception.detectors import label_spec
from moc_envs.perception.labels import LABELS_FILE, LABELS_FORMAT
from moc_envs.weights.manifest import refresh_manifest
from trainers.evaluate.label_offsets import (
    choose_offset,
    collect_link_values,
    fit_offset,
    label_scores,
    main,
    write_labels,
)

BOXING = Path(__file__).resolve().parents[1] / "weights" / "Boxing"


def _box(category: str, x: float, y: float) -> Detection:
    return Detection(x=x, y=y, w=10.0, h=20.0, category=category)


@pytest.fixture
def boxing_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "Boxing"
    shutil.copytree(BOXING, folder)
    (folder / LABELS_FILE).unlink(missing_ok=True)
    refresh_manifest(folder, "Boxing", [])
    return folder


def _labels_file(folder: Path, offsets: dict, game: str = "Boxing", fmt: str = LABELS_FORMAT) -> None:
    write_labels({"format": fmt, "game": game, "offsets": offsets}, folder)


def test_with_label_offsets_replaces_only_the_named_links() -> None:
    spec = get_game("Boxing")
    moved = spec.with_label_offsets({"enemy_x": 6})
    dets = [_box("Player", 40, 60), _box("Enemy", 90, 100)]
    before, after = labels_from_detections(spec, dets), labels_from_detections(moved, dets)
    assert after["enemy_x"] - before["enemy_x"] == 6 - spec.label_links[2].offset
    assert {k: v for k, v in after.items() if k != "enemy_x"} == {k: v for k, v in before.items() if k != "enemy_x"}
    assert spec.with_label_offsets({}) == spec and get_game("Boxing") == spec  # the registry's spec is untouched


def test_with_label_offsets_refuses_unknown_labels_and_bad_values() -> None:
    spec = get_game("Boxing")
    with pytest.raises(ValueError, match=r"no label links named \['ball_x'\]; expected some of"):
        spec.with_label_offsets({"ball_x": 1})
    with pytest.raises(ValueError, match="finite numbers"):
        spec.with_label_offsets({"enemy_x": float("nan")})
    with pytest.raises(ValueError, match="finite numbers"):
        spec.with_label_offsets({"enemy_x": True})


def test_fit_offset_finds_the_constant_shift_and_label_scores_measure_it() -> None:
    rng = np.random.default_rng(0)
    ram = rng.integers(20, 200, size=500)
    raw = ram - 7.0 + (rng.random(500) < 0.2) * rng.choice([-1.0, 1.0], size=500)
    assert fit_offset(raw, ram) == 7.0
    good, bad = label_scores(raw, ram, 7.0), label_scores(raw, ram, 6.0)
    assert good["exact"] == pytest.approx(0.8, abs=0.05) and good["median_error"] == 0
    assert bad["exact"] < 0.2 and bad["median_error"] == -1 and bad["within_2"] == 1.0
    with pytest.raises(ValueError, match="no samples"):
        fit_offset(raw[:0], ram[:0])


def test_fit_offset_takes_a_half_pixel_when_boxes_sit_between_pixels() -> None:
    rng = np.random.default_rng(1)
    ram = rng.integers(20, 200, size=400)
    raw = ram - 7.5  # boxes half a pixel off: a whole offset is exact only on halves that round its way
    assert fit_offset(raw, ram) == 7.5
    assert label_scores(raw, ram, 7.5)["exact"] == 1.0 and label_scores(raw, ram, 7.0)["exact"] < 0.7


def _run(seed: int, parity_rule: bool) -> tuple[np.ndarray, np.ndarray]:
    # Boxes on whole pixels, 70% of them even; the byte is pixel + 8, or pixel + 7 on odd pixels
    # under the parity rule (a game drawing on every other row).
    rng = np.random.default_rng(seed)
    raw = (2 * rng.integers(10, 100, size=600) + (rng.random(600) < 0.3)).astype(np.float64)
    return raw, (raw + 8 - ((raw % 2) if parity_rule else 0)).astype(np.int64)


def test_choose_offset_keeps_a_half_pixel_only_where_it_beats_the_whole_one_held_out() -> None:
    link = get_game("Pong").label_links[1]  # enemy_y, game offset 15
    row = choose_offset(link, _run(0, True), _run(1, True))
    # A half offset with halves rounded to even adds 8 to even pixels and 7 to odd ones.
    assert (row["fitted_whole"], row["fitted_half"], row["offset"], row["decision"]) == (8.0, 7.5, 7.5, "fitted")
    assert row["held_out"]["fitted"]["exact"] == 1.0 and row["held_out"]["game"]["exact"] == 0.0
    chance = choose_offset(link, _run(0, True), _run(1, False))
    assert chance["fitted_half"] == 7.5 and chance["offset"] == 8.0  # the parity seen on the fit run did not hold
    few = choose_offset(link, _run(0, True), tuple(a[:10] for a in _run(1, True)), min_samples=50)
    assert "offset" not in few and few["decision"].startswith("game's offset kept: fewer than 50")


def test_fit_offset_and_scores_wrap_like_the_link() -> None:
    """Freeway's car bytes count 0..159 around the screen: a car drawn at the right edge for byte
    0 reads 160 before the wrap, which must neither move the fitted offset nor count as an error."""
    ram = np.arange(160).repeat(3)
    raw = (ram - 3) % 160.0  # x = byte - 3, drawn modulo 160
    assert fit_offset(raw, ram, wrap=160) == 3.0
    assert label_scores(raw, ram, 3.0, wrap=160)["exact"] == 1.0
    unwrapped = label_scores(raw, ram, 3.0)
    assert unwrapped["within_5"] < 1.0 and unwrapped["within_1"] == unwrapped["within_5"]


def test_detector_loads_offsets_and_the_env_applies_them(boxing_copy: Path) -> None:
    spec = get_game("Boxing")
    shift = {"player_x": spec.label_links[0].offset + 10}
    _labels_file(boxing_copy, shift)
    env = gym.make("MOC/Boxing-v0", weights=boxing_copy)
    detector = env.get_wrapper_attr("detector")
    assert detector.label_offsets == shift
    assert label_spec(spec, detector).label_links[0].offset == shift["player_x"]
    env.reset(seed=3)
    seen = 0
    for _ in range(40):
        _, _, _, _, info = env.step(1)
        base = labels_from_detections(spec, info["objects"], tracked=True)
        if "player_x" in info["labels"] and 10 <= base["player_x"] <= 245:
            assert info["labels"]["player_x"] == base["player_x"] + 10
            seen += 1
        # The other labels keep the game's offsets (the HUD reader's labels come from the HUD).
        assert {k: v for k, v in info["labels"].items() if k != "player_x" and k in spec.localization_labels} == {
            k: v for k, v in base.items() if k != "player_x"
        }
    assert seen > 20
    env.close()


def test_vector_env_applies_the_offsets(boxing_copy: Path) -> None:
    spec = get_game("Boxing")
    _labels_file(boxing_copy, {"enemy_y": spec.label_links[3].offset - 4})
    envs = gym.make_vec("MOC/Boxing-v0", num_envs=2, weights=boxing_copy)
    envs.reset(seed=1)
    checked = 0
    for _ in range(20):
        _, _, _, _, infos = envs.step(np.array([1, 2]))
        for i, dets in enumerate(infos["objects"]):
            base = labels_from_detections(spec, dets, tracked=True)
            if infos["labels"]["_enemy_y"][i] and 4 <= base["enemy_y"] <= 255:
                assert infos["labels"]["enemy_y"][i] == base["enemy_y"] - 4
                checked += 1
    envs.close()
    assert checked > 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"format": "other/1", "game": "Boxing", "offsets": {}}, "has format 'other/1', expected 'moc_envs.labels/1'"),
        ({"format": LABELS_FORMAT, "game": "Pong", "offsets": {}}, "for game 'Pong', not 'Boxing'"),
        ({"format": LABELS_FORMAT, "game": "Boxing", "offsets": {"ball_x": 1}}, r"no label links named \['ball_x'\]"),
        ({"format": LABELS_FORMAT, "game": "Boxing", "offsets": {"enemy_x": "3"}}, "finite numbers"),
        ({"format": LABELS_FORMAT, "game": "Boxing", "offsets": [1, 2]}, "must be an object"),
    ],
)
def test_bad_labels_file_is_refused_with_its_reason(boxing_copy: Path, content: dict, message: str) -> None:
    (boxing_copy / LABELS_FILE).write_text(json.dumps(content))
    refresh_manifest(boxing_copy, "Boxing", [LABELS_FILE])
    with pytest.raises(CorruptWeightsError, match=message):
        gym.make("MOC/Boxing-v0", weights=boxing_copy)


def test_labels_file_outside_the_manifest_is_refused(boxing_copy: Path) -> None:
    (boxing_copy / LABELS_FILE).write_text(json.dumps({"format": LABELS_FORMAT, "game": "Boxing", "offsets": {}}))
    with pytest.raises(CorruptWeightsError, match=LABELS_FILE):
        gym.make("MOC/Boxing-v0", weights=boxing_copy)


def test_command_fits_writes_and_the_folder_loads(boxing_copy: Path, capsys) -> None:
    result = main(["--game", "Boxing", "--weights", str(boxing_copy), "--steps", "64", "--num-envs", "2", "--min-samples", "8"])
    assert "| enemy_x |" in capsys.readouterr().out
    saved = json.loads((boxing_copy / LABELS_FILE).read_text())
    assert saved["offsets"] == result["offsets"] and set(saved["labels"]) == set(get_game("Boxing").localization_labels)
    for lab, row in saved["labels"].items():
        assert row["held_out"]["game"]["samples"] > 0, lab
        if row.get("decision") == "fitted":
            assert (row["held_out"]["fitted"]["exact"], row["held_out"]["fitted"]["within_2"]) > (
                row["held_out"]["game"]["exact"], row["held_out"]["game"]["within_2"]
            )
    env = gym.make("MOC/Boxing-v0", weights=boxing_copy)
    assert env.get_wrapper_attr("detector").label_offsets == saved["offsets"]
    env.close()


def test_calibration_refuses_a_game_without_links(tmp_path: Path) -> None:
    bare = replace(get_game("Asterix"), label_links=())
    with pytest.raises(ValueError, match="Asterix has no label links"):
        collect_link_values(bare, tmp_path, steps=16, seed=0)
