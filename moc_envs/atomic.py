"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

A reader (or a resumed job) never sees half a file: either the old content or the new.
A process killed during a write (``kill -9``) leaves its temporary behind, named
``.<name>.tmp<pid>``; :func:`remove_stale_temporaries` deletes those whose process is gone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "temporary_path",
    "temporary_owner",
    "pid_alive",
    "remove_stale_temporaries",
]

# ".<target name>.tmp<pid>": the pid says whose write it was, so leftovers can be judged.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>[0-9]+)$")


def temporary_path(path: str | Path, pid: int | None = None) -> Path:
    """The temporary path that :func:`atomic_path` uses for ``path`` in process ``pid`` (ours)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid() if pid is None else pid}")


def temporary_owner(path: str | Path) -> tuple[str, int] | None:
    """``(target name, pid)`` of an :func:`atomic_path` temporary; None for any other name."""
    m = _TEMPORARY.match(Path(path).name)
    return (m["name"], int(m["pid"])) if m else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine.

    Errs on the side of "alive" wherever it cannot tell (another user's process, a platform
    without POSIX signals, where ``os.kill(pid, 0)`` would not be a harmless probe), so that
    callers that delete a dead process's files never delete a live one's.
    """
    if pid <= 0:
        return False  # not a process id (0 and negatives address process groups)
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it over ``path`` if the block succeeds.

    The temporary name keeps no extension of its own, so writers that infer a format from the
    suffix (matplotlib) must be told the format explicitly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        # Only left behind when the block raised: don't leave stray temporaries.
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def remove_stale_temporaries(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the :func:`atomic_path` temporaries in ``folder`` whose writer is no longer alive.

    ``names`` restricts the cleanup to temporaries of those target file names (e.g.
    ``["checkpoint.pt"]``); by default every temporary in the folder is considered. A
    temporary of a live process (or of our own) is kept: its write may still be under way.
    Returns the deleted paths. The folder's subfolders are not searched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else set(names)
    removed: list[Path] = []
    for entry in sorted(folder.iterdir()):
        owner = temporary_owner(entry)
        if owner is None or (wanted is not None and owner[0] not in wanted):
            continue
        _, pid = owner
        if pid == os.getpid() or pid_alive(pid) or not entry.is_file() or entry.is_symlink():
            continue
        try:
            entry.unlink()
        except FileNotFoundError:  # another cleaner got there first
            continue
        removed.append(entry)
    return removed
