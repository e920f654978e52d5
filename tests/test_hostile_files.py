"""Hostile files in a weights or agent folder: strict JSON, regular files only, presence from the manifest.

Issue 26, items 7, 9 and 10 and the minor messages: every reader of a user file (manifest,
config, labels, classifier, agent, card, safetensors headers) refuses hostile JSON (deep
nesting, 5,000-digit integers, 1e400, NaN, Infinity) with CorruptWeightsError naming the file;
a FIFO in place of a file is refused without blocking (``moc-envs list`` included); a listed
file deleted between the manifest check and its read is corruption. Every test works on copies
of a shipped folder in tmp_path; the manifest is rewritten to match where the hostile content
must get past hashing (the manifest is no signature).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moc_envs.agents import load_folder
from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.games import get_game
from moc_envs.perception.classifier import CLASSIFIER_FILE, CLASSIFIER_JSON, load_classifier
from moc_envs.perception.detectors import make_detector
from moc_envs.perception.labels import LABELS_FILE, read_label_offsets
from moc_envs.weights.manifest import (
    MANIFEST_FILE,
    safetensors_metadata,
    verify_folder,
    write_manifest,
)
from moc_envs.weights.safe_read import (
    MAX_JSON_DEPTH,
    load_json_file,
    parse_json,
    read_regular_file,
    torch_load_error_text,
)
from moc_envs.weights.search import find_weights, require_weights, weights_table

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "weights"
HOSTILE = "@@HOSTILE@@"

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


@pytest.fixture
def pong(tmp_path) -> Path:
    """A copy of the shipped Pong detector folder (no sub-folders), under a root of its own."""
    return Path(shutil.copytree(BUNDLED / "Pong", tmp_path / "root" / "Pong", ignore=shutil.ignore_patterns("space", "agent")))


# Hostile JSON values, as text: what json.loads turns into RecursionError, ValueError (Python's
# 4,300-digit limit), an infinite float or NaN.
hostile_tokens = st.one_of(
    st.integers(MAX_JSON_DEPTH + 1, 20_000).map(lambda n: "[" * n + "]" * n),
    st.integers(MAX_JSON_DEPTH + 1, 20_000).map(lambda n: '{"a":' * n + "0" + "}" * n),
    st.integers(21, 6_000).map(lambda n: "9" * n),
    st.integers(21, 6_000).map(lambda n: "-" + "7" * n),
    st.integers(309, 100_000).map(lambda e: f"1e{e}"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "-1e400", "[NaN]", '{"x": Infinity}']),
)


def _plant(original: dict, where: str | None, token: str) -> bytes:
    """``original`` with ``token`` as the value of key ``where`` (a new key when absent), or
    ``token`` alone (``where`` None): an otherwise valid document, so the hostile value reaches
    whatever reads that key."""
    if where is None:
        return token.encode()
    doc = dict(original)
    doc[where] = HOSTILE
    return json.dumps(doc, indent=1).replace(json.dumps(HOSTILE), token).encode()


def _places(original: dict) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(sorted(original)), st.just("extra"))


def _safetensors_with_header(original: bytes, header: bytes) -> bytes:
    """``original``'s data section behind a new header of ``header`` bytes."""
    (size,) = struct.unpack("<Q", original[:8])
    return struct.pack("<Q", len(header)) + header + original[8 + size :]


HYPOTHESIS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EXAMPLES = [
    example(where=None, token="[" * 100_000),  # RecursionError in json
    example(where="extra", token="9" * 5_000),  # ValueError: Python's digit limit
    example(where="extra", token="1e400"),  # inf
    example(where="extra", token="NaN"),
]


def _with_examples(test):
    for ex in EXAMPLES:
        test = ex(test)
    return test


def _refused(call, name: str) -> None:
    """``call()`` raises CorruptWeightsError naming file ``name``."""
    with pytest.raises(CorruptWeightsError, match=re.escape(name)):
        call()


@HYPOTHESIS
@_with_examples
@given(where=_places(json.loads((BUNDLED / "Pong" / MANIFEST_FILE).read_text())), token=hostile_tokens)
def test_hostile_manifest_is_refused_naming_it(pong, where, token):
    original = json.loads((BUNDLED / "Pong" / MANIFEST_FILE).read_text())
    (pong / MANIFEST_FILE).write_bytes(_plant(original, where, token))
    _refused(lambda: verify_folder(pong, "Pong"), MANIFEST_FILE)


@HYPOTHESIS
@_with_examples
@given(where=_places(json.loads((BUNDLED / "Pong" / "config.json").read_text())), token=hostile_tokens)
def test_hostile_config_is_refused_naming_it(pong, where, token):
    original = json.loads((BUNDLED / "Pong" / "config.json").read_text())
    (pong / "config.json").write_bytes(_plant(original, where, token))
    write_manifest(pong, "Pong")
    _refused(lambda: make_detector("space", "Pong", "cpu", weights=pong), "config.json")


@HYPOTHESIS
@_with_examples
@given(where=_places(json.loads((BUNDLED / "Pong" / LABELS_FILE).read_text())), token=hostile_tokens)
def test_hostile_labels_are_refused_naming_them(pong, where, token):
    original = json.loads((BUNDLED / "Pong" / LABELS_FILE).read_text())
    (pong / LABELS_FILE).write_bytes(_plant(original, where, token))
    write_manifest(pong, "Pong")
    _refused(lambda: read_label_offsets(verify_folder(pong, "Pong"), get_game("Pong")), LABELS_FILE)


@HYPOTHESIS
@_with_examples
@given(where=_places(json.loads((BUNDLED / "Pong" / CLASSIFIER_JSON).read_text())), token=hostile_tokens)
def test_hostile_classifier_json_is_refused_naming_it(pong, where, token):
    original = json.loads((BUNDLED / "Pong" / CLASSIFIER_JSON).read_text())
    (pong / CLASSIFIER_JSON).write_bytes(_plant(original, where, token))
    write_manifest(pong, "Pong")
    _refused(lambda: load_classifier(pong, "Pong"), CLASSIFIER_JSON)


@HYPOTHESIS
@_with_examples
@given(where=_places(json.loads((BUNDLED / "Pong" / "agent" / "agent.json").read_text())), token=hostile_tokens)
def test_hostile_agent_json_is_refused_naming_it(tmp_path, where, token):
    agent = tmp_path / "agent"
    if not agent.exists():
        shutil.copytree(BUNDLED / "Pong" / "agent", agent)
    original = json.loads((BUNDLED / "Pong" / "agent" / "agent.json").read_text())
    (agent / "agent.json").write_bytes(_plant(original, where, token))
    write_manifest(agent, "Pong")
    _refused(lambda: load_folder(agent, "Pong"), "agent.json")


@HYPOTHESIS
@_with_examples
@given(where=_places({"ship": 0}), token=hostile_tokens)
def test_hostile_card_is_refused_and_the_table_still_lists_the_game(pong, where, token):
    original = json.loads((BUNDLED / "Pong" / "card.json").read_text())
    if where == "ship":  # the section the table reads its figures from
        original["ship"] = {**original["ship"], "f1_moving": HOSTILE}
        text = json.dumps(original).replace(json.dumps(HOSTILE), token).encode()
    else:
        text = _plant(original, where, token)
    (pong / "card.json").write_bytes(text)
    write_manifest(pong, "Pong")
    _refused(lambda: load_json_file(pong / "card.json", what="card"), "card.json")
    row = next(r for r in weights_table(weights=pong.parent) if r.game == "Pong")
    assert row.f1_moving is None and row.category_accuracy is None and row.status == "ok"


@HYPOTHESIS
@_with_examples
@given(where=_places({"__metadata__": 0, "centroids": 0}), token=hostile_tokens)
def test_hostile_safetensors_headers_are_refused_naming_the_file(tmp_path, where, token):
    folder = tmp_path / "root" / "Pong"
    if not folder.exists():
        shutil.copytree(BUNDLED / "Pong", folder, ignore=shutil.ignore_patterns("space", "agent"))
    blob = (BUNDLED / "Pong" / CLASSIFIER_FILE).read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + size])
    (folder / CLASSIFIER_FILE).write_bytes(_safetensors_with_header(blob, _plant(header, where, token)))
    write_manifest(folder, "Pong")
    _refused(lambda: load_classifier(folder, "Pong"), CLASSIFIER_FILE)
    # The checker every reader of a safetensors file calls first.
    _refused(lambda: safetensors_metadata((folder / CLASSIFIER_FILE).read_bytes(), folder / CLASSIFIER_FILE), CLASSIFIER_FILE)


def test_the_detector_and_policy_headers_are_read_strictly(pong, tmp_path):
    deep = b"[" * 50_000 + b"]" * 50_000
    blob = (pong / "detector.safetensors").read_bytes()
    (pong / "detector.safetensors").write_bytes(_safetensors_with_header(blob, deep))
    write_manifest(pong, "Pong")
    _refused(lambda: make_detector("space", "Pong", "cpu", weights=pong), "detector.safetensors")
    agent = Path(shutil.copytree(BUNDLED / "Pong" / "agent", tmp_path / "agent"))
    blob = (agent / "policy.safetensors").read_bytes()
    (agent / "policy.safetensors").write_bytes(_safetensors_with_header(blob, b'{"__metadata__": {"a": "b"}, "x": 1e400}'))
    write_manifest(agent, "Pong")
    _refused(lambda: load_folder(agent, "Pong"), "policy.safetensors")


def test_strict_json_messages_say_what_is_wrong():
    with pytest.raises(CorruptWeightsError, match=r"f\.json is not valid JSON: integer of 5000 digits"):
        parse_json(b'{"a": ' + b"1" * 5000 + b"}", "f.json")
    with pytest.raises(CorruptWeightsError, match=r"f\.json is not valid JSON: number 1e400 overflows a float"):
        parse_json(b"[1e400]", "f.json")
    with pytest.raises(CorruptWeightsError, match=r"NaN is not a number JSON allows"):
        parse_json(b'{"a": NaN}', "f.json")
    with pytest.raises(CorruptWeightsError, match=rf"nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_json(b"[" * 100_000, "f.json")
    with pytest.raises(CorruptWeightsError, match=rf"nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_json(b"[" * 200 + b"]" * 200, "f.json")
    with pytest.raises(CorruptWeightsError, match=r"f\.json is not valid JSON: 'utf-8' codec"):
        parse_json(b'"\xff"', "f.json")
    # What our writers produce still parses.
    assert parse_json(json.dumps({"a": [1.5, -2, 10**19, "x"], "b": {"c": None}}).encode(), "f.json") == {
        "a": [1.5, -2, 10**19, "x"],
        "b": {"c": None},
    }


# --- Regular files only --------------------------------------------------------------------


@needs_fifo
def test_readers_refuse_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    # O_NONBLOCK: refused at once, no writer needed (a blocking open would wait here forever).
    with pytest.raises(CorruptWeightsError, match=r"pipe\.json is a FIFO \(named pipe\), expected a regular file"):
        read_regular_file(fifo, max_bytes=10)
    with pytest.raises(CorruptWeightsError, match=r"is a directory, expected a regular file"):
        read_regular_file(tmp_path, max_bytes=10)
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(CorruptWeightsError, match=r"link\.json is a symlink \(to .*real\.json\), expected a regular file"):
        load_json_file(tmp_path / "link.json", what="card")
    if os.path.exists("/dev/null"):
        with pytest.raises(CorruptWeightsError, match=r"is a character device"):
            read_regular_file("/dev/null", max_bytes=10)
    (tmp_path / "big.json").write_bytes(b" " * 11)
    with pytest.raises(CorruptWeightsError, match=r"big\.json is larger than 10 bytes"):
        read_regular_file(tmp_path / "big.json", max_bytes=10)


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh process; a hang (a FIFO waited on) fails on the timeout."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@needs_fifo
def test_moc_envs_list_with_a_fifo_card_returns_and_says_so(pong):
    (pong / "card.json").unlink()
    os.mkfifo(pong / "card.json")
    done = _run("from moc_envs.cli import main; raise SystemExit(main(['list']))", {"MOC_ENVS_WEIGHTS": str(pong.parent)})
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("Pong "))
    assert "card.json is a FIFO (named pipe) inside the weights folder" in row, row
    # Not listed in the manifest either: the folder check still names it.
    manifest = json.loads((pong / MANIFEST_FILE).read_text())
    del manifest["files"]["card.json"]
    (pong / MANIFEST_FILE).write_text(json.dumps(manifest))
    done = _run("from moc_envs.cli import main; raise SystemExit(main(['list']))", {"MOC_ENVS_WEIGHTS": str(pong.parent)})
    assert done.returncode == 0 and "card.json is a FIFO (named pipe)" in done.stdout, done.stdout + done.stderr


def _error_of(code: str, folder: Path) -> str:
    """The CorruptWeightsError that ``code`` (run with ``folder`` as ``F``) raises, in a fresh process."""
    script = (
        "import os, sys\nfrom pathlib import Path\nfrom moc_envs.errors import CorruptWeightsError\n"
        f"F = Path(sys.argv[1])\ntry:\n    {code}\nexcept CorruptWeightsError as err:\n    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_fifo
def test_a_fifo_in_place_of_a_listed_file_is_named_not_called_missing(pong):
    (pong / LABELS_FILE).unlink()
    os.mkfifo(pong / LABELS_FILE)
    out = _error_of("from moc_envs.perception.detectors import make_detector; make_detector('space', 'Pong', 'cpu', weights=F)", pong)
    assert "labels.json is a FIFO (named pipe)" in out and "missing" not in out, out


@needs_fifo
def test_a_fifo_swapped_in_after_the_check_is_refused_at_read(pong):
    code = (
        "from moc_envs.weights.manifest import verify_folder; files = verify_folder(F, 'Pong'); "
        "(F / 'labels.json').unlink(); os.mkfifo(F / 'labels.json'); files.read_bytes('labels.json')"
    )
    out = _error_of(code, pong)
    assert "labels.json is a FIFO (named pipe), expected a regular file" in out, out


# --- Presence from the verified manifest ---------------------------------------------------


def _delete_after_check(monkeypatch, name: str) -> None:
    """Delete ``name`` from the folder right after its manifest checks out (the issue's race)."""
    import moc_envs.perception.space_detector

    real = moc_envs.perception.space_detector.verify_folder

    def verify_then_delete(folder, game=None):
        files = real(folder, game)
        (Path(folder) / name).unlink()
        return files

    monkeypatch.setattr(moc_envs.perception.space_detector, "verify_folder", verify_then_delete)


@pytest.mark.parametrize("allow_unclassified", [False, True])
def test_classifier_deleted_after_the_check_is_corruption(pong, monkeypatch, allow_unclassified):
    _delete_after_check(monkeypatch, CLASSIFIER_FILE)
    with pytest.raises(CorruptWeightsError, match=r"classifier\.safetensors is listed in manifest\.json but missing"):
        make_detector("space", "Pong", "cpu", weights=pong, allow_unclassified=allow_unclassified)


def test_labels_deleted_after_the_check_are_corruption(pong, monkeypatch):
    _delete_after_check(monkeypatch, LABELS_FILE)
    with pytest.raises(CorruptWeightsError, match=r"labels\.json is listed in manifest\.json but missing"):
        make_detector("space", "Pong", "cpu", weights=pong)


def test_labels_present_but_unlisted_are_refused_not_ignored(pong):
    manifest = json.loads((pong / MANIFEST_FILE).read_text())
    del manifest["files"][LABELS_FILE]
    (pong / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptWeightsError, match=r"labels\.json is not listed in"):
        read_label_offsets(verify_folder(pong, "Pong"), get_game("Pong"))
    (pong / LABELS_FILE).unlink()  # really absent: the game's own offsets
    assert read_label_offsets(verify_folder(pong, "Pong"), get_game("Pong")) == {}


def test_labels_changed_after_the_check_are_refused(pong):
    files = verify_folder(pong, "Pong")
    data = json.loads((pong / LABELS_FILE).read_text())
    data["offsets"] = {k: v + 1 for k, v in data["offsets"].items()}
    (pong / LABELS_FILE).write_text(json.dumps(data))
    with pytest.raises(CorruptWeightsError, match=r"labels\.json does not match manifest\.json"):
        read_label_offsets(files, get_game("Pong"))


# --- Messages ------------------------------------------------------------------------------


def test_an_uppercase_digest_names_the_same_bytes(pong):
    manifest = json.loads((pong / MANIFEST_FILE).read_text())
    for entry in manifest["files"].values():
        entry["sha256"] = entry["sha256"].upper()
    (pong / MANIFEST_FILE).write_text(json.dumps(manifest))
    files = verify_folder(pong, "Pong")
    assert files.read_json(LABELS_FILE)["game"] == "Pong"
    assert make_detector("space", "Pong", "cpu", weights=pong).classifier is not None
    manifest["files"][LABELS_FILE]["sha256"] = "g" * 64
    (pong / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CorruptWeightsError, match=r"entry 'labels\.json' must be a plain file name with a 64-hex 'sha256'"):
        verify_folder(pong, "Pong")


def test_torch_advice_to_unpickle_is_not_passed_on(tmp_path):
    import torch

    from trainers.detector.distill import _load_checkpoint
    from trainers.detector.train import load_checkpoint

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('code ran')",))

    path = tmp_path / "ckpt.pt"
    torch.save({"model": Payload()}, path)
    for load in (load_checkpoint, _load_checkpoint):
        with pytest.raises(CorruptWeightsError) as err:
            load(path)
        message = str(err.value)
        assert "weights_only" not in message and "False" not in message and "trusted source" not in message, message
        assert "exec" in message or "builtins" in message, message  # the reason is kept
    assert not marker.exists()
    old_torch = (
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
        "succeed, but it can result in arbitrary code execution. Do it only if you got the file from a "
        "trusted source.\n Please file an issue with the following so that we can make `weights_only=True` "
        "compatible with your use case: WeightsUnpickler error: Unsupported operand 149"
    )
    assert torch_load_error_text(RuntimeError(old_torch)) == "Weights only load failed. WeightsUnpickler error: Unsupported operand 149"


def test_relative_weights_resolve_once_against_the_working_directory(tmp_path, monkeypatch):
    pong = Path(shutil.copytree(BUNDLED / "Pong", tmp_path / "root" / "Pong", ignore=shutil.ignore_patterns("space", "agent")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", "root")
    found, origin = find_weights("Pong")
    assert origin == "MOC_ENVS_WEIGHTS" and found.is_absolute() and found == pong.resolve()
    explicit = require_weights("Pong", weights="root")
    assert explicit.is_absolute() and explicit.resolve() == pong.resolve()
    assert require_weights("Pong", weights="root/Pong") == explicit
    monkeypatch.chdir(REPO)  # the path found stays valid after a change of directory
    assert verify_folder(explicit, "Pong").listed(CLASSIFIER_FILE)


def test_weights_argument_of_the_wrong_type_or_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=r"weights must be a path \(str or os\.PathLike\) .* or None, got int 5"):
        make_detector("space", "Pong", "cpu", weights=5)
    with pytest.raises(TypeError, match=r"got int 5"):
        make_detector("ram", "Pong", weights=5)
    with pytest.raises(TypeError, match=r"got int 5"):
        find_weights("Pong", 5)  # type: ignore[arg-type]
    for empty in ("", "  "):
        with pytest.raises(ValueError, match=r"weights=.* names no folder"):
            make_detector("space", "Pong", "cpu", weights=empty)
        with pytest.raises(ValueError, match=r"names no folder"):
            weights_table(weights=empty)
    with pytest.raises(MissingWeightsError, match="is not a folder"):
        require_weights("Pong", weights="nowhere")


def test_a_card_with_a_rate_over_no_samples_is_written_as_strict_json(tmp_path) -> None:
    """NaN (a recall over no ground truth) is written as null, so the strict reader accepts it."""
    from moc_envs.weights.safe_read import load_json_file
    from moc_envs.weights.search import weights_root
    from trainers.evaluate.card import write_card

    card = json.loads((weights_root() / "Pong" / "card.json").read_text())
    card["rate_over_no_samples"] = {"recall": float("nan"), "precision": 0.5}
    json_path, _ = write_card(card, tmp_path)
    assert "NaN" not in json_path.read_text()
    back = load_json_file(json_path, what="card")
    assert back["rate_over_no_samples"] == {"recall": None, "precision": 0.5}
