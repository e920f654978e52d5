"""Weights you can trust: no pickle at load, manifest.json, and consistency checks.

Every test works on a copy of a shipped folder in tmp_path (weights/ is never modified). The
malicious pickles below would write a marker file when unpickled; the tests assert that the
marker never appears.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.perception.classifier import (
    CLASSIFIER_FILE,
    CLASSIFIER_FORMAT,
    CLASSIFIER_JSON,
    LEGACY_CLASSIFIER_FILE,
    load_classifier,
)
from moc_envs.perception.detectors import make_detector
from moc_envs.weights.manifest import (
    MANIFEST_FILE,
    refresh_manifest,
    sha256_file,
    verify_folder,
    write_manifest,
)
from moc_envs.weights.search import bundled_games

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "weights"


@pytest.fixture
def pong(tmp_path) -> Path:
    """A copy of the shipped Pong folder, under a root of its own."""
    return Path(shutil.copytree(BUNDLED / "Pong", tmp_path / "root" / "Pong"))


class _Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _plant_legacy_pickle(folder: Path, marker: Path, target: Path | None = None) -> None:
    """Replace the classifier by a malicious classifier.joblib with a matching old-style hash.

    ``target``: write the pickle there and make classifier.joblib a symlink to it.
    """
    (folder / CLASSIFIER_FILE).unlink()
    blob = pickle.dumps(_Payload(marker))
    if target is None:
        (folder / LEGACY_CLASSIFIER_FILE).write_bytes(blob)
    else:
        target.write_bytes(blob)
        (folder / LEGACY_CLASSIFIER_FILE).symlink_to(target)
    old = json.loads((folder / CLASSIFIER_JSON).read_text())
    old.update(format="moc_envs.classifier/1", file=LEGACY_CLASSIFIER_FILE, sha256=sha256_file(folder / LEGACY_CLASSIFIER_FILE))
    (folder / CLASSIFIER_JSON).write_text(json.dumps(old))


def _resign(folder: Path, game: str = "Pong") -> Path:
    """An attacker (or a careless copy) that also rewrites the manifest."""
    write_manifest(folder, game)
    return folder


def _flip_byte(path: Path, at: int | None = None) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(blob))


def _rewrite_classifier(folder: Path, tag: str = "Pong", classes: list[str] | None = None, **arrays: object) -> None:
    """Rewrite classifier.safetensors (some arrays replaced, game tag ``tag``) and classifier.json
    (classes), then re-sign the folder."""
    from safetensors.numpy import load_file, save_file

    current = load_file(str(folder / CLASSIFIER_FILE))
    for name, edit in arrays.items():
        current[name] = edit(current[name].copy())  # type: ignore[operator]
    save_file(current, str(folder / CLASSIFIER_FILE), metadata={"format": CLASSIFIER_FORMAT, "game": tag})
    if classes is not None:
        meta = json.loads((folder / CLASSIFIER_JSON).read_text())
        # The extents, HUD regions and withheld categories name the old classes: left out with them.
        meta = {k: v for k, v in meta.items() if k not in ("extents", "hud_regions", "withheld")}
        (folder / CLASSIFIER_JSON).write_text(json.dumps({**meta, "classes": classes}))
    _resign(folder)


def test_the_payload_is_live(tmp_path):
    # Control for the tests below: unpickling the payload does write its marker.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.read_text() == "code ran"


def test_malicious_pickle_with_matching_hash_runs_no_code(pong, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    _plant_legacy_pickle(pong, marker)
    _resign(pong)  # even listed in a valid manifest, with its hash in classifier.json
    # The scenario: the pickle in the folder the env loads from.
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(pong.parent))
    with pytest.raises(CorruptWeightsError, match=r"(?s)legacy pickled classifier.*never loaded.*moc-envs classifier --game Pong --weights"):
        gym.make("MOC/Pong-v0", device="cpu")
    with pytest.raises(CorruptWeightsError, match="legacy pickled classifier"):
        load_classifier(pong, "Pong")
    with pytest.raises(CorruptWeightsError, match="legacy pickled classifier"):
        make_detector("space", "Pong", "cpu", weights=pong)
    # allow_unclassified: the detector loads without categories; the pickle is still never read.
    assert make_detector("space", "Pong", "cpu", weights=pong, allow_unclassified=True).classifier is None
    assert not marker.exists(), "unpickling ran the payload"


def test_malicious_pickle_behind_a_symlink_runs_no_code(pong, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    _plant_legacy_pickle(pong, marker, target=tmp_path / "elsewhere.joblib")
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(pong.parent))
    with pytest.raises(CorruptWeightsError, match="legacy pickled classifier"):
        gym.make("MOC/Pong-v0", device="cpu")
    with pytest.raises(CorruptWeightsError, match=r"classifier\.joblib is a symlink .* inside the weights folder"):
        make_detector("space", "Pong", "cpu", weights=pong, allow_unclassified=True)
    with pytest.raises(CorruptWeightsError, match="is a symlink"):
        write_manifest(pong, "Pong")  # a writer does not vouch for a symlink either
    assert not marker.exists(), "unpickling ran the payload"


def test_no_unpickling_code_in_the_package():
    # Loading runs no code: no pickle-based loader is imported or called anywhere in moc_envs
    # (the trainers load their own checkpoints with torch.load(weights_only=True)).
    loader = re.compile(r"^\s*(import|from)\s+(joblib|pickle|dill|cloudpickle)\b|\b(joblib|pickle)\.loads?\(|torch\.load\(", re.M)
    for path in sorted((REPO / "moc_envs").rglob("*.py")):
        found = loader.search(path.read_text())
        assert found is None, f"{path.relative_to(REPO)}: {found.group(0)!r}"
    for path in sorted((REPO / "trainers").rglob("*.py")):
        assert "joblib" not in path.read_text(), f"{path.relative_to(REPO)} still uses joblib"


def test_flipped_byte_in_the_detector_names_the_file_and_hashes(pong):
    expected = json.loads((pong / MANIFEST_FILE).read_text())["files"]["detector.safetensors"]["sha256"]
    _flip_byte(pong / "detector.safetensors")
    actual = sha256_file(pong / "detector.safetensors")
    with pytest.raises(CorruptWeightsError) as err:
        make_detector("space", "Pong", "cpu", weights=pong)
    message = str(err.value)
    assert f"{pong}/detector.safetensors does not match manifest.json" in message
    assert "corruption or tampering" in message
    assert f"Expected SHA-256 {expected}" in message and f"got {actual}" in message


def test_manifest_problems_are_refused(pong, tmp_path):
    (pong / "card.md").unlink()
    with pytest.raises(CorruptWeightsError, match=r"card\.md is listed in manifest\.json but missing"):
        verify_folder(pong, "Pong")
    _resign(pong)
    verify_folder(pong, "Pong")
    # A loaded file the manifest does not list.
    manifest = json.loads((pong / MANIFEST_FILE).read_text())
    del manifest["files"][CLASSIFIER_FILE]
    (pong / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptWeightsError, match=r"classifier\.safetensors is not listed in .*manifest\.json"):
        make_detector("space", "Pong", "cpu", weights=pong)
    # A symlink inside the folder, even to a genuine file.
    _resign(pong)
    genuine = tmp_path / "genuine.safetensors"
    (pong / CLASSIFIER_FILE).rename(genuine)
    (pong / CLASSIFIER_FILE).symlink_to(genuine)
    with pytest.raises(CorruptWeightsError, match=r"classifier\.safetensors is a symlink"):
        make_detector("space", "Pong", "cpu", weights=pong)
    (pong / CLASSIFIER_FILE).unlink()
    genuine.rename(pong / CLASSIFIER_FILE)
    # No manifest at all.
    (pong / MANIFEST_FILE).unlink()
    with pytest.raises(CorruptWeightsError, match=r"has no manifest\.json: possible corruption or tampering.*moc-envs manifest"):
        make_detector("space", "Pong", "cpu", weights=pong)
    # Another game's manifest, or a malformed one.
    _resign(pong, "Boxing")
    with pytest.raises(CorruptWeightsError, match="records a weights folder for game 'Boxing', not 'Pong'"):
        make_detector("space", "Pong", "cpu", weights=pong)
    (pong / MANIFEST_FILE).write_text(json.dumps({"format": "moc_envs.manifest/1", "game": "Pong", "files": {"../x": {}}}))
    with pytest.raises(CorruptWeightsError, match="must be a plain file name"):
        verify_folder(pong, "Pong")


def test_writers_do_not_re_sign_changed_files(pong):
    _flip_byte(pong / "detector.safetensors")
    (pong / "eval_test.md").write_text("new evaluation\n")
    with pytest.raises(CorruptWeightsError, match=r"detector\.safetensors does not match manifest\.json"):
        refresh_manifest(pong, "Pong", ["eval_test.md"])
    _resign(pong)
    (pong / "eval_test.md").write_text("newer evaluation\n")
    refresh_manifest(pong, "Pong", ["eval_test.md"])
    verify_folder(pong, "Pong")
    bare = pong.parent / "bare"
    bare.mkdir()
    (bare / "eval_test.md").write_text("x")
    assert refresh_manifest(bare, "Pong", ["eval_test.md"]) is None  # no manifest: none created
    assert not (bare / MANIFEST_FILE).exists()


def test_another_games_detector_in_the_pong_folder_is_refused(pong):
    shutil.copyfile(BUNDLED / "Boxing" / "detector.safetensors", pong / "detector.safetensors")
    with pytest.raises(CorruptWeightsError, match=r"detector\.safetensors does not match manifest\.json"):
        make_detector("space", "Pong", "cpu", weights=pong)
    # Re-signed (same architecture, so only the file's own tags tell): still refused.
    _resign(pong)
    with pytest.raises(CorruptWeightsError, match=r"tagged format 'moc_envs\.space_detector/1', game 'Boxing'; expected .* game 'Pong'"):
        make_detector("space", "Pong", "cpu", weights=pong)
    # A config.json for another game, or a whole folder asked for as another game.
    with pytest.raises(CorruptWeightsError, match="not 'Boxing'"):
        make_detector("space", "Boxing", "cpu", weights=BUNDLED / "Pong")


def test_folder_without_classifier_needs_allow_unclassified(pong):
    for name in (CLASSIFIER_FILE, CLASSIFIER_JSON):
        (pong / name).unlink()
    _resign(pong)
    with pytest.raises(
        MissingWeightsError,
        match=rf"(?s)no z_what classifier.*moc-envs classifier --game Pong --weights {pong} --data data/Pong.*allow_unclassified=True",
    ):
        make_detector("space", "Pong", "cpu", weights=pong)
    det = make_detector("space", "Pong", "cpu", weights=pong, allow_unclassified=True)
    assert det.classifier is None
    with np.load(REPO / "tests" / "fixtures" / "pong_frames.npz") as z:
        found = det.detect(z["frames"][:1])
    assert found[0] and {d.category for d in found[0]} == {"object"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"scale": lambda a: a * 0}, "scale must be > 0 everywhere"),
        ({"radius": lambda a: -a}, "radius must be > 0 everywhere"),
        ({"centroids": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a).astype(a.dtype)}, "centroids must be finite"),
        ({"mean": lambda a: a + np.inf}, "mean must be finite"),
    ],
)
def test_degenerate_classifier_is_refused(pong, edit, message):
    _rewrite_classifier(pong, **edit)
    with pytest.raises(CorruptWeightsError, match=rf"does not hold a valid z_what classifier: {message}"):
        make_detector("space", "Pong", "cpu", weights=pong)


def test_classifier_whose_categories_fill_no_slot_is_refused(pong):
    _rewrite_classifier(pong, classes=["Car", "Tree", "Flag"])
    with pytest.raises(CorruptWeightsError, match=r"categories \(Car, Tree, Flag\) fill no observation slot of Pong \(its categories: Player, Enemy, Ball\)"):
        make_detector("space", "Pong", "cpu", weights=pong)
    # A classifier of another game, re-tagged: its game tag disagrees with classifier.json.
    _rewrite_classifier(pong, tag="Boxing")
    with pytest.raises(CorruptWeightsError, match="tagged format .* game 'Boxing'"):
        load_classifier(pong, "Pong")


def test_tiny_max_box_is_refused(pong):
    config = json.loads((pong / "config.json").read_text())
    (pong / "config.json").write_text(json.dumps({**config, "max_box": [4, 4]}))
    _resign(pong)
    with pytest.raises(CorruptWeightsError, match=r"max_box 4 x 4 px is smaller than one grid cell .* would drop almost every box; expected at least 10 x 13\.125, got 4 x 4"):
        make_detector("space", "Pong", "cpu", weights=pong)


def test_the_shipped_detectors_load_with_their_classifiers():
    shipped = bundled_games()
    assert {"Pong", "Boxing", "Skiing", "Freeway"} <= set(shipped)
    for game in shipped:
        det = make_detector("space", game, "cpu")
        # Classes beyond the game's slots (Breakout's brick rows) are named, then left out of the
        # observation; at least the slots' categories must be there.
        assert det.classifier is not None and set(det.classifier.classes) & set(det.game.category_names)
