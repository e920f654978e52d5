"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

A reader (or a resumed job) never sees half a file: either the old content or the new.
A process killed during a write (``kill -9``) leaves its temporary behind, named
``.<name>.tmp<pid>`` (or ``.<name>.tmp<pid>-<random>`` when that name was taken);
:func:`remove_stale_temporaries` deletes those whose process is gone.

Writes are safe in a folder that other users can write to (``/tmp``): the temporary is created
exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``), so a symlink or file planted under its name is
never written through, and a target that is a symlink is refused instead of replaced. Written
files get the mode a plain ``open(path, "w")`` gives (``0o666`` less the umask), also when the
library that fills the temporary (safetensors) creates its files private.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from moc_envs.errors import UnsafePathError

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "temporary_path",
    "temporary_owner",
    "pid_alive",
    "remove_stale_temporaries",
    "refuse_symlink",
]

# ".<target name>.tmp<pid>[-<random>]": the pid says whose write it was, so leftovers can be
# judged; the random tail only appears when the plain name was taken (planted, or a second
# write of the same target in this process).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>[0-9]+)(?:-[0-9a-f]{8,})?$")

# O_EXCL already refuses any existing name, a symlink included; O_NOFOLLOW says so twice, for
# file systems that honour one and not the other. O_CLOEXEC: a forked worker keeps no copy.
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_CHECK_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def temporary_path(path: str | Path, pid: int | None = None) -> Path:
    """The temporary path that :func:`atomic_path` tries first for ``path`` in process ``pid``."""
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


def refuse_symlink(path: str | Path, what: str = "write") -> None:
    """Raise :class:`~moc_envs.errors.UnsafePathError` when ``path`` is a symlink.

    Writing through a link planted where a file of ours belongs would overwrite its target
    (whatever file the planter chose); a missing path or a regular file passes.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UnsafePathError(
            f"refusing to {what} {path}: it is a symlink (to {os.readlink(path)}), expected a "
            "regular file or no file; remove the link or choose another path"
        )


def _create_temporary(path: Path) -> tuple[Path, int]:
    """Create the temporary of ``path`` exclusively; return it and the mode the umask gives."""
    candidates = [temporary_path(path)]
    candidates += [
        path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}") for _ in range(8)
    ]
    for tmp in candidates:
        try:
            # 0o666 as open() uses: the kernel takes the umask off, as for any new file.
            fd = os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            # Planted (a symlink, someone's file) or a second write of the same target in this
            # process: never reuse it, take a fresh name.
            continue
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        return tmp, mode
    raise UnsafePathError(
        f"cannot create a temporary file beside {path}: every name tried ({candidates[0].name} "
        "and random variants) already exists"
    )


def _seal(tmp: Path, mode: int) -> None:
    """Check that ``tmp`` is still a regular file and give it ``mode``, without following links."""
    try:
        fd = os.open(tmp, _CHECK_FLAGS)
    except OSError as e:  # ELOOP: replaced by a symlink while the block wrote
        raise UnsafePathError(
            f"the temporary file {tmp} was replaced while it was written: {e}"
        ) from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"the temporary file {tmp} is no longer a regular file")
        if stat.S_IMODE(st.st_mode) != mode and hasattr(os, "fchmod"):
            # Some writers (safetensors) create their files 0600, whatever the umask.
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; move it over ``path`` if the block succeeds.

    The temporary is already created, empty, as a regular file of this process (exclusively, so
    nothing planted under its name is followed); the block overwrites it by name, with any
    writer (``open``, ``torch.save``, ``safetensors``, ``np.save``). The moved file gets the
    mode a plain ``open(path, "w")`` would give it under the current umask. Raises
    :class:`~moc_envs.errors.UnsafePathError` when ``path`` is a symlink. The temporary name
    keeps no extension of its own, so writers that infer a format from the suffix (matplotlib)
    must be told the format explicitly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_symlink(path)
    tmp, mode = _create_temporary(path)
    try:
        yield tmp
        _seal(tmp, mode)
        refuse_symlink(path)  # planted while the block wrote: still not ours to replace
        os.replace(tmp, path)  # replaces the name itself; never writes through a link
    finally:
        # Only left behind when the block (or a check) raised: don't leave stray temporaries.
        # unlink removes the name, whatever it is now, and never follows a link.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
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
