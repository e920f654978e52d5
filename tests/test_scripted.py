"""The benchmarks' scripted policies reach game states that random play rarely does."""

from __future__ import annotations

import numpy as np
import pytest

from moc_envs.envs.registration import make_ale_env
from moc_envs.games import game_names, get_game
from moc_envs.perception.detection import Detection
from moc_envs.perception.frames import frame_source
from moc_envs.perception.ram_detector import RamDetector
from trainers.data.scripted import SCRIPTED, scripted_policy


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


@pytest.mark.parametrize(
    "game", ["Freeway", "Breakout", "Tennis", "SpaceInvaders", "Carnival", "MsPacman", "Seaquest", "Asterix"]
)
def test_scripted_policy_outscores_random_play(game: str) -> None:
    assert game in SCRIPTED
    scripted, rand = _play(game, "scripted", 600), _play(game, "random", 600)
    # Freeway: the chicken crosses several times; Breakout: the paddle returns the ball; Tennis:
    # the player returns the ball instead of losing every point; Seaquest's submarine shoots what
    # swims at its depth; Asterix collects objects away from the enemies.
    assert scripted >= rand + 3, (scripted, rand)


def test_every_registered_game_has_one_and_unknown_games_none() -> None:
    assert set(SCRIPTED) == set(game_names())
    assert scripted_policy("NotAGame", 18, seed=0) is None


def test_each_call_builds_a_fresh_policy() -> None:
    # Ms. Pac-Man's runner keeps her heading between steps: two benchmark runs in one process
    # must not share it, so a policy's actions depend only on its own seed and inputs.
    her = [Detection("Player", 80.0 + i % 3, 100.0, 8.0, 10.0) for i in range(40)]
    ram = np.zeros(128, np.uint8)
    alone = scripted_policy("MsPacman", 9, seed=3, epsilon=0.0)
    first = scripted_policy("MsPacman", 9, seed=3, epsilon=0.0)
    second = scripted_policy("MsPacman", 9, seed=3, epsilon=0.0)
    assert alone is not None and first is not None and second is not None
    expected = [alone(ram, [d]) for d in her]
    got = []
    for d in her:
        got.append(first(ram, [d]))
        second(ram, [Detection("Player", 10.0, 10.0, 8.0, 10.0)])  # a run elsewhere in the maze
    assert got == expected
