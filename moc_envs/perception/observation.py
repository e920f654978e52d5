"""Building the slot observation, info payloads and labels from one step's detections.

This is the per-frame half of the env: it holds the tracker of one env and
knows nothing about detection, so a vector env can detect all its frames in one
batched call and then hand each env's detections to that env's builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from gymnasium import spaces

from moc_envs.games import GameSpec
from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH, Detection
from moc_envs.perception.labels import labels_from_detections, labels_from_ram
from moc_envs.perception.tracking import SlotTracker

if TYPE_CHECKING:
    from moc_envs.hud.reader import HudReader
    from moc_envs.readouts.registry import ReadoutSet

__all__ = [
    "FEATURES",
    "ObsMode",
    "OBS_MODES",
    "check_obs_mode",
    "feature_names",
    "objects_space",
    "observation_space",
    "ObjectObservationBuilder",
]

FEATURES = ("present", "x", "y", "w", "h", "dx", "dy")
"""Columns of the object observation, one row per slot."""

ObsMode = Literal["objects", "objects+frame", "flat"]
OBS_MODES: tuple[str, ...] = ("objects", "objects+frame", "flat")
"""``objects``: Box (n_slots, 7); ``objects+frame``: Dict adding the RGB frame; ``flat``: the
objects as one 1-D Box (n_slots * 7,), row-major, for MLP policies (SB3's ``MlpPolicy`` and
``check_env`` expect a flat vector); :func:`feature_names` names its entries."""

# Positions may leave the frame a little (sprites entering at the border,
# OCAtari boxes with negative x), so x and y get a margin; all columns are
# clipped to these bounds so that observations always lie in the space.
_LOW = np.array([0.0, -0.5, -0.5, 0.0, 0.0, -1.0, -1.0], dtype=np.float32)
_HIGH = np.array([1.0, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0], dtype=np.float32)
_SCALE = np.array(
    [FRAME_WIDTH, FRAME_HEIGHT, FRAME_WIDTH, FRAME_HEIGHT, FRAME_WIDTH, FRAME_HEIGHT],
    dtype=np.float64,
)


def check_obs_mode(obs_mode: str) -> ObsMode:
    """Return ``obs_mode`` if supported, else raise ValueError listing the choices."""
    if obs_mode not in OBS_MODES:
        raise ValueError(f"Unknown obs_mode {obs_mode!r}; expected one of {', '.join(OBS_MODES)}")
    return obs_mode  # type: ignore[return-value]


def objects_space(spec: GameSpec) -> spaces.Box:
    """Box(float32) of shape (n_slots, 7): present, x/160, y/210, w/160, h/210, dx/160, dy/210."""
    n = spec.n_slots
    return spaces.Box(low=np.tile(_LOW, (n, 1)), high=np.tile(_HIGH, (n, 1)), dtype=np.float32)


def feature_names(spec: GameSpec) -> tuple[str, ...]:
    """Name of every entry of the ``flat`` observation, e.g. ``"Ball0.x"``, ``"Player0.present"``.

    Entry ``k`` is row ``k // 7`` (a slot, named by its category and index within the
    category) and column ``k % 7`` of the ``objects`` observation (:data:`FEATURES`).
    """
    return tuple(
        f"{category}{i}.{feature}"
        for category, rows in spec.slot_ranges.items()
        for i in range(len(rows))
        for feature in FEATURES
    )


def observation_space(spec: GameSpec, obs_mode: str) -> spaces.Space:
    """The env's observation space for ``obs_mode``."""
    mode = check_obs_mode(obs_mode)
    if mode == "objects":
        return objects_space(spec)
    if mode == "flat":
        box = objects_space(spec)
        return spaces.Box(low=box.low.ravel(), high=box.high.ravel(), dtype=np.float32)
    frame = spaces.Box(0, 255, (FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)
    return spaces.Dict({"objects": objects_space(spec), "frame": frame})


class ObjectObservationBuilder:
    """Per-env state that turns each step's detections into observation and info."""

    def __init__(
        self,
        spec: GameSpec,
        obs_mode: str = "objects",
        ram_labels: bool = False,
        max_distance: float = 40.0,
        max_age: int = 30,
        coast: int = 0,
        hud: HudReader | None = None,
        readouts: ReadoutSet | None = None,
        game_mode: int | None = None,
    ) -> None:
        """``hud``: the learned HUD reader of the detector's weights folder
        (:mod:`moc_envs.hud.reader`), whose labels (scores, lives, clocks, bars) ``info["labels"]``
        gains from each step's frame; None reads none. ``readouts``: the folder's readouts
        (:mod:`moc_envs.readouts`), copied for this env (they may keep state across steps) and set
        up for its ALE ``game_mode`` (None: made without ``mode=``; some bytes depend on it)."""
        self.spec = spec
        self.hud = hud.fresh() if hud is not None else None  # its own memory of earlier steps
        self.readouts = readouts.fresh(game_mode) if readouts is not None else None
        self.obs_mode = check_obs_mode(obs_mode)
        self.ram_labels = bool(ram_labels)
        self.tracker = SlotTracker(spec, max_distance=max_distance, max_age=max_age, coast=coast)
        self.objects: list[Detection] = []
        """Detections of the latest step, with slots."""

    def reset(self) -> None:
        """Forget tracked slots (episode start)."""
        self.tracker.reset()
        self.objects = []
        if self.readouts is not None:
            self.readouts.reset()
        if self.hud is not None:
            self.hud.reset()

    def object_array(self) -> np.ndarray:
        """The (n_slots, 7) float32 observation of the tracker's current state."""
        t = self.tracker
        shown, boxes = t.shown()
        obs = np.zeros((self.spec.n_slots, len(FEATURES)), dtype=np.float64)
        obs[:, 0] = shown
        obs[:, 1:5] = boxes / _SCALE[:4]
        obs[:, 5:7] = t.velocity / _SCALE[4:]
        obs[~shown] = 0.0
        return np.clip(obs, _LOW, _HIGH).astype(np.float32)

    def update(
        self,
        detections: Sequence[Detection],
        frame: np.ndarray | None = None,
        ram: np.ndarray | None = None,
        screen: np.ndarray | None = None,
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, object]]:
        """Track one step's detections; return the observation and the info entries.

        ``frame`` is required for ``obs_mode="objects+frame"``, ``ram`` for
        ``ram_labels=True``. Labels read the tracked boxes (each in its slot) and, where a
        label link needs it (``mirror``), the frame; with a HUD reader, the HUD labels it can
        read in ``frame`` are added (none without a frame). ``screen``: the frame the
        ``objects+frame`` observation carries when it is not ``frame`` (the env's frame with its
        distractor bars, where ``frame`` is the one the bar filter cleaned for the readouts).
        """
        self.objects = self.tracker.update(detections)
        # Labels read the boxes the observation shows (each in its slot).
        labels = labels_from_detections(self.spec, self.objects, tracked=True, frame=frame)
        if self.hud is not None and frame is not None:
            labels.update(self.hud.read(frame))
        if self.readouts is not None:
            labels.update(self.readouts.read(self.objects, frame))
        info: dict[str, object] = {"objects": list(self.objects), "labels": labels}
        if self.ram_labels:
            if ram is None:
                raise ValueError("ram_labels=True needs the step's RAM")
            info["ram_labels"] = labels_from_ram(self.spec, ram)
        objects = self.object_array()
        if self.obs_mode == "objects":
            return objects, info
        if self.obs_mode == "flat":
            return objects.ravel(), info
        if frame is None:
            raise ValueError("obs_mode='objects+frame' needs the step's frame")
        shown = frame if screen is None else screen
        return {"objects": objects, "frame": np.array(shown, dtype=np.uint8, copy=True)}, info
