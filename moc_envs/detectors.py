"""The one place that turns a ``detector=`` argument into a detector object."""

from __future__ import annotations

from typing import Literal

from moc_envs.detection import Detector
from moc_envs.device import resolve_device
from moc_envs.games import GameSpec, get_game
from moc_envs.weights import require_weights

__all__ = ["DetectorName", "make_detector"]

DetectorName = Literal["space", "ram"]


def make_detector(
    detector: DetectorName | Detector, game: str | GameSpec, device: str = "auto"
) -> Detector:
    """Build the detector for ``game``.

    ``"space"`` loads the learned SPACE+MOC detector from ``weights/<Game>/``
    (raising MissingWeightsError with the training commands when absent),
    ``"ram"`` builds the RAM oracle, and an object with a ``detect`` method is
    returned as it is.
    """
    spec = game if isinstance(game, GameSpec) else get_game(game)
    if isinstance(detector, str):
        if detector == "ram":
            from moc_envs.ram_detector import RamDetector

            return RamDetector(spec)
        if detector == "space":
            folder = require_weights(spec.name)
            resolved = resolve_device(device)
            # Imported here: it pulls in torch, which `import moc_envs` must not.
            from moc_envs.space_detector import SpaceDetector

            return SpaceDetector.from_pretrained(folder, game=spec, device=resolved)
        raise ValueError(
            f"Unknown detector {detector!r}: use 'space' (learned, default), 'ram' (RAM oracle) "
            "or an object with a detect(frames, rams=None) method"
        )
    if isinstance(detector, Detector):
        return detector
    raise TypeError(
        f"detector must be 'space', 'ram' or an object with a detect(frames, rams=None) "
        f"method, got {type(detector).__name__}"
    )
