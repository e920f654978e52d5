"""Play that readouts are fitted and scored on: the learned env's tracked objects and frames, with RAM.

Each step records what the env gives a readout at run time (the tracked detections of
``info["objects"]`` and the RGB frame the detector saw) beside what only fitting may use: the RAM
(all 128 bytes) and the AtariARI labels read from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from moc_envs.games import GameSpec, get_game
from moc_envs.perception.detection import Detection

__all__ = ["Step", "Episode", "HeldActions", "collect_steps", "label_series", "HOLD"]

HOLD = (4, 16)
"""Random actions are held for this many steps (inclusive): play that moves, as a user's agent does."""


class HeldActions:
    """Random actions, each held for :data:`HOLD` steps: ``next()`` gives the step's action."""

    def __init__(self, n_actions: int, seed: int) -> None:
        """Actions ``0 .. n_actions - 1`` from a generator seeded with ``seed``."""
        self.n_actions = int(n_actions)
        self.rng = np.random.default_rng(seed)
        self.action, self.left = 0, 0

    def next(self) -> int:
        """The action of this step: the held one, or a new draw once its time is up."""
        if self.left <= 0:
            self.action = int(self.rng.integers(self.n_actions))
            self.left = int(self.rng.integers(HOLD[0], HOLD[1] + 1))
        self.left -= 1
        return self.action


@dataclass(frozen=True)
class Step:
    """One env step as a readout sees it, and its RAM truth."""

    objects: list[Detection]
    """The tracked detections (``info["objects"]``: each with its slot, -1 outside the slots)."""
    frame: np.ndarray
    """(210, 160, 3) uint8: the frame the detector saw."""
    ram: np.ndarray
    """(128,) uint8: the RAM after the step (fitting only)."""
    truth: dict[str, int]
    """The game's AtariARI labels from that RAM (``info["ram_labels"]``)."""


Episode = list[Step]
"""Consecutive steps of one episode (a stateful readout is fitted and scored in order)."""


def collect_steps(
    game: str | GameSpec,
    weights: str | Path,
    steps: int,
    seed: int,
    threads: int | None = 1,
    progress: bool = True,
) -> list[Episode]:
    """Play ``steps`` steps of the learned env (random actions held :data:`HOLD` steps, ALE v5
    settings, sticky actions included), split into episodes."""
    import gymnasium as gym

    import moc_envs  # noqa: F401  (registers the MOC/ ids)

    spec = game if isinstance(game, GameSpec) else get_game(game)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    env = gym.make(
        f"MOC/{spec.name}-v0", detector="space", weights=str(weights), ram_labels=True,
        obs_mode="objects+frame", threads=threads,
    )  # fmt: skip
    ale = env.unwrapped.ale
    actions = HeldActions(int(env.action_space.n), seed)
    episodes: list[Episode] = [[]]
    try:
        obs, info = env.reset(seed=seed)
        for _ in tqdm(range(steps), desc=f"{spec.name} play (seed {seed})", disable=not progress):
            episodes[-1].append(
                Step(list(info["objects"]), obs["frame"], ale.getRAM().copy(), dict(info["ram_labels"]))
            )
            obs, _, term, trunc, info = env.step(actions.next())
            if term or trunc:
                obs, info = env.reset()
                episodes.append([])
    finally:
        env.close()
    return [e for e in episodes if e]


def label_series(episodes: Sequence[Episode], label: str) -> np.ndarray:
    """(N,) int64: one label's RAM byte at every step, episodes concatenated."""
    return np.array([s.truth[label] for e in episodes for s in e], dtype=np.int64)
