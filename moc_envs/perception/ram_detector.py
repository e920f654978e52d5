"""The RAM oracle: objects read from the emulator RAM through OCAtari's RAM mode.

It implements the same :class:`~moc_envs.perception.detection.Detector` protocol as the
learned detector, but reads ``rams`` instead of pixels. It is the upper bound
a pixel detector is measured against, and the detector used until trained
weights exist.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from moc_envs.errors import FrameFormatError, MissingDependencyError
from moc_envs.games import GameSpec, get_game
from moc_envs.perception.detection import Detection, validate_frames, validate_rams

__all__ = ["OCATARI_INSTALL", "import_ocatari", "RamDetector"]

OCATARI_INSTALL = (
    'pip install "moc-envs[oracle]" && pip install --no-deps "ocatari==2.2.1" (one OpenCV, what '
    '`make install` does), or pip install "moc-envs[ocatari]" (OCAtari with its own dependencies)'
)


def import_ocatari(module: str) -> Any:
    """Import an OCAtari module, or raise MissingDependencyError saying how to install OCAtari."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        # OCAtari itself, or one of the packages it imports (termcolor, scikit-image, ...).
        raise MissingDependencyError(
            f"the RAM oracle and OCAtari's ground truth need OCAtari, which cannot be imported "
            f"({err}); install it with: {OCATARI_INSTALL}"
        ) from err


def _ocatari_ram() -> Any:
    # OCAtari's RAM package imports every game module (and pygame) on first
    # use: about two seconds, so it stays off `import moc_envs`.
    return import_ocatari("ocatari.ram.extract_ram_info")


class RamDetector:
    """Detector that reads each game's objects from RAM (OCAtari RAM mode, HUD off).

    OCAtari keeps per-episode object state for some games (Skiing's object
    slots, Breakout's blocks), so the detector keeps one object list per batch
    position: batch row ``i`` of every call must come from the same env. Call
    :meth:`reset` with that position when its env resets.

    Only the spec's moving categories are returned (no HUD, no static pills or
    shields), with ``score=1.0``. Objects that OCAtari keeps but the frame does not
    draw are left out: Asterix's emptied lanes (RAM ``18 - lane`` == 11), where OCAtari
    clears the lane's reward but keeps its last enemy or consumable.
    """

    def __init__(self, game: str | GameSpec) -> None:
        self.spec = game if isinstance(game, GameSpec) else get_game(game)
        self._extract = _ocatari_ram()
        self._game_key = self.spec.name
        self._keep = frozenset(self.spec.category_names)
        self._states: list[list[Any]] = []

    def __repr__(self) -> str:
        return f"RamDetector(game={self.spec.name!r})"

    def reset(self, index: int | None = None) -> None:
        """Forget the object state of batch position ``index`` (all when None)."""
        if index is None:
            self._states.clear()
        elif 0 <= index < len(self._states):
            self._states[index] = self._extract.init_objects(self._game_key, hud=False)

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        """Read the objects of N envs from their RAM; ``frames`` is only validated."""
        frames = validate_frames(frames)
        if rams is None:
            raise FrameFormatError(
                "RamDetector reads objects from RAM: pass rams, a uint8 array of shape "
                f"({frames.shape[0]}, 128), e.g. env.unwrapped.ale.getRAM()[None]"
            )
        rams = validate_rams(rams, frames.shape[0])
        while len(self._states) < len(rams):
            self._states.append(self._extract.init_objects(self._game_key, hud=False))
        out: list[list[Detection]] = []
        for i, ram in enumerate(rams):
            objects = self._states[i]
            self._extract.detect_objects_ram(objects, ram, self._game_key, False)
            out.append(self._to_detections(objects, self._undrawn(ram)))
        return out

    def _undrawn(self, ram: np.ndarray) -> frozenset[int]:
        """Positions in OCAtari's object list of objects that this frame does not draw."""
        if self._game_key == "Asterix":
            # OCAtari's list: player, then each lane's reward (1..8), enemy (9..16) and
            # consumable (17..24). An emptied lane draws nothing (measured: no pixel lit in
            # 1225 of 1231 such lane-steps), yet OCAtari keeps its enemy or consumable.
            return frozenset(k + lane for lane in range(8) if ram[18 - lane] == 11 for k in (9, 17))
        return frozenset()

    def _to_detections(self, objects: list[Any], undrawn: frozenset[int] = frozenset()) -> list[Detection]:
        found: list[Detection] = []
        for k, obj in enumerate(objects):
            # OCAtari marks empty slots with a falsy NoObject placeholder.
            if not obj or k in undrawn or obj.category not in self._keep or getattr(obj, "hud", False):
                continue
            x, y, w, h = (float(v) for v in obj.xywh)
            found.append(Detection(obj.category, x, y, w, h, score=1.0))
        return found
