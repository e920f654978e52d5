"""Weights lookup (weights=, the MOC_ENVS_WEIGHTS search path, the bundled weights), the
weights table, and a regular (non-editable) install carrying weights/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moc_envs import weights_dir, weights_root
from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.games import game_names
from moc_envs.perception.detectors import make_detector
from moc_envs.weights.search import (
    bundled_games,
    find_weights,
    format_weights_table,
    require_weights,
    weights_search_path,
    weights_table,
)

REPO = Path(__file__).resolve().parents[1]
UNSHIPPED = "Tennis"
"""The example of a game that needs training: every game ships weights, so the tests that need
one without hide it (:func:`partial_bundle`)."""
LOWER = UNSHIPPED.lower()
BUNDLED = REPO / "weights"


@pytest.fixture
def partial_bundle(monkeypatch, tmp_path) -> Path:
    """A bundled root holding copies of Pong, Boxing and Skiing only (UNSHIPPED among the missing)."""
    import moc_envs.weights.search

    root = tmp_path / "bundle"
    for game in ("Pong", "Boxing", "Skiing"):
        shutil.copytree(BUNDLED / game, root / game, ignore=shutil.ignore_patterns("space", "agent"))
    monkeypatch.setattr(moc_envs.weights.search, "weights_root", lambda: root)
    assert UNSHIPPED not in bundled_games()
    return root


def _copy_game(root: Path, game: str = "Pong") -> Path:
    """A copy of a shipped game folder under ``root`` (tests never touch weights/)."""
    return Path(shutil.copytree(BUNDLED / game, root / game))


def _flip_detector_byte(folder: Path) -> None:
    path = folder / "detector.safetensors"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def test_checkout_weights_by_default(monkeypatch) -> None:
    monkeypatch.delenv("MOC_ENVS_WEIGHTS", raising=False)
    assert weights_root() == BUNDLED
    assert weights_dir("pong") == BUNDLED / "Pong"
    assert weights_search_path() == [(BUNDLED, "bundled")]
    assert find_weights("Pong") == (BUNDLED / "Pong", "bundled")
    assert set(bundled_games()) == set(game_names())  # every game ships


def test_a_game_outside_every_root_is_not_found(partial_bundle) -> None:
    assert find_weights(UNSHIPPED) is None and find_weights("Pong") == (partial_bundle / "Pong", "bundled")
    # Where a game without weights would be shipped.
    assert weights_dir("SPACEINVADERS") == partial_bundle / "SpaceInvaders"


def test_env_var_root_without_the_game_falls_through_to_bundled(monkeypatch, tmp_path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", f"{first}{os.pathsep}{os.pathsep}{second}")
    assert weights_search_path() == [
        (first.resolve(), "MOC_ENVS_WEIGHTS"),
        (second.resolve(), "MOC_ENVS_WEIGHTS"),
        (BUNDLED, "bundled"),
    ]
    assert weights_root() == BUNDLED  # the env var no longer hides the bundled weights
    assert require_weights("Pong") == BUNDLED / "Pong"
    assert make_detector("space", "Pong", "cpu").classifier is not None


def test_env_var_root_with_the_game_wins(monkeypatch, tmp_path) -> None:
    empty, root = tmp_path / "empty", tmp_path / "root"
    empty.mkdir()
    pong = _copy_game(root)
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", os.pathsep.join([str(empty), str(root)]))
    assert find_weights("Pong") == (pong.resolve(), "MOC_ENVS_WEIGHTS")
    assert require_weights("Boxing") == BUNDLED / "Boxing"  # not in the root: bundled
    make_detector("space", "Pong", "cpu")
    # The env var's copy is the one loaded: damage it and loading says so, naming that copy.
    _flip_detector_byte(pong)
    with pytest.raises(CorruptWeightsError, match=f"{pong.resolve()}/detector.safetensors does not match"):
        make_detector("space", "Pong", "cpu")
    # A half-written game folder in a root is an error, not a silent fall-through.
    (pong / "config.json").unlink()
    with pytest.raises(MissingWeightsError, match=r"missing .*root/Pong/config\.json \(found through MOC_ENVS_WEIGHTS root"):
        require_weights("Pong")


def test_explicit_weights_game_folder_and_root(monkeypatch, tmp_path) -> None:
    other = tmp_path / "env_root"
    _flip_detector_byte(_copy_game(other))
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(other))  # a broken copy: weights= must win over it
    root = tmp_path / "mine"
    pong = _copy_game(root)
    assert require_weights("Pong", weights=pong) == pong
    assert require_weights("Pong", weights=root) == pong
    assert require_weights("pong", weights=str(root)) == pong
    for weights in (pong, root):
        assert make_detector("space", "Pong", "cpu", weights=weights).classifier is not None
    with pytest.raises(MissingWeightsError, match=r"weights=.* is neither a game folder .* nor a weights root holding Boxing/"):
        require_weights("Boxing", weights=root)
    with pytest.raises(MissingWeightsError, match="is not a folder"):
        require_weights("Pong", weights=tmp_path / "nowhere")
    # A game folder of another game is refused by its tags, not loaded as Pong.
    boxing = _copy_game(tmp_path / "boxing_root", "Boxing")
    with pytest.raises(CorruptWeightsError, match="not 'Pong'"):
        make_detector("space", "Pong", "cpu", weights=boxing)
    with pytest.raises(ValueError, match="only applies to detector='space', got detector 'ram'"):
        make_detector("ram", "Pong", weights=root)


def test_missing_weights_name_the_commands_weights_and_env_var(monkeypatch, tmp_path, partial_bundle) -> None:
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=rf"No trained SPACE\+MOC detector for {UNSHIPPED}: missing .*{UNSHIPPED}/detector\.safetensors") as err:
        require_weights(LOWER)
    message = str(err.value)
    for piece in (
        f"searched {tmp_path.resolve()}, {partial_bundle}",
        f"moc-envs train-detector --game {UNSHIPPED} --data data/{UNSHIPPED} --out runs/{LOWER}",
        f"moc-envs export runs/{LOWER} --game {UNSHIPPED}",
        f"moc-envs classifier --game {UNSHIPPED} --weights runs/{LOWER}/weights/{UNSHIPPED}",
        f"weights='runs/{LOWER}/weights'",
        f"MOC_ENVS_WEIGHTS=runs/{LOWER}/weights",
        "detector='ram'",
    ):
        assert piece in message, piece


def test_weights_table(monkeypatch, tmp_path, partial_bundle) -> None:
    root = tmp_path / "root"
    _flip_detector_byte(_copy_game(root))
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(root))
    rows = {r.game: r for r in weights_table()}
    assert set(rows) == set(game_names())
    assert rows["Pong"].origin == "MOC_ENVS_WEIGHTS" and rows["Pong"].status.startswith("refused: ")
    assert "detector.safetensors does not match" in rows["Pong"].status
    assert rows["Boxing"].origin == "bundled" and rows["Boxing"].status == "ok"
    assert rows["Boxing"].folder == partial_bundle / "Boxing"
    boxing = json.loads((BUNDLED / "Boxing" / "card.json").read_text())["ship"]
    assert rows["Boxing"].f1_moving == pytest.approx(boxing["f1_moving"]) and rows["Boxing"].meets_bar is True
    assert rows[UNSHIPPED].origin == "none" and rows[UNSHIPPED].folder is None
    explicit = {r.game: r for r in weights_table(weights=partial_bundle / "Skiing")}
    assert explicit["Skiing"].origin == "explicit" and explicit["Pong"].origin == "MOC_ENVS_WEIGHTS"
    text = format_weights_table(weights=partial_bundle)
    lines = text.splitlines()
    assert lines[0].split() == ["game", "source", "F1", "held-out", "vision", "spurious", "slot", "bar", "F1", "moving",
                                "(test)", "category", "acc.", "test", "bar", "status", "folder"]  # fmt: skip
    pong = next(line for line in lines if line.startswith("Pong "))
    card = json.loads((BUNDLED / "Pong" / "card.json").read_text())["ship"]
    held_out = [f"{card[k]:.3f}" for k in ("f1_held_out", "vision_f1_held_out", "spurious_singleton_share")]
    verdict = "met" if card["meets_held_out_bar"] else "not met"
    expected = [f"{card['f1_moving']:.3f}", f"{card['category_accuracy']:.3f}"]
    assert pong.split()[:-1] == ["Pong", "explicit", *held_out, *verdict.split(), *expected, "met", "ok"]
    assert next(line for line in lines if line.startswith(f"{UNSHIPPED} ")).split()[:2] == [UNSHIPPED, "none"]
    assert f"searched: {root.resolve()} (MOC_ENVS_WEIGHTS), {partial_bundle} (bundled)" in text


def test_regular_install_ships_weights(tmp_path) -> None:
    """Build the wheel, install it into a temp folder, and find weights/ inside it."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("moc_envs-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "MOC_ENVS_WEIGHTS"}
    env["PYTHONPATH"] = str(site)
    code = (
        "import moc_envs, moc_envs.weights.search as w; print(moc_envs.__file__); print(w.weights_root())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(site)), out  # the installed copy, not the checkout
    root = Path(out[1])
    assert root == site / "moc_envs" / "_weights"
    expected = {
        p.relative_to(BUNDLED)
        for p in BUNDLED.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    installed = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
    assert expected and expected <= installed
    # The benchmarks are installed too (`moc-envs bench` from any folder), their results are not,
    # and both registries of verbs are declared for moc_envs.cli to find.
    assert (site / "benchmarks" / "commands.py").is_file() and (site / "trainers" / "commands.py").is_file()
    assert not (site / "benchmarks" / "results").exists()
    (points,) = site.glob("moc_envs-*.dist-info/entry_points.txt")
    assert "[moc_envs.commands]" in points.read_text()
    # The installed folders pass their manifests (no file lost or changed on the way).
    from moc_envs.weights.manifest import verify_folder

    shipped = bundled_games()
    assert {"Pong", "Boxing", "Skiing", "Freeway"} <= set(shipped)
    for game in shipped:
        verify_folder(root / game, game)
