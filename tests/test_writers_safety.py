"""Writers never write through a planted link, and give files the mode a plain open() gives.

A folder that other users can write to (``/tmp``) lets them plant a symlink where we are about to
write: as the target itself, as the temporary of an atomic write (``.<name>.tmp<pid>``), or as
``train.lock``. Each plant must leave the link's target untouched. Every written file must get
``0o666 & ~umask`` like ``open(path, "w")``, also those written by safetensors (which creates
its files 0600).
"""

from __future__ import annotations

import ast
import json
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from moc_envs.errors import CorruptWeightsError, UnsafePathError
from moc_envs.weights.atomic import atomic_path, atomic_write_text, temporary_owner, temporary_path
from trainers.run_lock import LOCK_FILE, RunLock, RunLockWarning

ROOT = Path(__file__).resolve().parents[1]
VICTIM_TEXT = "someone else's file\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the output folder that a planted link points at."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    return path


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for the test; restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _plain_mode(folder: Path) -> int:
    """The mode that a plain open(..., "w") gives a new file under the current umask."""
    probe = folder / "plain-open-probe"
    with open(probe, "w"):
        pass
    mode = _mode(probe)
    probe.unlink()
    return mode


# ---------------------------------------------------------------- every writer, by kind
def _tiny_classifier():
    from trainers.classify.classifier import fit_classifier

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 8))
    lab = rng.integers(0, 3, 120)
    z = centres[lab] + rng.normal(0, 0.5, (120, 8))
    return fit_classifier(z, np.array(["Ball", "Enemy", "Player"], dtype=object)[lab], 4)


def _write_detector(folder: Path) -> None:
    from trainers.evaluate.export import write_detector_folder

    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    write_detector_folder(folder, "Pong", state, {"format": "moc_envs.space_detector/1", "game": "Pong"})


def _write_classifier(folder: Path) -> None:
    from moc_envs.perception.classifier import save_classifier

    folder.mkdir(parents=True, exist_ok=True)
    save_classifier(_tiny_classifier(), folder, "Pong")


def _write_checkpoint(folder: Path) -> None:
    from trainers.detector.train import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "checkpoint.pt", {"step": 3, "model": {"w": torch.ones(2)}})


def _write_card(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.evaluate.card

    # The card's content is not the point here: only how write_card writes it.
    monkeypatch.setattr(trainers.evaluate.card, "card_markdown", lambda card: "# card\n")
    folder.mkdir(parents=True, exist_ok=True)
    trainers.evaluate.card.write_card({"game": "Pong"}, folder)


def _write_json_and_npz(folder: Path) -> None:
    from trainers.data.storage import save_npz_atomic, write_json_atomic

    write_json_atomic(folder / "meta.json", {"a": 1})
    save_npz_atomic(folder / "train.npz", frames=np.zeros((2, 3), np.uint8))


WRITERS = {
    "detector export (safetensors, torch)": (_write_detector, "detector.safetensors"),
    "detector export (config)": (_write_detector, "config.json"),
    "classifier (safetensors, numpy)": (_write_classifier, "classifier.safetensors"),
    "classifier (json)": (_write_classifier, "classifier.json"),
    "checkpoint (torch.save)": (_write_checkpoint, "checkpoint.pt"),
    "card": (_write_card, "card.md"),
    "dataset meta (json)": (_write_json_and_npz, "meta.json"),
    "dataset split (npz)": (_write_json_and_npz, "train.npz"),
}


def _run(writer: Callable[..., None], folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if writer is _write_card:
        writer(folder, monkeypatch)
    else:
        writer(folder)


@pytest.mark.parametrize("case", list(WRITERS))
def test_a_planted_temporary_symlink_is_never_written_through(
    case: str, tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, name = WRITERS[case]
    out = tmp_path / "out"
    out.mkdir()
    plant = temporary_path(out / name)  # the name this process's write would take first
    plant.symlink_to(victim)
    try:
        _run(writer, out, monkeypatch)
    except CorruptWeightsError as e:
        # A weights folder's manifest refuses any symlink in the folder, the plant included,
        # after the file itself was written beside it.
        assert plant.name in str(e) and "is a symlink" in str(e)
    assert victim.read_text() == VICTIM_TEXT
    assert (out / name).is_file() and not (out / name).is_symlink()
    assert plant.is_symlink()  # not ours: left as it was, never followed or deleted
    # No temporary of ours is left behind (a fresh name was used instead of the plant).
    ours = [p for p in out.iterdir() if temporary_owner(p) is not None and p != plant]
    assert ours == []


@pytest.mark.parametrize("case", list(WRITERS))
def test_a_target_that_is_a_symlink_is_refused(
    case: str, tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, name = WRITERS[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    with pytest.raises(UnsafePathError, match=rf"refusing to write .*{name}: it is a symlink"):
        _run(writer, out, monkeypatch)
    assert victim.read_text() == VICTIM_TEXT
    assert (out / name).is_symlink()
    assert [p for p in out.iterdir() if temporary_owner(p) is not None] == []


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
@pytest.mark.parametrize("case", list(WRITERS))
def test_written_files_get_the_mode_of_a_plain_open(
    case: str, mask: int, tmp_path: Path, umask: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, name = WRITERS[case]
    out = tmp_path / "out"
    out.mkdir()
    umask(mask)
    _run(writer, out, monkeypatch)
    assert _plain_mode(out) == 0o666 & ~mask
    assert oct(_mode(out / name)) == oct(0o666 & ~mask), case


def test_safetensors_alone_writes_private_files(tmp_path: Path, umask: Callable[[int], None]) -> None:
    """Why the modes above need fixing: safetensors creates its files 0600 whatever the umask."""
    from safetensors.numpy import save_file

    umask(0o022)
    save_file({"a": np.zeros(2)}, str(tmp_path / "direct.safetensors"))
    if _mode(tmp_path / "direct.safetensors") == 0o644:
        pytest.skip("this safetensors version honours the umask itself")
    with atomic_path(tmp_path / "atomic.safetensors") as tmp:
        save_file({"a": np.zeros(2)}, str(tmp))
    assert _mode(tmp_path / "atomic.safetensors") == 0o644


# ---------------------------------------------------------------- atomic_path itself
def test_atomic_write_never_truncates_a_planted_temporary_file(tmp_path: Path) -> None:
    """A regular file already under our temporary name (a dead writer's, or planted) is kept."""
    target = tmp_path / "eval.json"
    planted = temporary_path(target)
    planted.write_text("not ours to overwrite")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert planted.read_text() == "not ours to overwrite"


def test_a_symlink_swapped_in_for_the_temporary_during_the_write_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    target = tmp_path / "a.txt"
    with pytest.raises(UnsafePathError, match="was replaced while it was written"):
        with atomic_path(target) as tmp:
            tmp.unlink()
            tmp.symlink_to(victim)
    assert victim.read_text() == VICTIM_TEXT and not target.exists()


def test_a_dangling_symlink_target_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.symlink_to(tmp_path / "would-be-created.txt")
    with pytest.raises(UnsafePathError, match="is a symlink"):
        atomic_write_text(target, "x")
    assert not (tmp_path / "would-be-created.txt").exists()


def test_two_writes_of_one_target_in_one_process_do_not_share_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        assert temporary_owner(second) == ("a.txt", os.getpid())
        first.write_text("one")
        second.write_text("two")
    assert target.read_text() == "one"  # the outer block finished last


# ---------------------------------------------------------------- the run lock
def test_a_planted_lock_symlink_is_refused_and_its_target_kept(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(victim)
    with pytest.raises(UnsafePathError, match=r"train\.lock: it is a symlink"):
        RunLock(out).acquire()
    assert victim.read_text() == VICTIM_TEXT
    (out / LOCK_FILE).unlink()
    (out / LOCK_FILE).symlink_to(tmp_path / "missing")  # dangling: would create the target
    with pytest.raises(UnsafePathError, match="symlink"):
        RunLock(out).acquire()
    assert not (tmp_path / "missing").exists()


def test_a_planted_lock_hard_link_or_fifo_is_refused(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    os.link(victim, out / LOCK_FILE)
    with pytest.raises(UnsafePathError, match="2 hard links"):
        RunLock(out).acquire()
    assert victim.read_text() == VICTIM_TEXT
    (out / LOCK_FILE).unlink()
    os.mkfifo(out / LOCK_FILE)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        RunLock(out).acquire()


def test_lock_file_mode_honours_the_umask(tmp_path: Path, umask: Callable[[int], None]) -> None:
    umask(0o002)
    with RunLock(tmp_path):
        assert _mode(tmp_path / LOCK_FILE) == 0o664


def test_the_take_over_warning_prints_no_source_line(tmp_path: Path, dead_pid: int) -> None:
    import socket

    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname()}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunLock(tmp_path):
            pass
    (w,) = [w for w in caught if issubclass(w.category, RunLockWarning)]
    shown = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
    assert shown.count("\n") == 1, shown  # the message line alone, no line of code under it
    assert f"left by pid {dead_pid}" in shown


def test_rllib_example_takes_the_run_lock(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from examples import rllib_ppo
    from trainers.run_lock import RunLockedError

    out = tmp_path / "run"
    args = rllib_ppo._parse(["--game", "Pong", "--detector", "ram", "--out", str(out)])
    with RunLock(out), pytest.raises(RunLockedError, match=rf"pid {os.getpid()} .*another --out"):
        rllib_ppo.train(args)


# ---------------------------------------------------------------- no writer bypasses atomic_path
_WRITE_CALLS = {"write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed",
                "save_file", "touch", "copy", "copy2", "copyfile", "copytree"}  # fmt: skip
_METHODS = {"write_text", "write_bytes", "touch"}  # Path methods: the receiver is the path
# Writers may fill the temporary that atomic_path yields (``tmp``), or a file object opened on it
# (``f``); the modules that implement the safe opening themselves are exempt.
_EXEMPT = {"moc_envs/weights/atomic.py", "trainers/run_lock.py"}


def _arg_names(node: ast.Call) -> set[str]:
    """The plain names among a call's positional arguments (``str(tmp)`` counts as ``tmp``)."""
    names = set()
    for arg in node.args:
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and arg.func.id == "str" and arg.args:
            arg = arg.args[0]
        if isinstance(arg, ast.Name):
            names.add(arg.id)
    return names


def _unsafe_writes(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open" and len(node.args) >= 2:
            mode = node.args[1]
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                if not isinstance(node.args[0], ast.Name) or node.args[0].id != "tmp":
                    lines.append(node.lineno)
        elif isinstance(func, ast.Name) and func.id in _WRITE_CALLS - _METHODS:  # save_file(...)
            if node.args and not _arg_names(node) & {"tmp", "f"}:
                lines.append(node.lineno)
        elif isinstance(func, ast.Attribute) and func.attr in _WRITE_CALLS:
            if isinstance(func.value, ast.Name) and func.value.id == "copy":
                continue  # the copy module copies objects in memory (copy.copy), not files
            if func.attr in _METHODS:
                receiver = func.value.id if isinstance(func.value, ast.Name) else None
                if receiver != "tmp":
                    lines.append(node.lineno)
            elif node.args and not _arg_names(node) & {"tmp", "f"}:
                lines.append(node.lineno)
    return lines


def test_every_writer_of_a_user_path_goes_through_atomic_path() -> None:
    found = []
    for folder in ("moc_envs", "trainers", "benchmarks", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in _EXEMPT:
                continue
            found += [f"{rel}:{line}" for line in _unsafe_writes(path.read_text())]
    assert found == [], "write these through moc_envs.weights.atomic.atomic_path: " + ", ".join(found)


def test_the_source_scan_finds_direct_writes() -> None:
    bad = "Path(p).write_text('x')\nopen(p, 'w')\ntorch.save(x, p)\nsave_file(s, str(out))\n"
    good = "tmp.write_text('x')\nopen(tmp, 'wb')\ntorch.save(x, tmp)\nsave_file(s, str(tmp))\n"
    assert _unsafe_writes(bad) == [1, 2, 3, 4]
    assert _unsafe_writes(good) == []
