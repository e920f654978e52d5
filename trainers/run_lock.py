"""One training run per output folder: a lock file that the kernel releases when its owner dies.

``<out>/train.lock`` is held with ``fcntl.flock`` for the whole run and records who holds it
(pid, host, start time, command line), so a second run into the same folder refuses at once
with a message naming the first. The kernel drops a flock when its process exits for any
reason, ``kill -9`` included, so there is no check-then-write race and no guessing from pids:

* the lock is free and the file is empty or absent: a clean start;
* the lock is free but the file still names a process of this host: that run died without
  releasing it (killed); the lock is taken over with a warning;
* the lock is free but the file names a process of another host: whether that run still goes
  cannot be checked from here (a network file system may not carry flocks between hosts), so
  the run refuses and says which file to delete once that run is known to have ended;
* the lock is held: the run refuses, naming the holder's pid, host and the lock file.

A released lock's file is deleted. On platforms without ``fcntl`` the file's existence is
the lock (``O_CREAT | O_EXCL``); a stale one is then never taken over automatically.

The lock file is opened without following a symlink and must be a regular file with one link:
a symlink or hard link planted as ``train.lock`` in a folder that others can write to
(``/tmp``) would otherwise have its target truncated and overwritten with our record.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from moc_envs.errors import MocEnvsError, UnsafePathError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLockedError", "RunLockWarning", "RunLock", "read_lock_record"]

LOCK_FILE = "train.lock"

# A lock record is one short JSON line; anything longer is not ours.
_MAX_RECORD = 1 << 16
# O_NOFOLLOW: a planted symlink is refused (ELOOP), not followed; O_NONBLOCK: a planted FIFO
# does not block the open, so fstat can refuse it.
_NO_FOLLOW = (
    getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
)


class RunLockedError(MocEnvsError, RuntimeError):
    """Another training run holds (or may hold) the output folder's lock."""


class RunLockWarning(UserWarning):
    """A lock left behind by a run that died was taken over."""


def _parse_record(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data.decode() or "{}")
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def _read_fd(fd: int) -> dict[str, Any]:
    try:
        return _parse_record(os.pread(fd, _MAX_RECORD, 0))
    except OSError:
        return {}


def read_lock_record(path: str | Path) -> dict[str, Any]:
    """The holder record in a lock file; empty when the file is absent, empty or unreadable.

    Only a regular file is read (a symlink or named pipe in its place reads as empty).
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NO_FOLLOW)
    except OSError:
        return {}
    try:
        return _read_fd(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else {}
    finally:
        os.close(fd)


def _describe(record: dict[str, Any]) -> str:
    if not record:
        return "a run that has not written its details yet"
    parts = [f"pid {record.get('pid', '?')} on host {record.get('host', '?')}"]
    if record.get("started"):
        parts.append(f"started {record['started']}")
    if record.get("argv"):
        parts.append(f"command: {' '.join(map(str, record['argv']))}")
    return ", ".join(parts)


class RunLock:
    """Exclusive lock of a training output folder; a context manager.

    ``RunLock(out).acquire()`` raises :class:`RunLockedError` when another run holds the
    folder; :meth:`release` (or leaving the ``with`` block, also on errors and Ctrl-C) lets
    it go. ``taken_over`` holds the record of a dead run whose lock was taken over.
    """

    def __init__(self, folder: str | Path) -> None:
        """Prepare the lock of ``folder`` (``<folder>/train.lock``); nothing is locked yet."""
        self.path = Path(folder) / LOCK_FILE
        self.taken_over: dict[str, Any] | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def _record(self) -> bytes:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "argv": [sys.executable, *sys.argv],
        }
        return (json.dumps(record) + "\n").encode()

    def _refuse(self, record: dict[str, Any]) -> RunLockedError:
        return RunLockedError(
            f"another training run is using {self.path.parent}: {_describe(record)} holds the "
            f"lock file {self.path}. Wait for it to finish, or choose another --out"
        )

    def _unsafe(self, what: str) -> UnsafePathError:
        return UnsafePathError(
            f"refusing to use the lock file {self.path}: it is {what}, expected a regular file "
            "that only this folder's runs create. Remove it (someone may have planted it to have "
            "another file overwritten) or choose another --out"
        )

    def _open(self, flags: int) -> int:
        """Open the lock file without following a link; refuse anything but a plain file."""
        try:
            # 0o666 like open(): the umask decides who else may read it.
            fd = os.open(self.path, flags | _NO_FOLLOW, 0o666)
        except OSError as e:
            if os.path.islink(self.path):
                raise self._unsafe(f"a symlink (to {os.readlink(self.path)})") from None
            raise e
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "not a regular file"
        elif st.st_nlink != 1:
            problem = f"a file with {st.st_nlink} hard links"
        if problem is not None:
            os.close(fd)
            raise self._unsafe(problem)
        return fd

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError`; returns ``self``.

        Raises :class:`~moc_envs.errors.UnsafePathError` when ``train.lock`` is a symlink, a
        hard link or not a regular file.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self._acquire_exclusive()
        while True:
            fd = self._open(os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _read_fd(fd)
                os.close(fd)
                raise self._refuse(record) from None
            # The previous holder may have deleted the file between our open and our flock:
            # then we hold a lock on a file nobody else will open, so try again on the new one.
            try:
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            self._check_leftover(_read_fd(fd))
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._record(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _check_leftover(self, record: dict[str, Any]) -> None:
        """Judge the record of a lock that is free but was not released cleanly."""
        if not record:
            return
        if record.get("host") != socket.gethostname():
            raise RunLockedError(
                f"{self.path} names {_describe(record)}; its lock is free here, but this host "
                f"({socket.gethostname()}) cannot tell whether that run is still going. If it has "
                f"ended, delete {self.path} and start again; otherwise choose another --out"
            )
        # Same host and the kernel let us lock: its owner exited without releasing (killed).
        self.taken_over = record
        # Located at a pseudo-file rather than a line of code: Python's default display then
        # prints the message alone, not a source line of ours (or of the trainer's ``with``).
        warnings.warn_explicit(
            f"took over the lock {self.path} left by {_describe(record)}, which is no longer "
            "running (it was killed or crashed before releasing it)",
            RunLockWarning,
            filename="<run lock>",
            lineno=0,
            module=__name__,
        )

    def _acquire_exclusive(self) -> RunLock:
        """Fallback without flock: the file's existence is the lock."""
        try:
            fd = self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)  # EXCL: a link is never followed
        except FileExistsError:
            record = read_lock_record(self.path)
            raise RunLockedError(
                f"{self.path} names {_describe(record)}. Wait for that run to finish; if it has "
                f"ended without releasing the lock, delete {self.path} and start again"
            ) from None
        os.write(fd, self._record())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go and delete its file; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Delete while still locked: a waiter that opened the old file notices (inode check).
            if os.lstat(self.path).st_ino == os.fstat(fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
