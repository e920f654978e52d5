"""Each agent game's published anchors, long runs and target (issue 32: Boxing and Freeway beside Pong).

Read by the agents benchmark (:mod:`benchmarks.agents`) and by the shipped agent's card
(:mod:`trainers.agents.evaluate`), so that the published figures are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AgentGame", "AGENT_GAMES", "agent_game"]


@dataclass(frozen=True)
class AgentGame:
    """What one game's agents are measured against: published anchors, the runs, the target."""

    game: str
    anchors: tuple[tuple[str, str, str], ...]
    """(what, score, source); none of these is measured here."""
    lines: dict[str, float]
    """Anchors drawn on the learning curves."""
    runs: tuple[str, ...]
    """The long runs reported (relative to the checkout)."""
    learned_min: float
    """Mean evaluation return the learned-objects agent must reach."""
    gap: float
    """How far below the RAM-oracle agent it may stay: points, or a share of its return."""
    relative: bool
    ylim: tuple[float, float]

    @property
    def anchors_text(self) -> str:
        """The anchors in one line, for a shipped agent's card."""
        return "; ".join(f"{what} {score}" for what, score, _ in self.anchors)

    @property
    def target(self) -> str:
        """The target in words."""
        gap = f"within {self.gap:.0%} of" if self.relative else f"within {self.gap:g} points of"
        return (f"Target: PPO on learned objects scores >= {self.learned_min:+g} mean evaluation return on {self.game} within "
                f"10M frames, {gap} the RAM-oracle agent at the same budget.")


_PUB = "published (SCoBots paper)"
_HUMAN = "published (human baseline of the Atari literature)"
AGENT_GAMES: dict[str, AgentGame] = {
    "Pong": AgentGame(
        game="Pong",
        anchors=(
            ("SCoBots, object-centric agent on RAM objects (OCAtari)", "17.2", _PUB),
            ("Deep PPO on pixels", "16.4", "published (as reported in the SCoBots paper); no pixel PPO was trained to 10M frames here (no GPU)"),
            ("OCAtari object-centric PPO, 10M frames", "0.4-0.66 human-normalised", "published (OCAtari paper)"),
            ("Human", "14.6", _HUMAN),
            ("Random", "-20.7", "published (random baseline of the Atari literature)"),
        ),
        lines={"SCoBots (RAM objects) 17.2": 17.2, "deep PPO, pixels 16.4": 16.4, "human 14.6": 14.6, "random -20.7": -20.7},
        # RAM and learned objects with CleanRL's settings and the faster ones, and the
        # learned-objects run on the detector retrained with colour-split motion targets.
        runs=("runs/agents/pong_ram", "runs/agents/pong_space", "runs/agents/pong_ram_lr7.5e-4_ep8",
              "runs/agents/pong_space_lr7.5e-4_ep8", "runs/agents/pong_space_split"),
        learned_min=15.0, gap=2.0, relative=False, ylim=(-22, 22),
    ),
    "Boxing": AgentGame(
        game="Boxing",
        anchors=(
            ("SCoBots, object-centric agent on RAM objects (OCAtari)", "97.1", _PUB),
            ("Deep PPO on pixels", "90.3", "published (as reported in the SCoBots paper); none trained here (no GPU)"),
            ("OCAtari object-centric PPO, 10M frames", "41-70", "published (OCAtari paper)"),
            ("Human", "12.1", _HUMAN),
        ),
        lines={"SCoBots (RAM objects) 97.1": 97.1, "deep PPO, pixels 90.3": 90.3, "OCAtari object PPO 41-70": 55.5, "human 12.1": 12.1},
        runs=("runs/agents/boxing_ram", "runs/agents/boxing_space", "runs/agents/boxing_space_rel", "runs/agents/boxing_ram_rel"),
        learned_min=80.0, gap=0.05, relative=True, ylim=(-100, 100),
    ),
    "Freeway": AgentGame(
        game="Freeway",
        anchors=(
            ("SCoBots, object-centric agent on RAM objects (OCAtari)", "32.8", _PUB),
            ("Deep PPO on pixels", "33.6", "published (as reported in the SCoBots paper); none trained here (no GPU)"),
            ("OCAtari object-centric PPO, 10M frames", "about 23", "published (OCAtari paper)"),
            ("Human", "29.6", _HUMAN),
        ),
        lines={"SCoBots (RAM objects) 32.8": 32.8, "deep PPO, pixels 33.6": 33.6, "OCAtari object PPO ~23": 23.0, "human 29.6": 29.6},
        runs=("runs/agents/freeway_ram", "runs/agents/freeway_space", "runs/agents/freeway_space_rel",
              "runs/agents/freeway_ram_rel256", "runs/agents/freeway_space_rel256",
              "runs/agents/freeway_ram_screen256", "runs/agents/freeway_space_screen256",
              "runs/agents/freeway_space_rel256_g995"),
        learned_min=30.0, gap=0.05, relative=True, ylim=(0, 35),
    ),
}
"""The games whose agents the benchmark reports (issue 32 added Boxing and Freeway)."""


def agent_game(game: str) -> AgentGame:
    """The :class:`AgentGame` of ``game``; a clear error for a game without one."""
    from moc_envs.games import get_game

    name = get_game(game).name
    if name not in AGENT_GAMES:
        raise ValueError(f"no agent targets or anchors for {name}: expected one of {sorted(AGENT_GAMES)}")
    return AGENT_GAMES[name]
