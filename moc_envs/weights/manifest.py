"""``manifest.json``: every file of a weights folder with its SHA-256 and size, checked before loading.

A weights folder (``<root>/<Game>/``) is flat: the detector, its config, the z_what classifier,
the evaluation and the card. Every writer (``trainers.evaluate.export``, ``trainers.classify.classifier``,
``trainers.evaluate.detector``, ``trainers.evaluate.card``) refreshes the manifest after writing
(:func:`write_manifest`), and every loader first opens the folder through
:func:`verify_folder`: a missing manifest, a listed file that is missing or whose bytes changed,
a symlink or other non-regular entry (a FIFO, a device) inside the folder, or a file read without
being listed raises :class:`moc_envs.errors.CorruptWeightsError` naming the file (expected vs
actual hash). Files are then read through :meth:`VerifiedFolder.read_bytes`, which checks the
hash of the very bytes it returns, so a file swapped between the check and the load is caught
too, and a listed file that is gone by then is corruption, never an absent optional file: what a
folder holds is decided from its verified manifest (:meth:`VerifiedFolder.listed`). Every file is
opened as a regular file only and JSON is parsed strictly (:mod:`moc_envs.weights.safe_read`).

The manifest catches accidents and naive tampering; it is not a signature (whoever can write
the folder can write a manifest). What keeps a loaded folder from running code is that nothing
in it is ever unpickled: safetensors and JSON only.

Record the files of a folder you trust (e.g. one written by an older version) with::

    moc-envs manifest weights/Pong --game Pong
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.safe_read import (
    MAX_JSON_BYTES,
    file_kind,
    load_json_file,
    open_regular,
    parse_json,
)

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "ManifestEntry",
    "VerifiedFolder",
    "sha256_bytes",
    "sha256_file",
    "build_manifest",
    "write_manifest",
    "refresh_manifest",
    "read_manifest",
    "verify_folder",
    "safetensors_metadata",
    "main",
]

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "moc_envs.manifest/1"
"""Format tag of ``manifest.json``."""

_TAMPERING = "corruption or tampering"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _listed_file_errors(path: Path) -> Iterator[None]:
    """Errors reading a file the manifest lists, as CorruptWeightsError: gone or not a regular
    file after the manifest named it is tampering, not a missing optional file."""
    try:
        yield
    except FileNotFoundError as err:
        raise CorruptWeightsError(
            f"{path} is listed in {MANIFEST_FILE} but missing: possible {_TAMPERING}"
        ) from err
    except CorruptWeightsError as err:
        raise CorruptWeightsError(f"{err}: possible {_TAMPERING}") from err


def _hash_regular(path: Path, follow_symlinks: bool = False) -> tuple[str, int]:
    """(hex SHA-256, size) of regular file ``path``, hashed from one open descriptor."""
    h, size = hashlib.sha256(), 0
    with open_regular(path, follow_symlinks=follow_symlinks) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a regular file's bytes (a symlink is followed to its target).

    Raises CorruptWeightsError naming the file when it is not a regular file (a FIFO is never
    waited on); inside a weights folder, :func:`verify_folder` refuses symlinks themselves.
    """
    return _hash_regular(Path(path), follow_symlinks=True)[0]


@dataclass(frozen=True)
class ManifestEntry:
    """What the manifest records of one file."""

    sha256: str
    bytes: int


def _entries(folder: Path) -> list[tuple[Path, int]]:
    """Every entry of ``folder`` with its ``lstat`` mode (links not followed), sorted by name."""
    out = []
    for p in sorted(folder.iterdir()):
        try:
            out.append((p, os.lstat(p).st_mode))
        except FileNotFoundError:  # removed while listing: it is not there
            continue
    return out


def _refuse_symlinks(folder: Path) -> None:
    """Refuse a symlink, FIFO, socket or device inside ``folder`` (sub-folders are fine)."""
    for p, mode in _entries(folder):
        if stat.S_ISLNK(mode):
            raise CorruptWeightsError(
                f"{p} is a symlink (to {os.readlink(p)}) inside the weights folder {folder}: possible "
                f"{_TAMPERING}; a weights folder holds only regular files, copy the file in instead"
            )
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise CorruptWeightsError(
                f"{p} is {file_kind(mode)} inside the weights folder {folder}, expected a regular file: "
                f"possible {_TAMPERING}; a weights folder holds only regular files"
            )


def _listable(folder: Path) -> list[Path]:
    """The files a manifest of ``folder`` lists: regular, not hidden (atomic temporaries), not itself."""
    return [
        p
        for p, mode in _entries(folder)
        if stat.S_ISREG(mode) and p.name != MANIFEST_FILE and not p.name.startswith(".")
    ]


def build_manifest(folder: str | Path, game: str) -> dict[str, Any]:
    """The manifest of ``folder`` as it is now: format tag, game, and every file's SHA-256 and size.

    Sub-folders and hidden files (atomic-write temporaries) are not listed; a symlink inside
    the folder raises CorruptWeightsError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingWeightsError(f"weights folder {folder} does not exist")
    _refuse_symlinks(folder)
    files = {}
    for p in _listable(folder):
        digest, size = _hash_regular(p)
        files[p.name] = {"sha256": digest, "bytes": size}
    return {"format": MANIFEST_FORMAT, "game": game, "files": files}


def _parse(folder: Path, data: Any) -> tuple[str, dict[str, ManifestEntry]]:
    """(game, entries) of a parsed manifest; CorruptWeightsError when it is malformed."""
    path = folder / MANIFEST_FILE
    if not isinstance(data, dict):
        raise CorruptWeightsError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if data.get("format") != MANIFEST_FORMAT:
        raise CorruptWeightsError(f"{path} has format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    game, files = data.get("game"), data.get("files")
    if not isinstance(game, str) or not isinstance(files, dict):
        raise CorruptWeightsError(f"{path} must give 'game' (a string) and 'files' (an object)")
    entries: dict[str, ManifestEntry] = {}
    for name, entry in files.items():
        ok_name = isinstance(name, str) and name not in ("", ".", "..", MANIFEST_FILE) and "/" not in name and "\\" not in name
        ok_entry = (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _HEX64.fullmatch(entry["sha256"]) is not None
            and isinstance(entry.get("bytes"), int)
            and not isinstance(entry.get("bytes"), bool)
            and entry["bytes"] >= 0
        )
        if not (ok_name and ok_entry):
            shown = repr(entry)
            raise CorruptWeightsError(
                f"{path}: entry {name!r} must be a plain file name with a 64-hex 'sha256' and an "
                f"integer 'bytes' >= 0, got {shown[:200]}{'...' if len(shown) > 200 else ''}"
            )
        # hexdigest() is lowercase; a digest written in uppercase names the same bytes.
        entries[name] = ManifestEntry(entry["sha256"].lower(), entry["bytes"])
    return game, entries


def read_manifest(folder: str | Path) -> tuple[str, dict[str, ManifestEntry]]:
    """The game and file entries of ``folder``'s manifest (structure checked, files not hashed)."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if path.is_symlink():
        raise CorruptWeightsError(f"{path} is a symlink: possible {_TAMPERING}")
    if not os.path.lexists(path):
        raise CorruptWeightsError(
            f"{folder} has no {MANIFEST_FILE}: possible {_TAMPERING}, or a folder written before "
            "manifests existed. Re-export it (moc-envs export <run> --game <Game> --out "
            f"{folder}), or, if you trust every file in it, record them with "
            f"`moc-envs manifest {folder} --game <Game>`"
        )
    try:
        data = load_json_file(path, what="manifest")
    except FileNotFoundError as err:  # removed since the check above
        raise CorruptWeightsError(f"{path} vanished while being read: possible {_TAMPERING}") from err
    except CorruptWeightsError as err:
        raise CorruptWeightsError(f"{err}: possible {_TAMPERING}") from err
    return _parse(folder, data)


class VerifiedFolder:
    """A weights folder whose manifest checked out; reads its files against the recorded hashes."""

    def __init__(self, folder: Path, game: str, files: dict[str, ManifestEntry]) -> None:
        """Use :func:`verify_folder` to make one."""
        self.folder = folder
        self.game = game
        self.files = dict(files)

    def listed(self, name: str) -> bool:
        """Whether the manifest lists file ``name``: what the folder holds, as verified.

        A listed file must be read (:meth:`read_bytes`): one that is gone or changed by then is
        corruption, never an absent optional file.
        """
        return name in self.files

    def holds(self, name: str) -> bool:
        """Whether the folder holds ``name``: listed in the manifest, or present on disk anyway.

        For optional files: a listed one is there (or its read fails as corruption), and an
        unlisted one found on disk is read too, so that its read refuses it as unrecorded
        rather than it being ignored.
        """
        return self.listed(name) or os.path.lexists(self.folder / name)

    def read_bytes(self, name: str) -> bytes:
        """The bytes of file ``name``, after checking them against the manifest.

        Raises CorruptWeightsError when the file is not listed, is missing, is not a regular
        file (a symlink, a FIFO), or its bytes do not match the recorded SHA-256 and size.
        """
        path = self.folder / name
        entry = self.files.get(name)
        if entry is None:
            raise CorruptWeightsError(
                f"{path} is not listed in {self.folder / MANIFEST_FILE}: possible {_TAMPERING}; "
                "refusing to load an unrecorded file"
            )
        if path.is_symlink():
            raise CorruptWeightsError(f"{path} is a symlink: possible {_TAMPERING}")
        with _listed_file_errors(path), open_regular(path) as f:
            data = f.read(entry.bytes + 1)  # one byte more than recorded shows a longer file
        _check(path, entry, sha256_bytes(data), len(data))
        return data

    def read_json(self, name: str) -> Any:
        """File ``name`` parsed as strict JSON (:func:`moc_envs.weights.safe_read.parse_json`), after
        the check of :meth:`read_bytes`."""
        return parse_json(self.read_bytes(name), self.folder / name)


def _check(path: Path, entry: ManifestEntry, actual: str, size: int) -> None:
    if actual != entry.sha256 or size != entry.bytes:
        raise CorruptWeightsError(
            f"{path} does not match {MANIFEST_FILE}: possible {_TAMPERING}. Expected SHA-256 "
            f"{entry.sha256} ({entry.bytes} bytes), got {actual} ({size} bytes); refusing to load it"
        )


def verify_folder(folder: str | Path, game: str | None = None) -> VerifiedFolder:
    """Check every file the manifest of ``folder`` lists, before anything is loaded from it.

    Raises CorruptWeightsError on a missing or malformed manifest, a manifest for another game,
    a symlink inside the folder, a listed file that is missing, or a hash or size mismatch.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingWeightsError(f"weights folder {folder} does not exist")
    _refuse_symlinks(folder)
    saved_game, entries = read_manifest(folder)
    if game is not None and saved_game != game:
        raise CorruptWeightsError(
            f"{folder / MANIFEST_FILE} records a weights folder for game {saved_game!r}, not {game!r}"
        )
    for name, entry in entries.items():
        path = folder / name
        with _listed_file_errors(path):
            digest, size = _hash_regular(path)
        _check(path, entry, digest, size)
    return VerifiedFolder(folder, saved_game, entries)


def safetensors_metadata(data: bytes, source: str | Path) -> dict[str, str]:
    """The ``__metadata__`` string map in the header of safetensors bytes (empty when absent).

    Raises CorruptWeightsError, naming ``source``, when the header is malformed.
    """
    import struct

    try:
        (size,) = struct.unpack("<Q", data[:8])
        if not 2 <= size <= min(len(data) - 8, MAX_JSON_BYTES):
            raise ValueError(f"header of {size} bytes in a {len(data)}-byte file")
        try:
            header = parse_json(data[8 : 8 + size], "its header")
        except CorruptWeightsError as err:
            raise ValueError(str(err)) from err
        if not isinstance(header, dict):
            raise ValueError(f"the header must be a JSON object, got {type(header).__name__}")
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            shown = repr(meta)
            raise ValueError(f"__metadata__ must map strings to strings, got {shown[:200]}")
    except (struct.error, ValueError) as err:
        raise CorruptWeightsError(f"{source} is not a readable safetensors file: {err}") from err
    return dict(meta)


def write_manifest(folder: str | Path, game: str, written: Iterable[str] | None = None) -> Path:
    """Refresh ``folder/manifest.json`` atomically after a writer changed files; return its path.

    ``written``: the names the caller just wrote. When a manifest exists, every other file it
    lists must still match it (CorruptWeightsError otherwise: a writer never re-records a file
    that changed behind its back); listed files that are gone are dropped. ``written=None``
    records the folder as it is, trusting every file (a first manifest, or a folder checked by
    hand).
    """
    folder = Path(folder)
    if written is not None and (folder / MANIFEST_FILE).exists():
        saved_game, entries = read_manifest(folder)
        if saved_game != game:
            raise CorruptWeightsError(
                f"{folder / MANIFEST_FILE} records a weights folder for game {saved_game!r}, not {game!r}"
            )
        fresh = set(written)
        for name, entry in entries.items():
            path = folder / name
            if name not in fresh and os.path.lexists(path):
                # A non-regular entry is refused here (and by build_manifest below).
                _check(path, entry, *_hash_regular(path))
    manifest = build_manifest(folder, game)
    return atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def refresh_manifest(folder: str | Path, game: str, written: Iterable[str]) -> Path | None:
    """:func:`write_manifest` for a folder that already has a manifest; None (nothing written) otherwise.

    For writers that add files to an existing weights folder (evaluation, card): a folder
    without a manifest was never verified, and adding a file must not vouch for the others.
    """
    if not os.path.lexists(Path(folder) / MANIFEST_FILE):
        return None
    return write_manifest(folder, game, written)


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: record every file of a weights folder you trust in its manifest."""
    p = argparse.ArgumentParser(
        prog="moc-envs manifest",
        description="Write manifest.json for a weights folder whose files you trust.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("folder", help="weights folder, e.g. weights/Pong")
    p.add_argument("--game", required=True, help="game of the folder, e.g. Pong")
    args = p.parse_args(argv)
    from moc_envs.games import get_game

    path = write_manifest(args.folder, get_game(args.game).name)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
