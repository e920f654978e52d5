"""Atomic writes leave either the old file or the new one; stale temporaries of dead writers go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from moc_envs.weights.atomic import (
    atomic_path,
    atomic_write_text,
    pid_alive,
    remove_stale_temporaries,
    temporary_owner,
    temporary_path,
)


def test_atomic_write_text_replaces_content_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_old_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]




def test_temporary_names_record_the_writer(tmp_path: Path) -> None:
    tmp = temporary_path(tmp_path / "checkpoint.pt", pid=4321)
    assert tmp.name == ".checkpoint.pt.tmp4321"
    assert temporary_owner(tmp) == ("checkpoint.pt", 4321)
    assert temporary_path(tmp_path / "a.txt") == tmp_path / f".a.txt.tmp{os.getpid()}"
    for other in ("checkpoint.pt", ".checkpoint.pt.tmp", ".a.txt.tmpx1", "a.txt.tmp12"):
        assert temporary_owner(tmp_path / other) is None, other


def test_pid_alive(live_pid: int, dead_pid: int) -> None:
    assert pid_alive(os.getpid()) and pid_alive(live_pid)
    assert not pid_alive(dead_pid)
    assert not pid_alive(0) and not pid_alive(-1)


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(
    tmp_path: Path, live_pid: int, dead_pid: int
) -> None:
    dead = temporary_path(tmp_path / "checkpoint.pt", dead_pid)
    live = temporary_path(tmp_path / "checkpoint.pt", live_pid)
    ours = temporary_path(tmp_path / "checkpoint.pt")
    other_target = temporary_path(tmp_path / "notes.txt", dead_pid)
    unrelated = tmp_path / ".checkpoint.pt.tmp"
    for path in (dead, live, ours, other_target, unrelated):
        path.write_text("half")
    removed = remove_stale_temporaries(tmp_path, names=["checkpoint.pt"])
    assert removed == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, ours, other_target, unrelated)
    )
    assert remove_stale_temporaries(tmp_path) == [other_target]  # every target name by default
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_a_killed_write_leaves_a_temporary_that_the_cleanup_removes(tmp_path: Path) -> None:
    """kill -9 during an atomic write: the target keeps its old content, the temporary goes."""
    target = tmp_path / "eval.json"
    target.write_text("old")
    code = (
        "import sys, time\n"
        "from moc_envs.weights.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    left = temporary_path(target, proc.pid)
    assert left.is_file()
    assert remove_stale_temporaries(tmp_path) == []  # still being written: kept
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert target.read_text() == "old" and left.is_file()
    assert remove_stale_temporaries(tmp_path) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]
