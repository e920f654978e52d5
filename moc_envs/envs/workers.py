"""Worker processes of :class:`~moc_envs.envs.parallel.MocParallelVectorEnv`: start, protocol, serve.

A worker is a fresh interpreter started with ``-P`` (``-I`` on Python 3.10) and a few lines of
``-c`` code (:data:`BOOT`) that set its ``sys.path`` to the parent's absolute entries, so the
working directory is never searched, and that refuse to go on unless ``moc_envs`` would come
from the parent's own ``__init__.py`` (checked before it runs, and again after). It ignores
SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent decides) and exits when
the parent's end of the socket pair closes.

Protocol: every command is ``(seq, cmd, payload)``, encoded (:func:`pack_command`) before any
is sent, and every reply ``(seq, status, value, traceback)`` echoes its command's ``seq``;
:meth:`Worker.receive` drops replies to earlier commands (those a call that raised never
collected) and never returns one. Waiting for a reply is bounded (``timeout``) and safe to
interrupt; a message cut in the middle (an interrupt, a worker stopped mid-reply for longer
than the socket timeout, an exit) leaves the stream untrustworthy, so the worker is marked
lost and every later command raises :class:`~moc_envs.errors.WorkerError`. Errors come back as
text, never as exception objects.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

import moc_envs
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.errors import WorkerError

__all__ = [
    "BOOT",
    "CLOSE_TIMEOUT_S",
    "START_SEQ",
    "Worker",
    "describe_error",
    "pack_command",
    "process_state",
    "run_command",
    "serve",
    "worker_sys_path",
]

CLOSE_TIMEOUT_S = 30.0
"""How long close() waits for a worker's goodbye (at most) before it kills the worker."""

START_SEQ = 1
"""Sequence number of the start command (the first a worker gets)."""

_PROC_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "waiting on I/O",
    "T": "stopped",
    "t": "stopped by a tracer",
    "Z": "zombie",
    "X": "dead",
    "I": "idle",
}

# The worker's first lines: only the builtin ``sys`` is imported before ``sys.path`` is set
# (to this process's absolute entries, then the worker's own startup entries, which -P/-I keep
# free of the working directory). ``moc_envs`` is located without running it, and must be
# the parent's own; otherwise the worker answers the start command with an error and exits.
BOOT = f"""\
import sys
fd, origin, *path = sys.argv[1:]
sys.path[:] = path + [p for p in sys.path if p and p not in path]
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
from importlib.util import find_spec
from multiprocessing.connection import Connection
spec = find_spec("moc_envs")
found = None if spec is None else spec.origin
if found is None or os.path.realpath(found) != os.path.realpath(origin):
    Connection(int(fd)).send(({START_SEQ}, "error", "ImportError: this worker would import "
        f"moc_envs from {{found!r}}, not {{origin!r}} as the parent process does; refused", ""))
    sys.exit(3)
from moc_envs.envs.workers import serve
serve(Connection(int(fd)), origin)
"""


def process_state(pid: int) -> str:
    """Process ``pid``'s state as ``"state T (stopped)"``, read from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return "state unknown (no /proc/<pid>/stat)"
    # The command name (field 2) is in parentheses and may hold spaces: the state follows
    # the last ')'.
    end = stat.rfind(b")")
    code = stat[end + 2 : end + 3].decode("ascii", errors="replace")
    return f"state {code} ({_PROC_STATES.get(code, 'unknown')})"


def pack_command(seq: int, cmd: str, payload: Any) -> bytes:
    """A command as bytes, encoded before anything is sent (a payload that cannot travel raises)."""
    try:
        return bytes(ForkingPickler.dumps((seq, cmd, payload)))
    except Exception as err:  # any pickling failure: a lambda, a lock, an open file, ...
        raise TypeError(
            f"the arguments of {cmd}() cannot be sent to a worker process: {describe_error(err)}"
        ) from err


def worker_sys_path() -> list[str]:
    """The worker's ``sys.path``: this process's absolute entries (never '' or a relative one,
    which would resolve against the worker's working directory), with the folder of this
    process's ``moc_envs`` first when those entries alone would not find that same package."""
    from importlib.machinery import PathFinder

    path = [p for p in sys.path if isinstance(p, str) and p and os.path.isabs(p)]
    origin = os.path.realpath(moc_envs.__file__)
    spec = PathFinder.find_spec("moc_envs", path)
    if spec is None or spec.origin is None or os.path.realpath(spec.origin) != origin:
        # This process found moc_envs through '' (a REPL in the source tree) or an import hook.
        path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(moc_envs.__file__))))
    return path


def _worker_command(fd: int) -> list[str]:
    """The command line of a worker talking over file descriptor ``fd``."""
    # -P (3.11+) keeps the working directory off sys.path; 3.10 has only -I (which also ignores
    # PYTHON* variables); either way the -c code sets sys.path before importing moc_envs.
    safe = "-P" if sys.version_info >= (3, 11) else "-I"
    return [sys.executable, safe, "-c", BOOT, str(fd), moc_envs.__file__, *worker_sys_path()]


def _worker_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The worker's path comes from its command line; a PYTHONPATH with relative entries would
    # otherwise be searched (for sitecustomize, at startup) in the working directory.
    env.pop("PYTHONPATH", None)
    return env


def serve(conn: Connection, origin: str) -> None:
    """Worker process: build a MocVectorEnv and answer the parent's commands until "close"."""
    try:
        seq, _, (game, num_envs, kwargs) = conn.recv()
        if os.path.realpath(moc_envs.__file__) != os.path.realpath(origin):
            raise ImportError(
                f"this worker imported moc_envs from {moc_envs.__file__!r}, not {origin!r}"
            )
        envs = MocVectorEnv(game, num_envs, **kwargs)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send((START_SEQ, "error", describe_error(err), traceback.format_exc()))
        except OSError:  # the parent is gone
            pass
        conn.close()
        return
    conn.send((seq, "ok", None, ""))
    while True:
        try:
            seq, cmd, payload = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        try:
            if cmd == "close":
                envs.close()
                conn.send((seq, "ok", None, ""))
                break
            reply = bytes(ForkingPickler.dumps((seq, "ok", run_command(envs, cmd, payload), "")))
        except BaseException as err:  # noqa: BLE001 - an unpicklable value lands here too
            reply = bytes(
                ForkingPickler.dumps((seq, "error", describe_error(err), traceback.format_exc()))
            )
        try:
            conn.send_bytes(reply)
        except OSError:  # the parent is gone
            break
    conn.close()


def run_command(envs: MocVectorEnv, cmd: str, payload: Any) -> Any:
    if cmd == "step":
        obs, rewards, terms, truncs, _ = envs.step(payload)
        return obs, rewards, terms, truncs, envs.env_infos, envs.detect_calls
    if cmd == "reset":
        seeds, options = payload
        obs, _ = envs.reset(seed=seeds, options=options)
        return obs, envs.env_infos, envs.detect_calls
    if cmd == "get_attr":
        rows, name = payload
        return envs.get_env_attr(name, rows)
    if cmd == "set_attr":
        rows, name, value = payload
        envs.set_env_attr(name, value, rows)
        return None
    if cmd == "call":
        rows, name, args, kwargs = payload
        return envs.call_env_method(name, rows, *args, **kwargs)
    if cmd == "is_wrapped":
        rows, wrapper_class = payload
        return envs.env_is_wrapped(wrapper_class, rows)
    raise ValueError(f"unknown worker command {cmd!r}")


def describe_error(err: BaseException) -> str:
    """The error as text for the parent (only strings cross back, never exception objects)."""
    return f"{type(err).__name__}: {err}"


def _set_socket_timeouts(sock: socket.socket, seconds: float) -> None:
    """Bound each read and write on ``sock`` (a worker stalled in the middle of a message)."""
    whole = int(min(seconds, 2**31 - 1))
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, value)
        except OSError:  # a platform without them: poll() still bounds the wait for a reply
            pass


class Worker:
    """One worker process (a fresh interpreter running ``BOOT``) and its end of a socket pair.

    Not multiprocessing.Process: its ``spawn`` start method re-imports the caller's main
    module in the child, which fails in any script without an ``if __name__ == "__main__"``
    guard; a fresh interpreter running this module imports only moc_envs.

    Every command gets the next sequence number (:attr:`seq`); :meth:`receive` drops replies
    to earlier commands. :attr:`lost` says why the worker can no longer be used (it exited, or
    its connection broke mid-message); every later command then raises WorkerError.
    """

    def __init__(self, index: int, rows: range, timeout: float) -> None:
        self.index, self.rows, self.timeout = index, rows, timeout
        self.seq = 0
        self.lost: str | None = None
        ours, theirs = socket.socketpair()
        _set_socket_timeouts(ours, timeout)
        try:
            self.process = subprocess.Popen(
                _worker_command(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_worker_environment(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self.process.pid
        self.conn = Connection(ours.detach())

    @property
    def name(self) -> str:
        """How errors name this worker."""
        return f"worker process {self.index} (envs {self.rows.start}..{self.rows.stop - 1})"

    def check(self) -> None:
        """Raise WorkerError if this worker can no longer be used."""
        if self.lost is not None:
            raise WorkerError(f"{self.lost}; close this env and make a new one")

    def pack(self, cmd: str, payload: Any) -> bytes:
        """The next command, encoded (nothing is sent)."""
        return pack_command(self.seq + 1, cmd, payload)

    def send(self, blob: bytes) -> int:
        """Send a command made by :meth:`pack`; returns its sequence number."""
        self.check()
        try:
            self.conn.send_bytes(blob)
        except BaseException as err:
            # Part of the command may have been written: the worker's stream cannot be trusted.
            if isinstance(err, OSError):
                self.lost = f"{self.name} exited unexpectedly ({self._status()})"
                raise WorkerError(self.lost) from err
            self.lost = f"{self.name}: sending it a command was interrupted by {type(err).__name__}"
            raise
        self.seq += 1
        return self.seq

    def receive(self, seq: int, cmd: str, timeout: float) -> Any:
        """The reply to command ``seq`` (earlier ones are dropped); an error as WorkerError."""
        self.check()
        deadline = time.monotonic() + timeout
        while True:
            # Waiting is safe to interrupt (nothing is read); reading a message is not.
            if not self.conn.poll(max(deadline - time.monotonic(), 0.0)):
                raise WorkerError(
                    f"{self.name}, pid {self.pid}, {process_state(self.pid)}, "
                    f"did not answer {cmd}() within {timeout:g} s (worker_timeout); "
                    "a later reply to it is dropped"
                )
            try:
                reply = self.conn.recv()
                got, status, value, tb = reply
            except BaseException as err:
                if isinstance(err, BlockingIOError):
                    self.lost = (
                        f"{self.name}, pid {self.pid}, {process_state(self.pid)}, stopped in the "
                        f"middle of its reply to {cmd}() for {self.timeout:g} s (worker_timeout)"
                    )
                    raise WorkerError(self.lost) from err
                if isinstance(err, EOFError | OSError):
                    self.lost = f"{self.name} exited unexpectedly ({self._status()})"
                    raise WorkerError(self.lost) from err
                if isinstance(err, Exception):
                    self.lost = f"{self.name} sent a reply that is not one: {describe_error(err)}"
                    raise WorkerError(self.lost) from err
                self.lost = (
                    f"{self.name}: reading its reply was interrupted by {type(err).__name__}"
                )
                raise
            if not isinstance(got, int) or got > seq:
                self.lost = f"{self.name} answered command {got!r} while {seq} was the latest sent"
                raise WorkerError(self.lost)
            if got == seq:
                break
            # A reply to a command whose call raised before collecting it: stale, dropped.
        if status == "error":
            raise WorkerError(f"{self.name} failed with {value}\n{tb.rstrip()}")
        return value

    def _status(self) -> str:
        state = process_state(self.pid)
        try:
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return f"pid {self.pid}, {state}"
        return f"exit code {code}, pid {self.pid}"

    def kill(self) -> None:
        """SIGKILL the worker (which works on a stopped process too)."""
        if self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        """Ask the worker to close its envs and exit; kill it if it does not (bounded waits)."""
        stuck = process_state(self.pid).startswith(("state T", "state t"))
        if self.process.poll() is None and self.lost is None and not stuck:
            try:
                seq = self.send(self.pack("close", None))
                self.receive(seq, "close", min(self.timeout, CLOSE_TIMEOUT_S))
                self.process.wait(timeout=CLOSE_TIMEOUT_S)  # it closed its envs: exiting now
            except (WorkerError, OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self.process.wait()
        self.lost = self.lost or f"{self.name} was closed"
        self.conn.close()
