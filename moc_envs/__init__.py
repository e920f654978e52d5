"""moc_envs: object-centric Atari environments from pixels with a learned SPACE+MOC detector.

``import moc_envs`` registers ``MOC/<Game>-v0`` for every supported game; torch
and OCAtari load only when an env that needs them is made.
"""

from __future__ import annotations

from moc_envs.device import resolve_device
from moc_envs.envs.make import make_vec
from moc_envs.envs.registration import env_id, make_env, register_envs
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.envs.wrapper import ObjectCentricWrapper
from moc_envs.errors import (
    ClosedEnvError,
    CorruptWeightsError,
    DetectorInUseError,
    DetectorOutputError,
    DeviceUnavailableError,
    FrameFormatError,
    MissingDependencyError,
    MissingWeightsError,
    MocEnvsError,
    UnknownGameError,
    UnsafePathError,
    WorkerError,
)
from moc_envs.games import GAMES, GameSpec, game_names, get_game
from moc_envs.perception.detection import Detection, Detector, validate_detections
from moc_envs.perception.detectors import make_detector
from moc_envs.perception.labels import labels_from_detections, labels_from_ram
from moc_envs.perception.observation import FEATURES, ObjectObservationBuilder, feature_names
from moc_envs.perception.ram_detector import RamDetector
from moc_envs.perception.tracking import SlotTracker
from moc_envs.weights.search import (
    find_weights,
    format_weights_table,
    require_weights,
    weights_dir,
    weights_root,
    weights_table,
)

__all__ = [
    "Detection",
    "Detector",
    "validate_detections",
    "GAMES",
    "GameSpec",
    "game_names",
    "get_game",
    "env_id",
    "make_env",
    "make_vec",
    "MocVectorEnv",
    "register_envs",
    "ObjectCentricWrapper",
    "ObjectObservationBuilder",
    "SlotTracker",
    "FEATURES",
    "feature_names",
    "RamDetector",
    "make_detector",
    "resolve_device",
    "labels_from_detections",
    "labels_from_ram",
    "weights_root",
    "weights_dir",
    "require_weights",
    "find_weights",
    "weights_table",
    "format_weights_table",
    "MocEnvsError",
    "UnknownGameError",
    "MissingWeightsError",
    "MissingDependencyError",
    "CorruptWeightsError",
    "FrameFormatError",
    "DeviceUnavailableError",
    "DetectorOutputError",
    "DetectorInUseError",
    "ClosedEnvError",
    "UnsafePathError",
    "WorkerError",
]

__version__ = "0.1.0"

register_envs()
