"""The learned HUD reader: hud.json / hud.safetensors loading and refusals, reading real ALE frames
against RAM, the labels in the env, and the trainer on a few hundred frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from moc_envs.errors import CorruptWeightsError, FrameFormatError, MissingWeightsError
from moc_envs.games import get_game
from moc_envs.hud import (
    HUD_FILE,
    HUD_FORMAT,
    HUD_JSON,
    GlyphAlphabet,
    HudField,
    HudReader,
    detector_hud,
    load_hud,
    read_field,
    save_hud,
    segment,
)
from moc_envs.hud.fields import encode
from moc_envs.weights.manifest import read_manifest, verify_folder, write_manifest

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def _hud_copy(tmp_path: Path, game: str) -> Path:
    """A folder holding only the shipped reader of ``game`` and a manifest."""
    folder = tmp_path / game
    folder.mkdir()
    for name in (HUD_JSON, HUD_FILE):
        shutil.copy(WEIGHTS / game / name, folder / name)
    write_manifest(folder, game)
    return folder


def _edit(folder: Path, game: str, change) -> None:
    data = json.loads((folder / HUD_JSON).read_text())
    change(data)
    (folder / HUD_JSON).write_text(json.dumps(data))
    write_manifest(folder, game)


def _play(game: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames as the env's detector sees them and the RAM of each, random actions held 8 steps."""
    from moc_envs.envs.registration import make_ale_env
    from moc_envs.perception.frames import frame_source

    env = make_ale_env(get_game(game), frameskip=4, repeat_action_probability=0.25)
    frame_of, ale = frame_source(env), env.unwrapped.ale
    rng = np.random.default_rng(seed)
    frames, rams = [], []
    env.reset(seed=seed)
    action = 0
    for t in range(steps):
        if t % 8 == 0:
            action = int(rng.integers(env.action_space.n))
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
        frames.append(frame_of())
        rams.append(ale.getRAM().copy())
    env.close()
    return np.stack(frames), np.stack(rams)


# ----------------------------------------------------------------- loading and refusals


def test_the_shipped_reader_loads_through_the_manifest(tmp_path: Path) -> None:
    folder = _hud_copy(tmp_path, "Pong")
    reader = load_hud(folder, "Pong")
    assert reader.game == "Pong" and set(reader.labels) == {"player_score", "enemy_score"}
    assert {HUD_JSON, HUD_FILE} <= set(read_manifest(WEIGHTS / "Pong")[1])
    digits = [n for n in reader.alphabet.names if n]
    assert set("0123456789") <= set(digits)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="moc_envs.hud/0"), f"has format 'moc_envs.hud/0', expected '{HUD_FORMAT}'"),
        (lambda d: d.update(game="Boxing"), "holds a HUD reader for game 'Boxing', not 'Pong'"),
        (lambda d: d["fields"][0].update(label="clock"), r"Pong has no RAM labels named \['clock'\]"),
        (lambda d: d["fields"].append(dict(d["fields"][0])), "each label may have one field"),
        (lambda d: d["fields"][0].update(box=[0, 0, 200, 10]), "box must be"),
        (lambda d: d["fields"][0].update(kind="dial"), "kind must be one of number, count, bar, lookup"),
        (lambda d: d["fields"][0].update(base=8), "base must be 10"),
        (lambda d: d["fields"][0].update(shift=-1), "shift must be an integer"),
        (lambda d: d["fields"][0].update(background=[0, 0]), "background must be an RGB colour"),
        (lambda d: d["fields"][0].update(dial=1), r"unknown keys \['dial'\]"),
        (lambda d: d["fields"][0].update(kind="bar", colour=[1, 2, 3], palette=[[1, 2, 3]]), "palette must hold its colour and its background"),
        (lambda d: d["fields"][0].update(kind="count", glyphs=[99]), "outside the alphabet"),
        (lambda d: d["fields"][0].update(table=[[[1], 300]]), "byte 0..255"),
        (lambda d: d.update(glyph_names=d["glyph_names"][:-1]), "glyph names must be"),
        (lambda d: d.update(glyph_names=["x"] * len(d["glyph_names"])), "each a digit 0-9 or empty"),
    ],
)
def test_a_bad_hud_json_is_refused_with_its_reason(tmp_path: Path, change, message: str) -> None:
    folder = _hud_copy(tmp_path, "Pong")
    _edit(folder, "Pong", change)
    with pytest.raises(CorruptWeightsError, match=message):
        load_hud(folder, "Pong")


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    folder = _hud_copy(tmp_path, "Seaquest")
    text = (folder / HUD_JSON).read_text()
    data = json.loads(text)
    bar = next(f for f in data["fields"] if f["kind"] == "bar")
    bar["slope"] = 1e308
    (folder / HUD_JSON).write_text(json.dumps(data).replace("1e+308", "NaN"))
    write_manifest(folder, "Seaquest")
    with pytest.raises(CorruptWeightsError, match="NaN"):
        load_hud(folder, "Seaquest")


def _write_arrays(folder: Path, game: str, arrays: dict, tag_game: str | None = None) -> None:
    from safetensors.numpy import save_file

    save_file(arrays, str(folder / HUD_FILE), metadata={"format": HUD_FORMAT, "game": tag_game or game})
    write_manifest(folder, game)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: {**a, "glyphs": a["glyphs"].astype(np.float32)}, "must be uint8 of shape"),
        (lambda a: {**a, "glyph_sizes": a["glyph_sizes"][:-1]}, "glyph sizes must be integers of shape"),
        (lambda a: {**a, "glyphs": a["glyphs"] * 2}, "only 0 and 1"),
        (lambda a: {**a, "extra": a["glyph_sizes"]}, "must hold exactly the arrays glyphs, glyph_sizes"),
        (lambda a: {**a, "glyphs": np.concatenate([a["glyphs"], a["glyphs"][:1]]), "glyph_sizes": np.concatenate([a["glyph_sizes"], a["glyph_sizes"][:1]])}, "glyph names must be"),
    ],
)
def test_bad_glyph_arrays_are_refused(tmp_path: Path, mutate, message: str) -> None:
    from safetensors.numpy import load_file

    folder = _hud_copy(tmp_path, "Pong")
    _write_arrays(folder, "Pong", mutate(load_file(str(folder / HUD_FILE))))
    with pytest.raises(CorruptWeightsError, match=message):
        load_hud(folder, "Pong")


def test_glyphs_tagged_for_another_game_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    folder = _hud_copy(tmp_path, "Pong")
    _write_arrays(folder, "Pong", load_file(str(folder / HUD_FILE)), tag_game="Tennis")
    with pytest.raises(CorruptWeightsError, match="game 'Tennis'"):
        load_hud(folder, "Pong")


def test_unrecorded_or_missing_files_are_refused(tmp_path: Path) -> None:
    folder = _hud_copy(tmp_path, "Pong")
    (folder / HUD_JSON).write_text((folder / HUD_JSON).read_text() + " ")
    with pytest.raises(CorruptWeightsError, match="does not match manifest.json"):
        load_hud(folder, "Pong")
    write_manifest(folder, "Pong")
    (folder / HUD_FILE).unlink()
    with pytest.raises(CorruptWeightsError, match="listed in manifest.json but missing"):
        load_hud(folder, "Pong")
    (folder / HUD_JSON).unlink()
    with pytest.raises(MissingWeightsError, match="moc-envs hud --game Pong"):
        load_hud(folder, "Pong")


# ----------------------------------------------------------------- rules and glyphs


def test_number_fields_encode_bcd_scaled_and_late_clocks() -> None:
    box, bg = (0, 0, 10, 10), (0, 0, 0)
    assert encode(HudField("s", "number", box, bg, digits=2, base=16), 53) == 0x53
    assert encode(HudField("s", "number", box, bg, digits=2, base=16, bias=1), 99) == 0x00  # wraps round
    assert encode(HudField("s", "number", box, bg, digits=1, scale=5), 9) == 45  # Breakout's byte
    assert encode(HudField("s", "number", box, bg), 300) is None  # no byte holds it
    assert encode(HudField("s", "number", box, bg, base=16), 120) is None  # nor two BCD digits


def test_touching_digits_are_read_as_the_letters_they_are() -> None:
    one = np.ones((5, 1), bool)
    zero = np.ones((5, 3), bool)
    zero[1:4, 1] = False
    alphabet = GlyphAlphabet.from_bitmaps([one, zero], ["1", "0"])
    ten = np.concatenate([one, zero], axis=1)
    assert alphabet.split(ten) == [0, 1]
    (glyph,) = segment(np.pad(ten, 1))
    assert alphabet.ids([glyph]) == [0, 1]
    assert alphabet.ids(segment(np.pad(np.ones((5, 2), bool), 1))) == [0, 0]  # "11"
    assert alphabet.ids(segment(np.pad(np.ones((3, 2), bool), 1))) == [-1]  # no letters draw it


# ----------------------------------------------------------------- reading real frames


@pytest.mark.parametrize(("game", "steps"), [("Pong", 400), ("Boxing", 300), ("Seaquest", 400), ("Freeway", 300)])
def test_the_shipped_reader_reads_real_frames_as_ram_says(game: str, steps: int) -> None:
    spec = get_game(game)
    reader = load_hud(WEIGHTS / game, game)
    frames, rams = _play(game, steps, seed=2024)
    index = {lab.name: lab.index for lab in spec.ram_labels}
    for lab in reader.labels:
        got = [(reader.read(f).get(lab), int(r[index[lab]])) for f, r in zip(frames, rams, strict=True)]
        given = [(g, t) for g, t in got if g is not None]
        assert len(given) >= 0.5 * steps, lab
        exact = np.mean([g == t for g, t in given])
        assert exact >= 0.9, (lab, exact)


def test_a_blank_or_overdrawn_hud_is_left_out_not_guessed() -> None:
    reader = load_hud(WEIGHTS / "Pong", "Pong")
    frames, _ = _play("Pong", 40, seed=1)
    frame = frames[-1].copy()
    assert set(reader.read(frame)) == {"player_score", "enemy_score"}
    for f in reader.fields:
        x0, y0, x1, y1 = f.box
        frame[y0:y1, x0:x1] = f.background
    assert reader.read(frame) == {}
    frame = frames[-1].copy()
    field = reader.fields[0]
    x0, y0, x1, y1 = field.box
    frame[y0 + 3 : y0 + 6, x0 + 2 : x1 - 2] = (255, 255, 255)  # a bar across the digits
    assert field.label not in reader.read(frame)
    assert read_field(field, field.crop(frame), reader.alphabet) is None
    with pytest.raises(FrameFormatError, match=r"\(210, 160, 3\)"):
        reader.read(frame[:, :80])


def test_count_and_bar_fields_read_seaquest() -> None:
    reader = load_hud(WEIGHTS / "Seaquest", "Seaquest")
    kinds = {f.label: f.kind for f in reader.fields}
    assert kinds["oxygen_meter_value"] == "bar" and kinds["num_lives"] == "count"


# ----------------------------------------------------------------- the env


def test_the_learned_env_adds_hud_labels_and_the_ram_oracle_does_not() -> None:
    env = gym.make("MOC/Pong-v0", ram_labels=True)
    assert isinstance(detector_hud(env.get_wrapper_attr("detector")), HudReader)
    env.reset(seed=11)
    right = given = 0
    for _ in range(150):
        _, _, _, _, info = env.step(env.action_space.sample())
        for lab in ("player_score", "enemy_score"):
            if lab in info["labels"]:
                given += 1
                right += info["labels"][lab] == info["ram_labels"][lab]
    env.close()
    assert given >= 280 and right >= 0.95 * given
    oracle = gym.make("MOC/Pong-v0", detector="ram", ram_labels=True)
    _, info = oracle.reset(seed=11)
    assert detector_hud(oracle.get_wrapper_attr("detector")) is None
    assert "player_score" not in info["labels"] and "player_score" in info["ram_labels"]
    oracle.close()


def test_the_vector_env_adds_hud_labels() -> None:
    envs = gym.make_vec("MOC/Pong-v0", num_envs=2)
    _, infos = envs.reset(seed=3)
    assert infos["labels"]["_enemy_score"].all() and (infos["labels"]["enemy_score"] == 0).all()
    envs.close()


def test_detector_hud_refuses_a_stranger() -> None:
    class Odd:
        hud = "a reader"

    with pytest.raises(TypeError, match="HudReader or None"):
        detector_hud(Odd())


# ----------------------------------------------------------------- the trainer


def test_the_trainer_fits_a_reader_on_a_few_hundred_frames(tmp_path: Path, capsys) -> None:
    from trainers.hud.train import main

    folder = tmp_path / "Pong"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept\n")
    write_manifest(folder, "Pong")
    reader = main(["--game", "Pong", "--weights", str(folder), "--steps", "300", "--seed", "5"])
    assert "| enemy_score | number |" in capsys.readouterr().out
    assert reader is not None and "enemy_score" in reader.labels
    files = verify_folder(folder, "Pong")
    assert {HUD_JSON, HUD_FILE, "notes.txt"} <= set(files.files)
    loaded = load_hud(folder, "Pong")
    assert loaded.labels == reader.labels
    assert loaded.info["fit"]["seeds"] == [5, 6, 7, 8]
    frames, rams = _play("Pong", 200, seed=99)
    got = [(loaded.read(f).get("enemy_score"), int(r[13])) for f, r in zip(frames, rams, strict=True)]
    given = [(g, t) for g, t in got if g is not None]
    assert given and np.mean([g == t for g, t in given]) >= 0.9


def test_save_hud_round_trips(tmp_path: Path) -> None:
    reader = load_hud(WEIGHTS / "Seaquest", "Seaquest")
    save_hud(reader, tmp_path)
    write_manifest(tmp_path, "Seaquest")
    again = load_hud(tmp_path, "Seaquest")
    assert again.fields == reader.fields and again.alphabet.names == reader.alphabet.names
    assert np.array_equal(again.alphabet.bitmaps, reader.alphabet.bitmaps)


def test_the_benchmark_scores_every_hud_label_against_ram(tmp_path: Path) -> None:
    from benchmarks.labels.hud import main

    result = main(["--games", "Pong", "Skiing", "--quick", "--runs", "1", "--no-scripted", "--out", str(tmp_path)])
    pong, skiing = result["rows"]
    assert set(pong["labels"]) == {"player_score", "enemy_score"}
    assert pong["labels"]["enemy_score"]["given"] == 50 and pong["labels"]["enemy_score"]["exact"] >= 0.9
    assert skiing["labels"]["clock_ms"]["kind"] == "number+lead" and skiing["labels"]["clock_ms"]["given"] >= 45
    text = (tmp_path / "hud.md").read_text()
    assert "| Pong | enemy_score | number |" in text and (tmp_path / "hud.png").exists()
    assert json.loads((tmp_path / "hud.json").read_text())["seeds"] == [1000]
