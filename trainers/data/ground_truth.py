"""Ground-truth objects from OCAtari's RAM mode, for evaluation only.

:class:`RamGroundTruth` wraps OCAtari's per-game RAM extraction
(``detect_objects_ram``) so that it runs on the RAM of our own ALE env, step by
step, beside the frames the dataset stores. The extraction is stateful (some
games keep object lists between frames), so it must see every step of an episode
in order, warm-up included. Training never imports this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from moc_envs.perception.ram_detector import import_ocatari

__all__ = ["GTObject", "RamGroundTruth", "ocatari_game_name", "vision_step"]


@dataclass(frozen=True)
class GTObject:
    """One OCAtari object in one frame: box in 210x160 frame pixels, top-left."""

    instance: int
    """Index of the object in OCAtari's object list (stable within an episode)."""
    category: str
    x: float
    y: float
    w: float
    h: float
    hud: bool
    moved: bool
    """The box differs from the previous frame's, or the object just appeared."""


def ocatari_game_name(ale_id: str) -> str:
    """OCAtari's game name for an ALE id: ``"ALE/Pong-v5"`` -> ``"Pong"``."""
    return ale_id.split("/")[-1].split("-")[0]


def vision_step(detect: Callable[..., Any], objects: list[Any], frame: np.ndarray, game: str, hud: bool) -> bool:
    """Update OCAtari's vision-mode ``objects`` in place from one frame; False when vision refused it.

    ``detect`` is OCAtari's ``detect_objects_vision``. Its per-game code raises ValueError when it
    finds more objects of a class than its list holds (SpaceInvaders' satellite drawn as two
    boxes in later waves), and its Seaquest HUD code raises IndexError on a frame with no lives
    left drawn; such a frame counts as vision finding nothing, and the caller should
    count it, so that a baseline's failure shows in the table instead of ending the run. The
    list may be left half-updated; the next frame's call overwrites every position it reports.
    """
    try:
        detect(objects, frame, game, hud)
    except (ValueError, IndexError):
        return False
    return True


class RamGroundTruth:
    """Per-step OCAtari RAM extraction with a ``moved`` flag per object."""

    def __init__(self, game: str, hud: bool = True) -> None:
        """Prepare the extractor for OCAtari game ``game`` (e.g. ``"Pong"``)."""
        ram = import_ocatari("ocatari.ram.extract_ram_info")  # a clear error without OCAtari
        try:
            importlib.import_module(f"ocatari.ram.{game.lower()}")
        except ModuleNotFoundError as err:
            raise ValueError(f"OCAtari has no RAM extraction for game '{game}'") from err
        detect_objects_ram, init_objects = ram.detect_objects_ram, ram.init_objects

        self.game = game
        self.hud = hud
        self._detect = detect_objects_ram
        self._init = init_objects
        self._objects: list = []
        self._prev: dict[int, tuple[str, tuple[float, ...]]] = {}
        self.reset()

    def reset(self) -> None:
        """Start a new episode: fresh OCAtari objects, no previous boxes."""
        self._objects = self._init(self.game, self.hud)
        self._prev = {}

    def __call__(self, ram: np.ndarray) -> list[GTObject]:
        """Objects present after the step whose RAM is ``ram`` (128 uint8)."""
        self._detect(self._objects, ram, self.game, self.hud)
        out: list[GTObject] = []
        prev = self._prev
        self._prev = {}
        for i, obj in enumerate(self._objects):
            if not obj:  # OCAtari's NoObject (or None) is falsy
                continue
            x, y, w, h = (float(v) for v in obj.xywh)
            if w <= 0 or h <= 0:
                continue
            cat = obj.category
            box = (x, y, w, h)
            before = prev.get(i)
            moved = before is None or before[0] != cat or before[1] != box
            self._prev[i] = (cat, box)
            out.append(GTObject(i, cat, x, y, w, h, bool(getattr(obj, "hud", False)), moved))
        return out
