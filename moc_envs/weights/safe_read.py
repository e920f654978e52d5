"""Reading files a user hands us: regular files only, bounded sizes, strict JSON.

Every reader of a weights or agent folder (manifest, detector config, classifier, label offsets,
agent, card, safetensors headers) goes through here. A path is opened only when it is a regular
file, and without following a final symlink or waiting on a named pipe (``O_NOFOLLOW``,
``O_NONBLOCK``); what it is instead is named in the error ("is a FIFO (named pipe), expected a
regular file"). JSON is parsed strictly: no ``NaN``/``Infinity``, no number that overflows a
float (``1e400``), no integer longer than :data:`MAX_JSON_INT_DIGITS` digits and no nesting deeper
than :data:`MAX_JSON_DEPTH`. Whatever is wrong comes out as
:class:`moc_envs.errors.CorruptWeightsError` naming the file, never as Python's own
``RecursionError``, ``OverflowError`` or ``ValueError`` from deep inside :mod:`json`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from moc_envs.errors import CorruptWeightsError

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT_DIGITS",
    "file_kind",
    "open_regular",
    "read_regular_file",
    "parse_json",
    "load_json_file",
    "finite_for_json",
    "torch_load_error_text",
]

MAX_JSON_BYTES = 16 << 20
"""Largest JSON file read (our largest, a card or an evaluation, is about 50 kB)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and arrays accepted (ours nest 7 deep)."""
MAX_JSON_INT_DIGITS = 20
"""Longest integer literal accepted: every integer we write (sizes, counts, seeds) fits in 64
bits; a 5,000-digit one would overflow a float conversion or Python's own digit limit."""

# O_NOFOLLOW: a final symlink is refused rather than followed; O_NONBLOCK: opening a FIFO does
# not wait for a writer, so fstat can refuse it. Neither exists on Windows (no FIFOs there).
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words ("a FIFO (named pipe)", "a directory", ...)."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def _not_regular(path: Path, mode: int) -> CorruptWeightsError:
    what = file_kind(mode)
    if stat.S_ISLNK(mode):
        what += f" (to {os.readlink(path)})"
    return CorruptWeightsError(f"{path} is {what}, expected a regular file; refusing to read it")


@contextmanager
def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = False) -> Iterator[BinaryIO]:
    """Open ``path`` for binary reading if it is a regular file.

    A final symlink is refused unless ``follow_symlinks`` (then its target must be a regular
    file). Raises CorruptWeightsError naming the file and what it is (a FIFO, a symlink, a
    directory, a device) otherwise, FileNotFoundError when it does not exist. Never blocks on a
    FIFO: the type is checked before opening and again on the open descriptor (a swap in between
    is caught).
    """
    path = Path(path)
    before = os.stat(path) if follow_symlinks else os.lstat(path)
    if not stat.S_ISREG(before.st_mode):
        # Not even opened: opening a device can have effects of its own.
        raise _not_regular(path, before.st_mode)
    flags = _OPEN_FLAGS & ~getattr(os, "O_NOFOLLOW", 0) if follow_symlinks else _OPEN_FLAGS
    try:
        fd = os.open(path, flags)
    except OSError as err:
        # ELOOP: swapped for a symlink after the lstat above; report what is there now.
        try:
            now = os.lstat(path)
        except OSError:
            raise err from None
        if not stat.S_ISREG(now.st_mode):
            raise _not_regular(path, now.st_mode) from err
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int, follow_symlinks: bool = False) -> bytes:
    """The bytes of regular file ``path``, at most ``max_bytes`` of them.

    Raises CorruptWeightsError (naming the file) when it is not a regular file (a final symlink
    included, unless ``follow_symlinks``) or is larger than ``max_bytes``, FileNotFoundError
    when it does not exist.
    """
    with open_regular(path, follow_symlinks=follow_symlinks) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CorruptWeightsError(f"{path} is larger than {max_bytes} bytes; refusing to read it")
    return data


class _Refused(ValueError):
    """A number the strict parser does not accept (raised from :func:`json.loads` hooks)."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number JSON allows (expected a finite number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]}{'...' if len(text) > 40 else ''} overflows a float")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _Refused(f"integer of {digits} digits (at most {MAX_JSON_INT_DIGITS} accepted)")
    return int(text)


def _depth(value: Any) -> int:
    """Deepest nesting of objects and arrays in ``value``, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                break
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(data: bytes, source: str | os.PathLike[str]) -> Any:
    """``data`` (UTF-8 JSON) parsed strictly; CorruptWeightsError naming ``source`` when refused.

    Refused: invalid UTF-8 or JSON, ``NaN`` and ``Infinity``, numbers that overflow a float,
    integers longer than :data:`MAX_JSON_INT_DIGITS` digits, nesting deeper than
    :data:`MAX_JSON_DEPTH`.
    """
    try:
        value = json.loads(
            data.decode("utf-8"),
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError as err:
        raise CorruptWeightsError(
            f"{source} is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from err
    except _Refused as err:
        raise CorruptWeightsError(f"{source} is not valid JSON: {err}") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptWeightsError(f"{source} is not valid JSON: {err}") from err
    if _depth(value) > MAX_JSON_DEPTH:
        raise CorruptWeightsError(f"{source} is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def load_json_file(path: str | os.PathLike[str], *, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Regular file ``path`` (a ``what``: "card", "detector config", ...) parsed by :func:`parse_json`.

    Raises CorruptWeightsError naming the file and ``what`` when it is not a regular file, too
    large or not strict JSON; FileNotFoundError when it does not exist.
    """
    return parse_json(read_regular_file(path, max_bytes=max_bytes), f"{path} ({what})")


def finite_for_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN: a rate over no samples) replaced by None.

    For writers of files that :func:`parse_json` reads back: ``json.dumps`` writes ``NaN``,
    which strict JSON (and so this package's readers) refuses.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_for_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_for_json(v) for v in value]
    return value


# Sentences of torch.load's message that advise loading with weights_only=False (or allowlisting
# the file's globals): advice to run the file's code, which no message of ours may pass on.
_UNSAFE_ADVICE = re.compile(
    r"weights_only`?\s*(?:set to|=)\s*`?False|safe_globals|trusted source|if you trust|recommended steps|"
    r"Check the documentation of torch\.load|In PyTorch 2\.6|two options",
    re.IGNORECASE,
)


def torch_load_error_text(err: BaseException) -> str:
    """The message of an error from a weights-only ``torch.load`` without torch's advice.

    torch suggests retrying with ``weights_only=False``, which unpickles the file and can run
    any code in it; the sentences giving that advice are dropped, the reason is kept.
    """
    # Older torch: "Please file an issue with the following ... use case: <the reason>".
    text = re.sub(r"Please file an issue[^:]*:\s*", "", str(err))
    sentences = re.split(r"(?<=[.!?])\s+|\n+", text)
    kept = [s.strip() for s in sentences if s.strip() and not _UNSAFE_ADVICE.search(s)]
    return " ".join(kept) or type(err).__name__
