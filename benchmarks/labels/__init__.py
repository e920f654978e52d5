"""Benchmarks of ``info["labels"]`` against RAM, label by label (``moc-envs bench labels``:
:mod:`benchmarks.labels.accuracy`; ``moc-envs bench hud``: :mod:`benchmarks.labels.hud`)."""

from __future__ import annotations

import argparse

from benchmarks.common import add_common_args

__all__ = ["DEFAULT_GAMES", "play_parser"]

DEFAULT_GAMES = (
    "Pong", "Boxing", "Breakout", "SpaceInvaders", "Seaquest", "MsPacman",
    "Freeway", "Tennis", "Skiing", "Asterix", "Carnival",
)  # fmt: skip
"""Every shipped game."""


def play_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options both label benchmarks take: the common ones, games, steps and runs of held-out
    play (seeds from 1000: the fitting commands use seeds below it)."""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_args(p)
    p.set_defaults(seed=1000)
    p.add_argument("--games", nargs="+", default=list(DEFAULT_GAMES), help="games to measure")
    p.add_argument("--steps", type=int, default=1000, help="steps of each play")
    p.add_argument("--runs", type=int, default=2, help="plays per game (seeds seed, seed + 1, ...)")
    return p
