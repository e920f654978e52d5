"""Fit the readouts that need no position: a :class:`~moc_envs.readouts.count.CountReadout` (the byte
as a count of shown boxes) and a :class:`~moc_envs.readouts.setting.SettingReadout` (the byte each
game mode fixes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.count import CountReadout
from moc_envs.readouts.setting import DEFAULT_MODE, SettingReadout, mode_key
from trainers.readouts.data import Episode, HeldActions, label_series

__all__ = ["fit_count", "fit_setting"]

SCALES = (1.0, -1.0)
"""Slopes tried: a byte that counts the objects up (boxes shown) or down (objects gone)."""


def fit_count(
    spec: GameSpec,
    episodes: Sequence[Episode],
    label: str,
    categories: Sequence[str],
    region: tuple[str, float, float] | None = None,
) -> CountReadout:
    """The slope of :data:`SCALES` and whole bias that make the most counts equal to the byte."""
    truth = label_series(episodes, label)
    probe = CountReadout(spec, label, categories, region=region)
    counts = np.array([probe.count(s.objects) for e in episodes for s in e], dtype=np.int64)
    best: tuple[int, float, float] | None = None
    for scale in SCALES:
        residual = truth - scale * counts
        values, hits = np.unique(residual, return_counts=True)
        bias = float(values[np.argmax(hits)])
        if best is None or hits.max() > best[0]:
            best = (int(hits.max()), scale, bias)
    assert best is not None
    return CountReadout(spec, label, categories, scale=best[1], bias=best[2], region=region)


def fit_setting(
    spec: GameSpec, episodes: Sequence[Episode], label: str, steps: int = 300, seed: int = 0
) -> SettingReadout:
    """The byte of ``label`` in each ALE game mode of the game, from ``steps`` steps of held random
    actions in each (the default mode's from the fitting play ``episodes`` as well).

    A byte that changes within a mode is no setting: ValueError, naming the mode and the values.
    """
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    index = {lab.name: lab.index for lab in spec.ram_labels}[label]
    seen: dict[str, set[int]] = {DEFAULT_MODE: set(label_series(episodes, label).tolist())}
    probe = gym.make(f"ALE/{spec.name}-v5")
    modes: list[int | None] = [None, *(int(m) for m in probe.unwrapped.ale.getAvailableModes())]
    probe.close()
    for k, mode in enumerate(modes):
        env = gym.make(f"ALE/{spec.name}-v5", **({} if mode is None else {"mode": mode}))
        env.reset(seed=seed + k)
        actions = HeldActions(int(env.action_space.n), seed + k)
        values = seen.setdefault(mode_key(mode), set())
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(actions.next())
            values.add(int(env.unwrapped.ale.getRAM()[index]))
            if terminated or truncated:
                env.reset()
        env.close()
    varying = {m: sorted(v) for m, v in seen.items() if len(v) != 1}
    if varying:
        raise ValueError(f"{spec.name} {label} (RAM {index}) changes during play in modes {varying}: not a setting")
    return SettingReadout(spec, label, {m: v.pop() for m, v in seen.items()})
