"""Exception types raised by moc_envs for bad user input."""

from __future__ import annotations

__all__ = [
    "MocEnvsError",
    "UnknownGameError",
    "MissingWeightsError",
    "CorruptWeightsError",
    "FrameFormatError",
    "DeviceUnavailableError",
    "DetectorOutputError",
    "DetectorInUseError",
    "MissingDependencyError",
    "WorkerError",
    "ClosedEnvError",
    "UnsafePathError",
]


class MocEnvsError(Exception):
    """Base class of every error moc_envs raises on purpose."""


class UnknownGameError(MocEnvsError, ValueError):
    """A game name that the registry does not know."""


class MissingWeightsError(MocEnvsError, FileNotFoundError):
    """Trained detector weights for a game are not where they should be."""


class CorruptWeightsError(MocEnvsError, ValueError):
    """A weights file or checkpoint exists but cannot be trusted or parsed."""


class FrameFormatError(MocEnvsError, ValueError):
    """Frames handed to a detector have the wrong shape or dtype."""


class DeviceUnavailableError(MocEnvsError, RuntimeError):
    """The requested torch device (e.g. CUDA) is not available here."""


class DetectorOutputError(MocEnvsError, TypeError):
    """A detector returned something other than one list of Detections per frame."""


class DetectorInUseError(MocEnvsError, ValueError):
    """A detector that keeps per-env state was handed to a second env."""


class MissingDependencyError(MocEnvsError, ImportError):
    """An optional dependency (OCAtari for the RAM oracle, moviepy for videos) is not installed."""


class WorkerError(MocEnvsError, RuntimeError):
    """A worker process of a vector env failed or exited; the worker's own error is the cause."""


class ClosedEnvError(MocEnvsError, RuntimeError):
    """An env or vector env was used after ``close()``."""


class UnsafePathError(MocEnvsError, OSError):
    """A path to be written is a symlink (or was swapped for one): refused, never written through."""
