"""The benchmarks' scripted policies reach game states that random play rarely does."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scripted import SCRIPTED, scripted_policy
from moc_envs.frames import frame_source
from moc_envs.games import get_game
from moc_envs.ram_detector import RamDetector
from moc_envs.registration import make_ale_env


def _play(game: str, policy: str, steps: int, seed: int = 0) -> float:
    """Total reward of ``steps`` env steps of the scripted (RAM-oracle objects) or random policy."""
    spec = get_game(game)
    env = make_ale_env(spec)
    ale = env.unwrapped.ale  # type: ignore[attr-defined]
    oracle = RamDetector(spec)
    n_actions = int(env.action_space.n)
    act = scripted_policy(game, n_actions, seed, epsilon=0.0)
    assert act is not None
    rng = np.random.default_rng(seed)
    frame_of = frame_source(env)  # Carnival's 214-row screen cropped as the env does
    env.reset(seed=seed)
    oracle.reset(0)
    total = 0.0
    try:
        for _ in range(steps):
            dets = oracle.detect(frame_of()[None], ale.getRAM()[None])[0]
            action = act(ale.getRAM(), dets) if policy == "scripted" else int(rng.integers(n_actions))
            assert 0 <= action < n_actions
            _, r, term, trunc, _ = env.step(action)
            total += float(r)
            if term or trunc:
                env.reset()
                oracle.reset(0)
    finally:
        env.close()
    return total


@pytest.mark.parametrize("game", ["Freeway", "Breakout", "Tennis", "SpaceInvaders", "Carnival", "MsPacman"])
def test_scripted_policy_outscores_random_play(game: str) -> None:
    assert game in SCRIPTED
    scripted, rand = _play(game, "scripted", 600), _play(game, "random", 600)
    # Freeway: the chicken crosses several times; Breakout: the paddle returns the ball; Tennis:
    # the player returns the ball instead of losing every point.
    assert scripted >= rand + 3, (scripted, rand)


def test_no_scripted_policy_for_an_unscripted_game() -> None:
    assert scripted_policy("Seaquest", 18, seed=0) is None
