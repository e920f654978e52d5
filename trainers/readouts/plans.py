"""Which readouts ``moc-envs readouts`` fits for each game: the labels that label links and the HUD
reader leave, each with the fitter that learns its readout from play."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from moc_envs.games import GameSpec
from moc_envs.readouts.base import Readout
from trainers.readouts.course.fit_course import fit_course
from trainers.readouts.data import Episode
from trainers.readouts.fit_bits import fit_bits
from trainers.readouts.fit_count import fit_setting
from trainers.readouts.fit_direction import fit_direction
from trainers.readouts.fit_dots import fit_dots
from trainers.readouts.fit_formation import fit_formation
from trainers.readouts.fit_height import fit_height
from trainers.readouts.fit_identity import fit_identity
from trainers.readouts.fit_lane import fit_lane, fit_lane_objects
from trainers.readouts.fit_shot import fit_shot

__all__ = ["Fitter", "PLANS", "plan"]

Fitter = Callable[[GameSpec, Sequence[Episode]], list[Readout]]
"""Learns readouts of a game from fitting play (RAM as the teacher)."""

PLANS: dict[str, tuple[Fitter, ...]] = {
    # The brick wall, a bit per half brick (blocks_hit_count is the score's last two digits: the HUD's).
    "Breakout": (partial(fit_bits, labels=tuple(f"block_bit_map_{i}" for i in range(30))),),
}
"""Per game, its fitters, in the order their readouts go to ``readouts.json``."""

# Seaquest: a lane's formation is read from its leading enemy (lane i, bottom first, centred in
# y 133 - 24 i .. 157 - 24 i), its diver or enemy torpedo from its leftmost such box (not a second
# guess at a shark; a torpedo only beside a submarine, not an explosion's debris); the submarine's
# heading from its sprite; the torpedo's byte from the side of the submarine it flies on, else from
# the submarine's sprite (the byte follows its heading).
PLANS["Seaquest"] = (
    lambda spec, eps: [fit_lane(
        spec, eps, [f"enemy_obstacle_x_{i}" for i in range(4)],
        [(133.0 - 24 * i, 157.0 - 24 * i) for i in range(4)], ("Shark", "Submarine"),
    )],  # fmt: skip
    lambda spec, eps: [fit_lane_objects(
        spec, eps, [f"diver_or_enemy_missile_x_{i}" for i in range(4)],
        [(133.0 - 24 * i, 157.0 - 24 * i) for i in range(4)], ("Diver", "EnemyMissile"),
        hidden_by=("Shark", "Submarine"), requires={"EnemyMissile": ("Submarine",)},
    )],  # fmt: skip
    lambda spec, eps: [fit_direction(spec, eps, "player_direction", "Player")],
    lambda spec, eps: [fit_direction(spec, eps, "player_missile_direction", "PlayerMissile", cue="side", reference="Player")],
)
# MsPacman: her heading from the side her mouth opens to (kept while it is shut).
PLANS.setdefault("MsPacman", ())
PLANS["MsPacman"] += (lambda spec, eps: [fit_direction(spec, eps, "player_direction", "Player")],)
# MsPacman: the four ghosts and the fruit by their colours (the detector finds the fruit as a
# ghost), the dots eaten from the dots the maze still shows; ghosts_count (RAM 19) from the env's
# game mode, which fixes it (3 in mode 0, whatever the frame shows).
_MSPACMAN_GHOSTS = ("sue", "inky", "pinky", "blinky")
PLANS["MsPacman"] += (
    lambda spec, eps: [fit_identity(
        spec, eps, [f"enemy_{g}" for g in _MSPACMAN_GHOSTS] + ["fruit"],
        [(f"enemy_{g}_x", f"enemy_{g}_y") for g in _MSPACMAN_GHOSTS] + [("fruit_x", "fruit_y")], ("Ghost", "Fruit"),
    )],  # fmt: skip
    lambda spec, eps: [fit_dots(spec, eps, "dots_eaten_count")],
    lambda spec, eps: [fit_setting(spec, eps, "ghosts_count")],
)
# SpaceInvaders: the invaders' formation: its anchor (leftmost live column), level and live count.
PLANS["SpaceInvaders"] = (
    lambda spec, eps: [fit_formation(spec, eps, ["Alien"], "enemies_x", "enemies_y", "invaders_left_count")],
    # The player's shot (seldom boxed): a thin line rising in the frame, its byte from its row.
    lambda spec, eps: [fit_shot(spec, eps, "missiles_y")],
)
# Tennis: the ball's height above the court (RAM 17), from the rows between the ball and its shadow.
PLANS["Tennis"] = (lambda spec, eps: [fit_height(spec, eps, "ball_y")],)
# Skiing: the seven lowest course objects (RAM 87..93, slot 6 the lowest), found in the frame by
# their colours (the detector misses some), ordered from the bottom.
PLANS["Skiing"] = (lambda spec, eps: [fit_course(spec, eps, [f"object_y_{i}" for i in range(7)])],)


def plan(game: str) -> tuple[Fitter, ...]:
    """The fitters of ``game``; ValueError when it has none."""
    fitters = PLANS.get(game)
    if not fitters:
        raise ValueError(f"{game} has no readouts to fit; games with some: {sorted(PLANS)}")
    return fitters
