"""Scripted RAM-reading policies that reach later game states than random play.

They read the RAM oracle's objects (or RAM bytes) of the current step, so they
are evaluation tools only: the detection benchmark uses them to see frames a
random agent rarely produces (long Pong rallies, Boxing clinches, Skiing runs
down the slope, a Freeway chicken in the upper lanes, a Breakout wall with
holes, Tennis rallies, SpaceInvaders and Carnival with their targets shot away, Ms. Pac-Man
away from her start, Seaquest's submarine in deeper water, Asterix collecting in his lanes).
Each policy acts randomly with probability ``epsilon`` so that runs
differ by seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from moc_envs.games import TENNIS_NET_Y
from moc_envs.perception.detection import Detection

__all__ = ["ScriptedPolicy", "SCRIPTED", "scripted_policy"]

ScriptedPolicy = Callable[[np.ndarray, Sequence[Detection]], int]
"""(ram (128,) uint8, this step's RAM-oracle objects) -> action."""


def _find(objects: Sequence[Detection], category: str) -> list[Detection]:
    return [o for o in objects if o.category == category]


def _paddle_to_ball(objects: Sequence[Detection], axis: int, dead: float, toward_less: int, toward_more: int) -> int:
    """Move the Player's centre onto the Ball's along ``axis``; FIRE (1) when either is missing."""
    player, ball = _find(objects, "Player"), _find(objects, "Ball")
    if not player or not ball:
        return 1  # FIRE serves / launches a new ball
    delta = ball[0].center[axis] - player[0].center[axis]
    if delta < -dead:
        return toward_less
    if delta > dead:
        return toward_more
    return 0


def _pong(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # RIGHT (2) moves the paddle up, LEFT (3) down.
    return _paddle_to_ball(objects, axis=1, dead=3, toward_less=2, toward_more=3)


_DIRECTIONS = {"": 0, "UP": 2, "RIGHT": 3, "LEFT": 4, "DOWN": 5, "UPRIGHT": 6, "UPLEFT": 7, "DOWNRIGHT": 8, "DOWNLEFT": 9}
"""The 18-action set's movements; the same movement with FIRE is that action + 8 (FIRE alone 1)."""


def _boxing(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Walk to a punching position beside the enemy, then punch.
    player, enemy = _find(objects, "Player"), _find(objects, "Enemy")
    if not player or not enemy:
        return 1
    (px, py), (ex, ey) = player[0].center, enemy[0].center
    dx, dy = ex - px, ey - py
    if abs(dy) < 8 and 20 < abs(dx) < 34:
        return 1  # FIRE
    want_x = dx - np.sign(dx) * 28 if dx else 28.0
    horiz = "RIGHT" if want_x > 2 else "LEFT" if want_x < -2 else ""
    vert = "DOWN" if dy > 3 else "UP" if dy < -3 else ""
    return _DIRECTIONS[vert + horiz]


def _skiing(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Steer toward the middle of the next gate below the skier (RIGHT 1, LEFT 2).
    player = _find(objects, "Player")
    flags = [f for f in _find(objects, "Flag") if player and f.y > player[0].y]
    if not player:
        return 0
    px = player[0].center[0]
    if len(flags) >= 2:
        flags.sort(key=lambda f: f.y)
        top = flags[0].y
        pair = [f for f in flags if abs(f.y - top) < 6][:2]
        target = float(np.mean([f.center[0] for f in pair]))
    elif flags:
        target = flags[0].center[0]
    else:
        target = 80.0
    if target < px - 6:
        return 2
    if target > px + 6:
        return 1
    return 0


def _freeway(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Cross the road (UP 1), waiting (NOOP 0) while a car in the lane just above is about to
    # reach the chicken's column, so that the chicken gets to the upper lanes and scores.
    chicken = [c for c in _find(objects, "Chicken") if c.center[0] < 76]
    if not chicken:
        return 1
    cx, cy = chicken[0].center
    for car in _find(objects, "Car"):
        if 0 < cy - car.center[1] < 16 and abs(car.center[0] - cx) < 14:
            return 0
    return 1


def _breakout(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Keep the paddle under the ball: LEFT (3) and RIGHT (2).
    return _paddle_to_ball(objects, axis=0, dead=4, toward_less=3, toward_more=2)


def _tennis(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Follow the ball's shadow (where the ball is over the court) across, and up or down while
    # it is on the player's side of the net, feet to shadow; swing (FIRE) all along. The sides
    # swap between sets, so the side is read from the player's position.
    player = _find(objects, "Player")
    target = _find(objects, "BallShadow") or _find(objects, "Ball")
    if not player or not target:
        return 1  # FIRE serves
    (px, py), (bx, by) = player[0].center, target[0].center
    dx = bx - px
    same_side = (by < TENNIS_NET_Y) == (py < TENNIS_NET_Y)
    dy = by - (player[0].y + player[0].h) if same_side else 0.0
    move = ("DOWN" if dy > 4 else "UP" if dy < -4 else "") + ("RIGHT" if dx > 3 else "LEFT" if dx < -3 else "")
    return _DIRECTIONS[move] + 8 if move else 1


def _shooter(targets: tuple[str, ...], dead: float) -> ScriptedPolicy:
    """A cannon at the bottom (NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE): slide under the
    target nearest in x, and press FIRE on every other step (Carnival fires on a press, not
    while the button is held)."""
    steps = [0]

    def act(ram: np.ndarray, objects: Sequence[Detection]) -> int:
        steps[0] += 1
        press = steps[0] % 2 == 0
        player = _find(objects, "Player")
        aims = [o for o in objects if o.category in targets]
        if not player or not aims:
            return 1 if press else 0
        px = player[0].center[0]
        dx = min((o.center[0] - px for o in aims), key=abs)
        if dx > dead:
            return 4 if press else 2
        if dx < -dead:
            return 5 if press else 3
        return 1 if press else 0

    return act


def _maze_runner(seed: int = 0) -> ScriptedPolicy:
    """MsPacman (NOOP, UP, RIGHT, LEFT, DOWN, ...): run from the nearest ghost when it is within
    40 px, else hold a heading, and take a new one (a turn, at random) whenever she has not
    moved for two steps or has held it for 12, so that she tours the maze eating pills."""
    headings = (1, 2, 4, 3)  # UP, RIGHT, DOWN, LEFT: a turn is the next or the previous one
    rng = np.random.default_rng(seed)
    state = {"heading": 0, "still": 0, "held": 0, "last": (-1.0, -1.0)}

    def act(ram: np.ndarray, objects: Sequence[Detection]) -> int:
        player = _find(objects, "Player")
        if not player:
            return 0
        px, py = player[0].center
        moved = abs(px - state["last"][0]) + abs(py - state["last"][1]) >= 1
        state["still"] = 0 if moved else state["still"] + 1
        state["last"] = (px, py)
        state["held"] += 1
        if state["still"] >= 2 or state["held"] >= 12:
            state["heading"] = (state["heading"] + int(rng.choice((1, 3)))) % 4
            state["still"] = state["held"] = 0
        ghosts = _find(objects, "Ghost")
        if ghosts:
            near = min(ghosts, key=lambda g: abs(g.center[0] - px) + abs(g.center[1] - py))
            dx, dy = px - near.center[0], py - near.center[1]
            if abs(dx) + abs(dy) < 40:
                if abs(dx) > abs(dy):
                    return 2 if dx > 0 else 3
                return 4 if dy > 0 else 1
        return headings[state["heading"]]

    return act


def _seaquest(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Surface for air when the oxygen meter (RAM 102, full at 64) runs low; otherwise swim to the
    # depth of the nearest shark or submarine, face it and fire.
    player = _find(objects, "Player")
    if not player:
        return 1
    px, py = player[0].center
    if int(ram[102]) < 16:
        return _DIRECTIONS["UP"] + 8
    enemies = [o for o in objects if o.category in ("Shark", "Submarine")]
    if not enemies:
        return _DIRECTIONS["DOWN"] + 8 if py < 60 else 1
    near = min(enemies, key=lambda o: abs(o.center[1] - py) + 0.25 * abs(o.center[0] - px))
    dy = near.center[1] - py
    vert = "DOWN" if dy > 3 else "UP" if dy < -3 else ""
    horiz = "RIGHT" if near.center[0] > px else "LEFT"
    return _DIRECTIONS[vert + horiz] + 8


_ASTERIX_MOVES = {"": 0, "UP": 1, "RIGHT": 2, "LEFT": 3, "DOWN": 4, "UPRIGHT": 5, "UPLEFT": 6, "DOWNRIGHT": 7, "DOWNLEFT": 8}
"""Asterix's 9-action set (no FIRE)."""

_ASTERIX_LANE_PX = 8.0
"""Objects whose centres are within this many rows of the player's share its lane."""


def _asterix(ram: np.ndarray, objects: Sequence[Detection]) -> int:
    # Asterix (NOOP, UP, RIGHT, LEFT, DOWN, UPRIGHT, UPLEFT, DOWNRIGHT, DOWNLEFT): head for the
    # nearest lane with something to collect and no enemy close by; step out of a lane when an
    # enemy comes within 40 px.
    player = _find(objects, "Player")
    if not player:
        return 0
    px, py = player[0].center
    enemies = _find(objects, "Enemy")

    def danger(y: float) -> bool:
        return any(abs(e.center[1] - y) < _ASTERIX_LANE_PX and abs(e.center[0] - px) < 40 for e in enemies)

    goods = [o for o in objects if o.category == "Consumable" and not danger(o.center[1])]
    if danger(py):
        # Away from the enemy's lane: the direction with no enemy in the next lane over.
        up_safe = not danger(py - 2 * _ASTERIX_LANE_PX)
        return 1 if up_safe else 4
    if not goods:
        return 0
    aim = min(goods, key=lambda o: abs(o.center[1] - py) + 0.1 * abs(o.center[0] - px))
    dy, dx = aim.center[1] - py, aim.center[0] - px
    vert = "DOWN" if dy > _ASTERIX_LANE_PX / 2 else "UP" if dy < -_ASTERIX_LANE_PX / 2 else ""
    horiz = "RIGHT" if dx > 4 else "LEFT" if dx < -4 else ""
    return _ASTERIX_MOVES[vert + horiz]


def _stateless(policy: ScriptedPolicy) -> Callable[[int], ScriptedPolicy]:
    return lambda seed: policy


SCRIPTED: dict[str, Callable[[int], ScriptedPolicy]] = {
    "Pong": _stateless(_pong), "Boxing": _stateless(_boxing), "Skiing": _stateless(_skiing),
    "Freeway": _stateless(_freeway), "Breakout": _stateless(_breakout), "Tennis": _stateless(_tennis),
    # Thinned alien waves marching lower; Carnival's rows of targets shot away.
    "SpaceInvaders": lambda seed: _shooter(("Alien", "Satellite"), dead=2),
    "Carnival": lambda seed: _shooter(("Duck", "Rabbit", "Owl", "FlyingDuck", "ExtraBullets"), dead=2),
    # Ms. Pac-Man touring the maze, away from her start, fleeing the ghosts.
    "MsPacman": _maze_runner,
    # Deeper water with divers and enemy waves; Asterix's lanes with objects collected.
    "Seaquest": _stateless(_seaquest), "Asterix": _stateless(_asterix),
}
"""Games with a scripted policy: seed -> a fresh policy (some keep state between steps)."""


def scripted_policy(
    game: str, n_actions: int, seed: int, epsilon: float = 0.1
) -> ScriptedPolicy | None:
    """A fresh scripted policy of the game with epsilon-random actions, or None when it has none."""
    make = SCRIPTED.get(game)
    if make is None:
        return None
    base = make(seed)
    rng = np.random.default_rng(seed)

    def act(ram: np.ndarray, objects: Sequence[Detection]) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(n_actions))
        return base(ram, objects)

    return act
