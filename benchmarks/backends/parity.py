"""Runtime parity of ``moc-envs bench backends``: do the CPU runtimes give users the same env?

ONNX Runtime and the frozen TorchScript graph compute the image encoder's outputs to float
rounding, not bit for bit. What a user sees is what counts: each game's learned env is played
on every runtime with the same seed and the same held actions, and each step's observation,
``info["labels"]`` and ``info["objects"]`` (category, slot, box to 0.01 px) are compared with
those of the first runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

__all__ = ["rollout", "runtime_parity"]


def rollout(
    game: str, runtime: str, steps: int, seed: int = 0
) -> list[tuple[np.ndarray, dict[str, Any], list[tuple]]]:
    """Per step of ``game``'s learned env on ``runtime``: the observation, the labels and the
    objects as (category, slot, x, y, w, h) rounded to 0.01 px; actions drawn from ``seed`` and
    held four steps (later game states than single random actions reach)."""
    import moc_envs  # noqa: F401  (registers the ids)

    env = gym.make(f"MOC/{game}-v0", runtime=runtime)
    rng = np.random.default_rng(seed)
    out = []
    try:
        env.reset(seed=seed)
        action = 0
        for t in range(steps):
            if t % 4 == 0:
                action = int(rng.integers(env.action_space.n))
            obs, _, terminated, truncated, info = env.step(action)
            objects = [
                (d.category, d.slot, *(round(v, 2) for v in (d.x, d.y, d.w, d.h)))
                for d in info["objects"]
            ]
            out.append((np.asarray(obs, np.float32), dict(info["labels"]), objects))
            if terminated or truncated:
                env.reset()
    finally:
        env.close()
    return out


def _same_labels(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a
    )


def runtime_parity(
    games: Sequence[str], runtimes: Sequence[str], steps: int, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per game and runtime after the first: steps whose labels, objects or observation
    (beyond 1e-4) differ from the first runtime's, and the largest observation difference."""
    rows = []
    for game in tqdm(games, desc="runtime parity", unit="game"):
        reference = rollout(game, runtimes[0], steps, seed)
        for runtime in runtimes[1:]:
            other = rollout(game, runtime, steps, seed)
            obs_diff = [
                float(np.abs(a[0] - b[0]).max()) for a, b in zip(reference, other, strict=True)
            ]
            rows.append({
                "game": game, "runtime": runtime, "reference": runtimes[0], "steps": steps,
                "labels_differing": sum(not _same_labels(a[1], b[1]) for a, b in zip(reference, other, strict=True)),
                "objects_differing": sum(a[2] != b[2] for a, b in zip(reference, other, strict=True)),
                "obs_differing": sum(d > 1e-4 for d in obs_diff),
                "max_obs_diff": max(obs_diff, default=0.0),
            })  # fmt: skip
    return rows
