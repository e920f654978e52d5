"""Where trained detector weights live, and a clear error when they are missing."""

from __future__ import annotations

import os
from pathlib import Path

from moc_envs.errors import MissingWeightsError
from moc_envs.games import get_game

__all__ = ["WEIGHTS_ENV_VAR", "REQUIRED_FILES", "weights_root", "weights_dir", "require_weights"]

WEIGHTS_ENV_VAR = "MOC_ENVS_WEIGHTS"
"""Environment variable that points moc_envs at another weights folder."""

REQUIRED_FILES = ("detector.safetensors", "config.json")
"""Files every exported detector folder ``weights/<Game>/`` holds."""

_PACKAGE_DIR = Path(__file__).resolve().parent


def weights_root() -> Path:
    """The folder holding one sub-folder of weights per game.

    ``$MOC_ENVS_WEIGHTS`` wins; otherwise the checkout's top-level ``weights/``
    when running from a source tree (or an editable install), else the copy
    that a regular ``pip install`` places in the package as ``moc_envs/_weights``.
    """
    override = os.environ.get(WEIGHTS_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        return checkout / "weights"
    return _PACKAGE_DIR / "_weights"


def weights_dir(game: str) -> Path:
    """The weights folder of one game, ``<weights_root>/<Game>`` (canonical name)."""
    return weights_root() / get_game(game).name


def require_weights(game: str) -> Path:
    """Return the game's weights folder, or raise MissingWeightsError saying how to make it."""
    spec = get_game(game)
    folder = weights_dir(spec.name)
    missing = [folder / name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        lower = spec.name.lower()
        raise MissingWeightsError(
            f"No trained SPACE+MOC detector for {spec.name}: missing "
            + ", ".join(str(p) for p in missing)
            + ".\nTrain and export one with:\n"
            f"  python -m trainers.dataset --game {spec.name} --out data/{spec.name}\n"
            f"  python -m trainers.train --game {spec.name} --data data/{spec.name} --out runs/{lower}\n"
            f"  python -m trainers.export runs/{lower} --game {spec.name}\n"
            f"or use the RAM oracle meanwhile: detector='ram'."
        )
    return folder
