"""Policies that play the game while the dataset builder records frames.

A policy is anything with ``__call__(frame) -> action`` taking the RGB frame
(210, 160, 3) uint8 the env just returned. :class:`RandomPolicy` is the MOC
default; :class:`SB3Policy` plays a saved Stable-Baselines3 model so that later
game states can be reached. Builders create one policy per chunk through
:func:`make_policy` with a chunk-specific seed, which keeps builds deterministic
and resumable.

An SB3 model is read without unpickling (:mod:`trainers.data.sb3_zip`): SB3's own ``load``
would run whatever code a doctored zip carries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

__all__ = ["Policy", "RandomPolicy", "SB3Policy", "make_policy", "policy_name"]


@runtime_checkable
class Policy(Protocol):
    """Maps the current RGB frame to a discrete action."""

    def __call__(self, frame: np.ndarray) -> int:
        """Action for ``frame`` (210, 160, 3) uint8."""
        ...


class RandomPolicy:
    """Uniformly random actions from a seeded generator."""

    def __init__(self, n_actions: int, seed: int | None = None) -> None:
        """Draw actions in ``range(n_actions)`` from ``numpy.random.default_rng(seed)``."""
        if n_actions < 1:
            raise ValueError(f"n_actions must be positive, got {n_actions}")
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def __call__(self, frame: np.ndarray) -> int:
        """A random action; the frame is ignored."""
        return int(self.rng.integers(self.n_actions))


class SB3Policy:
    """A saved Stable-Baselines3 model (``.zip``) playing from raw frames.

    Models trained on raw frames (observation (210, 160, 3)) get the frame as is;
    models trained with SB3's Atari preprocessing get 84x84 grayscale frames,
    stacked as their observation space says (channel-last or channel-first).
    The zip is read by :func:`trainers.data.sb3_zip.load_sb3_zip` (PPO, A2C or DQN with
    SB3's MlpPolicy or CnnPolicy), which unpickles nothing; actions are drawn from
    the policy with this policy's own seeded generator, so a build is reproducible.
    """

    def __init__(
        self, path: str | Path, algo: str = "PPO", seed: int | None = None, epsilon: float = 0.0
    ) -> None:
        """Rebuild the ``algo`` policy saved in ``path``; act randomly with prob. ``epsilon``."""
        from trainers.data.sb3_zip import load_sb3_zip

        self.model = load_sb3_zip(path, algo)
        self.rng = np.random.default_rng(seed)
        self.epsilon = epsilon
        shape = tuple(self.model.observation_space.shape)
        self.raw = shape == (210, 160, 3)
        if not self.raw and (len(shape) != 3 or sorted(shape)[1:] != [84, 84]):
            raise ValueError(
                f"SB3 policy {path} was trained on observations of shape {shape}; expected raw "
                "frames (210, 160, 3) or stacked 84x84 grayscale frames (84, 84, k) / (k, 84, 84)"
            )
        self.channel_first = not self.raw and shape[0] < shape[-1]
        self.stack = 1 if self.raw else (shape[0] if self.channel_first else shape[-1])
        self.frames: deque[np.ndarray] = deque(maxlen=self.stack)
        self.n_actions = self.model.n_actions

    def __call__(self, frame: np.ndarray) -> int:
        """The model's action for the latest frames (epsilon-greedy if configured)."""
        if self.raw:
            obs = frame
        else:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            small = cv2.resize(gray, (84, 84), interpolation=cv2.INTER_AREA)
            if not self.frames:
                self.frames.extend([small] * self.stack)
            self.frames.append(small)
            obs = np.stack(self.frames, axis=0 if self.channel_first else -1)
        if self.epsilon and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return self.model.act(obs, self.rng)


def policy_name(policy: str | Callable[[np.ndarray], int]) -> str:
    """A short description of ``policy`` for the dataset's meta.json."""
    return policy if isinstance(policy, str) else type(policy).__name__


def make_policy(
    spec: str | Callable[[np.ndarray], int], n_actions: int, seed: int
) -> Callable[[np.ndarray], int]:
    """Build a policy from ``spec``: ``"random"``, ``"sb3:<ALGO>:<path.zip>"`` or a callable.

    ``<ALGO>`` is PPO, A2C or DQN; the zip is read without unpickling (:class:`SB3Policy`).
    A callable is used as given (its own randomness is then the caller's
    business: determinism under ``seed`` only holds for the string forms).
    """
    if callable(spec):
        return spec
    if spec == "random":
        return RandomPolicy(n_actions, seed)
    if spec.startswith("sb3:"):
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"SB3 policy must be 'sb3:<ALGO>:<path.zip>', got '{spec}'")
        return SB3Policy(parts[2], parts[1], seed=seed)
    raise ValueError(f"Unknown policy '{spec}'. Use 'random', 'sb3:<ALGO>:<path.zip>' or a callable")
