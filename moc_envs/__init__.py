"""moc_envs: object-centric Atari environments from pixels with a learned SPACE+MOC detector."""

from __future__ import annotations

from moc_envs.detection import Detection, Detector
from moc_envs.errors import (
    CorruptWeightsError,
    DeviceUnavailableError,
    FrameFormatError,
    MissingWeightsError,
    MocEnvsError,
    UnknownGameError,
)
from moc_envs.games import GAMES, GameSpec, game_names, get_game

__all__ = [
    "Detection",
    "Detector",
    "GAMES",
    "GameSpec",
    "game_names",
    "get_game",
    "MocEnvsError",
    "UnknownGameError",
    "MissingWeightsError",
    "CorruptWeightsError",
    "FrameFormatError",
    "DeviceUnavailableError",
]

__version__ = "0.1.0"
