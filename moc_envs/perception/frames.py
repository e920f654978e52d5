"""The frame a detector sees: the last emulator frame, or the maximum of the last two.

Some games draw some objects only on every other emulator frame (MsPacman's ghosts, the shots
of SpaceInvaders), so at frameskip 4 the last frame alone can miss them, whatever the detector.
``moc-envs bench flicker`` measures it with RAM truth: of MsPacman's true ghosts 93.7% are
visible in the last frame and 98.1% in the pixel-wise maximum of the last two; of
SpaceInvaders' shots 42.0% and 98.1%; the other nine games gain nothing. Games whose :class:`~moc_envs.games.GameSpec`
says ``flicker=True`` therefore run their ALE env one emulator frame at a time under
:class:`MaxOfLastTwoFrames`, which repeats the action ``frameskip`` times (as ALE v5 does inside
one call, sticky actions included) and keeps the maximum of the last two screens; the env, the
vector env and the dataset builder all read frames through :func:`frame_source`, so training
and inference see the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from moc_envs.perception.detection import FRAME_HEIGHT

__all__ = ["MaxOfLastTwoFrames", "frame_source", "screen_of"]


def screen_of(ale: Any) -> np.ndarray:
    """The RGB frame (210, 160, 3) uint8 a detector gets from an ALE interface.

    Taller screens (Carnival, 214 rows) lose their static bottom rows, which keeps OCAtari's
    coordinates.
    """
    return np.ascontiguousarray(ale.getScreenRGB()[:FRAME_HEIGHT])


class MaxOfLastTwoFrames(gym.Wrapper):
    """ALE env made with ``frameskip=1``, stepped ``frameskip`` times per step; frame = max of the last two.

    Rewards are summed over the emulator frames; a step stops early when the episode ends.
    ``obs`` is the pooled screen when the inner env returns RGB frames, else the inner
    observation; :meth:`frame` is the pooled frame cropped to 210 rows.
    """

    def __init__(self, env: gym.Env, frameskip: int = 4) -> None:
        if isinstance(frameskip, bool) or not isinstance(frameskip, int) or frameskip < 1:
            raise ValueError(f"frameskip must be a positive int for a flicker game, got {frameskip!r}")
        inner_skip = getattr(env.unwrapped, "_frameskip", 1)
        if inner_skip != 1:
            raise ValueError(f"MaxOfLastTwoFrames steps one emulator frame at a time: make the env with frameskip=1, got {inner_skip}")
        super().__init__(env)
        self.frameskip = frameskip
        self._ale = env.unwrapped.ale  # type: ignore[attr-defined]
        self._last: np.ndarray = self._ale.getScreenRGB()
        self._pooled: np.ndarray = self._last

    def _maybe_pooled(self, obs: Any) -> Any:
        if isinstance(obs, np.ndarray) and obs.shape == self._pooled.shape:
            return self._pooled.copy()
        return obs

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the game; the first frame has nothing before it to pool with."""
        obs, info = self.env.reset(**kwargs)
        self._last = self._pooled = self._ale.getScreenRGB()
        return self._maybe_pooled(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Repeat ``action`` for ``frameskip`` emulator frames; pool the last two screens."""
        total = 0.0
        previous, current = self._last, self._last
        shape = self._last.shape
        for _ in range(self.frameskip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            # An RGB env's observation is the screen it just read (a fresh copy): reading it a
            # second time cost as much again, four times a step.
            screen = obs if isinstance(obs, np.ndarray) and obs.shape == shape and obs.dtype == np.uint8 else None
            previous, current = current, self._ale.getScreenRGB() if screen is None else screen
            if terminated or truncated:
                break
        self._last = current
        self._pooled = np.maximum(previous, current)
        return self._maybe_pooled(obs), total, terminated, truncated, info

    def frame(self) -> np.ndarray:
        """The pooled RGB frame (210, 160, 3) uint8 of the latest step."""
        return np.ascontiguousarray(self._pooled[:FRAME_HEIGHT])


def frame_source(env: gym.Env) -> Callable[[], np.ndarray]:
    """What hands a detector the current frame of ``env`` (an ALE env, maybe wrapped)."""
    layer: Any = env
    while layer is not None:
        if isinstance(layer, MaxOfLastTwoFrames):
            return layer.frame
        layer = getattr(layer, "env", None)
    ale = env.unwrapped.ale  # type: ignore[attr-defined]
    return lambda: screen_of(ale)
