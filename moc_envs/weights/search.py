"""Where trained detector weights come from, and a clear error when there are none.

A game's weights folder (``detector.safetensors``, ``config.json``, the classifier, a card and
``manifest.json``) is found, in this order:

1. ``weights=``: a game folder holding ``detector.safetensors``, or a root holding ``<Game>/``.
   It wins over everything.
2. The roots of ``$MOC_ENVS_WEIGHTS`` (``os.pathsep``-separated), in order: the first root that
   holds a ``<Game>/`` folder provides the game; a game missing there falls through.

A relative ``weights=`` or ``$MOC_ENVS_WEIGHTS`` entry is relative to the current working
directory at the time of the lookup, and is made absolute there: the folder found (and loaded, and
handed to workers) stays the same if the process changes directory later.
3. The bundled weights: the checkout's top-level ``weights/`` when running from a source tree
   (or an editable install), else the copy a regular ``pip install`` places in the package as
   ``moc_envs/_weights``.

:func:`weights_table` reports, for every registered game, where its weights come from and the
headline figures of its card; :func:`format_weights_table` renders that as plain text. Only
JSON is read here (no torch, no unpickling): ``import moc_envs`` stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from moc_envs.errors import CorruptWeightsError, MissingWeightsError, MocEnvsError
from moc_envs.games import game_names, get_game
from moc_envs.weights.safe_read import load_json_file

__all__ = [
    "WEIGHTS_ENV_VAR",
    "REQUIRED_FILES",
    "WeightsOrigin",
    "WeightsInfo",
    "weights_root",
    "bundled_games",
    "weights_search_path",
    "check_weights_argument",
    "find_weights",
    "weights_dir",
    "require_weights",
    "training_commands",
    "weights_table",
    "format_weights_table",
]

WEIGHTS_ENV_VAR = "MOC_ENVS_WEIGHTS"
"""Environment variable: weights roots searched in front of the bundled weights."""

REQUIRED_FILES = ("detector.safetensors", "config.json")
"""Files every exported detector folder ``<root>/<Game>/`` holds."""

_DETECTOR_FILE = REQUIRED_FILES[0]
_CARD_FILE = "card.json"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # moc_envs/, above this subpackage

WeightsOrigin = Literal["explicit", "MOC_ENVS_WEIGHTS", "bundled", "none"]
"""Where a game's weights come from: ``weights=``, a ``$MOC_ENVS_WEIGHTS`` root, the bundled
weights, or nowhere."""


def weights_root() -> Path:
    """The bundled weights root: one sub-folder per game.

    The checkout's top-level ``weights/`` when running from a source tree (or an editable
    install), else the copy that a regular ``pip install`` places in the package as
    ``moc_envs/_weights``. ``$MOC_ENVS_WEIGHTS`` roots are searched in front of it (see
    :func:`weights_search_path`).
    """
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        return checkout / "weights"
    return _PACKAGE_DIR / "_weights"


def bundled_games() -> tuple[str, ...]:
    """Registered games whose detector ships in the bundled root (:func:`weights_root`), sorted.

    A folder counts when it holds :data:`REQUIRED_FILES`; whether it loads is checked at load.
    """
    root = weights_root()
    return tuple(name for name in game_names() if all((root / name / f).is_file() for f in REQUIRED_FILES))


def weights_search_path() -> list[tuple[Path, WeightsOrigin]]:
    """The roots searched for ``<Game>/`` folders, in order, each with its origin.

    Every non-empty entry of ``$MOC_ENVS_WEIGHTS`` (split on ``os.pathsep``; ``~`` expanded, a
    relative entry resolved against the current working directory now), then the bundled root
    of :func:`weights_root`.
    """
    raw = os.environ.get(WEIGHTS_ENV_VAR, "")
    roots: list[tuple[Path, WeightsOrigin]] = [
        (Path(entry).expanduser().resolve(), "MOC_ENVS_WEIGHTS") for entry in raw.split(os.pathsep) if entry
    ]
    roots.append((weights_root(), "bundled"))
    return roots


def check_weights_argument(weights: object) -> Path | None:
    """A ``weights=`` argument as an absolute path (None stays None).

    ``~`` is expanded and a relative path is made absolute against the current working
    directory now. Raises TypeError for anything but a ``str`` or ``os.PathLike`` path or None,
    and ValueError for an empty string (which would otherwise mean the working directory).
    """
    if weights is None:
        return None
    if not isinstance(weights, str | os.PathLike):
        raise TypeError(
            f"weights must be a path (str or os.PathLike) to a game folder or a weights root, or "
            f"None, got {type(weights).__name__} {weights!r}"
        )
    raw = os.fspath(weights)
    if not isinstance(raw, str):
        raise TypeError(f"weights must be a str path, got {type(raw).__name__} {raw!r}")
    if not raw.strip():
        raise ValueError(
            f"weights={raw!r} names no folder: pass a game folder holding {_DETECTOR_FILE} or a "
            "weights root holding <Game>/, or None to search $MOC_ENVS_WEIGHTS and the bundled weights"
        )
    return Path(os.path.abspath(Path(raw).expanduser()))


def _explicit_folder(game: str, weights: str | os.PathLike[str], path: Path) -> Path:
    """The game folder that ``weights=`` (absolute: ``path``) names: itself (a game folder) or
    ``<weights>/<Game>``."""
    if not path.is_dir():
        raise MissingWeightsError(
            f"weights={str(weights)!r} is not a folder; expected a game folder holding "
            f"{_DETECTOR_FILE} or a weights root holding {game}/"
        )
    if os.path.lexists(path / _DETECTOR_FILE):
        return path
    if (path / game).is_dir():
        return path / game
    raise MissingWeightsError(
        f"weights={str(weights)!r} is neither a game folder (no {_DETECTOR_FILE} in it) nor a "
        f"weights root holding {game}/ (no {path / game})"
    )


def find_weights(
    game: str, weights: str | os.PathLike[str] | None = None
) -> tuple[Path, WeightsOrigin] | None:
    """The folder the game's weights would load from and its origin, or None when there is none.

    ``weights`` (a game folder or a root, see :func:`check_weights_argument`) wins; otherwise
    the first root of :func:`weights_search_path` holding a ``<Game>/`` folder. The folder is
    absolute: a relative ``weights`` or root is resolved against the working directory now. The
    folder's files are not checked here (:func:`require_weights` does).
    """
    path = check_weights_argument(weights)
    name = get_game(game).name
    if weights is not None and path is not None:
        return _explicit_folder(name, weights, path), "explicit"
    for root, origin in weights_search_path():
        if (root / name).is_dir():
            return root / name, origin
    return None


def weights_dir(game: str, weights: str | os.PathLike[str] | None = None) -> Path:
    """The game's weights folder as :func:`find_weights` finds it, else where the bundled one belongs."""
    found = find_weights(game, weights)
    return found[0] if found is not None else weights_root() / get_game(game).name


def training_commands(game: str) -> str:
    """The commands that train, export and classify a detector for ``game``, and how to use it."""
    name = get_game(game).name
    run = f"runs/{name.lower()}"
    return (
        "Train and export one with:\n"
        f"  moc-envs dataset --game {name} --out data/{name}\n"
        f"  moc-envs train-detector --game {name} --data data/{name} --out {run}\n"
        f"  moc-envs export {run} --game {name}   # writes {run}/weights/{name}\n"
        f"  moc-envs classifier --game {name} --weights {run}/weights/{name} --data data/{name}\n"
        f"then pass weights='{run}/weights' (or the game folder) or set "
        f"{WEIGHTS_ENV_VAR}={run}/weights (roots separated by {os.pathsep!r}, searched before the "
        "bundled weights);\nor use the RAM oracle meanwhile: detector='ram'."
    )


def require_weights(game: str, weights: str | os.PathLike[str] | None = None) -> Path:
    """Return the game's weights folder, or raise MissingWeightsError saying how to make one.

    ``weights``: a game folder holding ``detector.safetensors`` or a root holding ``<Game>/``;
    it wins over ``$MOC_ENVS_WEIGHTS`` and the bundled weights. Only the presence of the
    required files is checked here; loading verifies the manifest and the contents.
    """
    spec = get_game(game)
    found = find_weights(spec.name, weights)
    if found is not None:
        folder, origin = found
        # lexists: a FIFO or symlink in a file's place is refused at load, naming what it is.
        missing = [folder / name for name in REQUIRED_FILES if not os.path.lexists(folder / name)]
        if not missing:
            return folder
        detail = {
            "explicit": " (the folder weights= names)",
            "MOC_ENVS_WEIGHTS": f" (found through {WEIGHTS_ENV_VAR} root {folder.parent}, which "
            "shadows the later roots and the bundled weights)",
            "bundled": " (the bundled weights)",
            "none": "",
        }[origin]
    else:
        folder = weights_root() / spec.name
        missing = [folder / name for name in REQUIRED_FILES]
        searched = [str(root) for root, _ in weights_search_path()]
        detail = f" (searched {', '.join(searched)})"
    raise MissingWeightsError(
        f"No trained SPACE+MOC detector for {spec.name}: missing "
        + ", ".join(str(p) for p in missing)
        + f"{detail}.\n"
        + training_commands(spec.name)
    )


@dataclass(frozen=True)
class WeightsInfo:
    """Where one game's weights come from and the headline figures of their card."""

    game: str
    origin: WeightsOrigin
    folder: Path | None
    """The game folder, None when the game has no weights anywhere."""
    status: str
    """``"ok"``, or why the folder would be refused (missing files, manifest, no classifier)."""
    f1_moving: float | None = None
    """Test-split F1 on moving objects from ``card.json`` (None without a card)."""
    category_accuracy: float | None = None
    """Category accuracy on moving objects from ``card.json``."""
    meets_bar: bool | None = None
    """Whether the card says the shipping bar is met."""
    f1_held_out: float | None = None
    """F1 on every promised object of held-out later-state play (``moc-envs held-out``), from ``card.json``."""
    vision_f1_held_out: float | None = None
    """OCAtari vision's F1 on the same frames."""
    spurious_singleton_share: float | None = None
    """Share of those frames where a single-slot category's slot holds a spurious box."""
    meets_held_out_bar: bool | None = None
    """Whether the card says the held-out bar is met."""


def _card_headline(folder: Path) -> tuple[float | None, ...]:
    """(F1 on moving objects, category accuracy, bar verdict, held-out F1, vision's held-out F1,
    spurious singleton share, held-out bar verdict) from a folder's card.json.

    Nones when the card is absent or unreadable (not a regular file, not strict JSON): the
    folder's status says why (:func:`_folder_status` verifies every file the manifest lists).
    """
    try:
        card = load_json_file(folder / _CARD_FILE, what="card")
    except (OSError, MocEnvsError):
        return (None,) * 7
    ship = card.get("ship") if isinstance(card, dict) else None
    if not isinstance(ship, dict):
        return (None,) * 7

    def number(key: str) -> float | None:
        v = ship.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def flag(key: str) -> bool | None:
        v = ship.get(key)
        return v if isinstance(v, bool) else None

    return (number("f1_moving"), number("category_accuracy"), flag("meets_bar"), number("f1_held_out"),
            number("vision_f1_held_out"), number("spurious_singleton_share"), flag("meets_held_out_bar"))  # fmt: skip


def _folder_status(folder: Path, game: str) -> str:
    """"ok", or the first reason loading this folder would be refused (files and manifest only)."""
    from moc_envs.perception.classifier import CLASSIFIER_FILE, LEGACY_CLASSIFIER_FILE
    from moc_envs.weights.manifest import verify_folder

    missing = [name for name in REQUIRED_FILES if not os.path.lexists(folder / name)]
    if missing:
        return "missing " + ", ".join(missing)
    legacy_only = not os.path.lexists(folder / CLASSIFIER_FILE) and os.path.lexists(folder / LEGACY_CLASSIFIER_FILE)
    try:
        files = verify_folder(folder, game)
    except MocEnvsError as err:
        # Legacy folders predate manifests: say what to re-fit rather than "no manifest".
        return "legacy pickled classifier" if legacy_only else "refused: " + str(err).split("\n")[0]
    except OSError as err:  # unreadable (permissions): the table still lists every game
        return f"refused: {err}"
    if not files.holds(CLASSIFIER_FILE):
        return "legacy pickled classifier" if files.holds(LEGACY_CLASSIFIER_FILE) else "no classifier"
    return "ok"


def weights_table(weights: str | os.PathLike[str] | None = None) -> list[WeightsInfo]:
    """For every registered game: where its weights come from, whether they load, their card's figures.

    ``weights`` is the same ``weights=`` folder the env takes (a game folder applies to its own
    game only, read from its ``config.json``; a root applies to every game it holds). The
    manifest of every found folder is verified (hashes, no code run); the detector itself is
    not loaded.
    """
    explicit_game: tuple[str, Path] | None = None
    explicit_root: Path | None = None
    path = check_weights_argument(weights)
    if path is not None:
        if os.path.lexists(path / _DETECTOR_FILE):
            game = _config_game(path)
            if game is None:
                raise CorruptWeightsError(
                    f"{path / REQUIRED_FILES[1]} does not name the game of weights={str(weights)!r}"
                )
            explicit_game = (get_game(game).name, path)
        elif path.is_dir():
            explicit_root = path
        else:
            raise MissingWeightsError(f"weights={str(weights)!r} is not a folder")
    rows: list[WeightsInfo] = []
    for name in game_names():
        found: tuple[Path, WeightsOrigin] | None
        if explicit_game is not None and explicit_game[0] == name:
            found = (explicit_game[1], "explicit")
        elif explicit_root is not None and (explicit_root / name).is_dir():
            found = (explicit_root / name, "explicit")
        else:
            found = find_weights(name)
        if found is None:
            rows.append(WeightsInfo(name, "none", None, "no weights"))
            continue
        folder, origin = found
        rows.append(WeightsInfo(name, origin, folder, _folder_status(folder, name), *_card_headline(folder)))  # type: ignore[arg-type]
    return rows


def _config_game(folder: Path) -> str | None:
    """The ``game`` a detector folder's config.json names (None when unreadable)."""
    try:
        config: Any = load_json_file(folder / REQUIRED_FILES[1], what="detector config")
    except (OSError, MocEnvsError):
        return None
    game = config.get("game") if isinstance(config, dict) else None
    return game if isinstance(game, str) else None


def format_weights_table(weights: str | os.PathLike[str] | None = None) -> str:
    """:func:`weights_table` as a plain-text table, one row per registered game."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def verdict(v: bool | None) -> str:
        return "-" if v is None else ("met" if v else "not met")

    header = ("game", "source", "F1 held-out", "vision", "spurious slot", "bar", "F1 moving (test)", "category acc.",
              "test bar", "status", "folder")  # fmt: skip
    body = [
        (
            r.game,
            r.origin,
            fmt(r.f1_held_out),
            fmt(r.vision_f1_held_out),
            fmt(r.spurious_singleton_share),
            verdict(r.meets_held_out_bar),
            fmt(r.f1_moving),
            fmt(r.category_accuracy),
            verdict(r.meets_bar),
            r.status,
            "-" if r.folder is None else str(r.folder),
        )
        for r in weights_table(weights)
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    searched = ", ".join(f"{root} ({origin})" for root, origin in weights_search_path())
    return "\n".join(lines) + f"\n\nsearched: {searched}\n"
