"""Gameplay for the HUD reader: each HUD label's field of the frame, cut from every step, with its RAM byte.

Where a label is drawn comes from OCAtari's HUD objects (RAM mode, ``hud=True``): each label
of :data:`HUD_SOURCES` names the HUD categories that draw it. A play runs twice with the same
seed and actions: the first pass records the RAM and the HUD boxes (so that each field's
rectangle, the union of its boxes over the play, is known), the second replays the actions
and cuts the fields from the frames the env's detector would see
(:func:`moc_envs.perception.frames.frame_source`: the max of the last two emulator frames for
flicker games), checking that the replay reaches the same RAM on every step.

Policies: ``"held"`` holds a uniformly random action for 4 to 16 steps (random play that
moves), ``"scripted"`` is the game's RAM-reading policy (:mod:`trainers.data.scripted`) with
some random actions, which scores more and so shows more values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from moc_envs.games import GameSpec, get_game

__all__ = [
    "HUD_SOURCES",
    "MARGIN",
    "GROW",
    "PlayPolicy",
    "Play",
    "hud_labels",
    "make_policy",
    "record_play",
    "field_boxes",
    "cut_boxes",
    "cut_fields",
]

PlayPolicy = Literal["held", "scripted"]

HUD_SOURCES: dict[str, dict[str, tuple[str, ...] | tuple[str, tuple[float, float]]]] = {
    "Pong": {"player_score": ("PlayerScore",), "enemy_score": ("EnemyScore",)},
    "Boxing": {"clock": ("Clock",), "player_score": ("PlayerScore",), "enemy_score": ("EnemyScore",)},
    # blocks_hit_count (RAM 77) is the score's last two digits in BCD (bricks are worth 1, 4 or 7), not a count.
    "Breakout": {"score": ("PlayerScore",), "blocks_hit_count": ("PlayerScore",)},
    "SpaceInvaders": {"player_score": ("P1Score",), "num_lives": ("Lives",)},
    "Seaquest": {
        "score_0": ("PlayerScore",),
        "score_1": ("PlayerScore",),
        "num_lives": ("Lives",),
        "divers_collected_count": ("CollectedDiver",),
        "oxygen_meter_value": ("OxygenBar", "OxygenBarDepleted"),
    },
    "MsPacman": {"player_score": ("Score",), "num_lives": ("Life",)},
    # Two Score objects: the left one is the player's chicken (x < 80), the right one the other's.
    "Freeway": {"score": ("Score", (0.0, 80.0))},
    "Tennis": {"player_score": ("PlayerScore",), "enemy_score": ("EnemyScore",)},
    "Skiing": {
        "clock_m": ("Clock",),
        "clock_s": ("Clock",),
        "clock_ms": ("Clock",),
        "score": ("Score",),
    },
    "Asterix": {"score_0": ("Score",), "score_1": ("Score",), "score_2": ("Score",), "num_lives": ("Lives",)},
    "Carnival": {"score_0": ("PlayerScore",), "score_1": ("PlayerScore",), "ammo_count": ("AmmoBar",)},
}
"""Per game, per AtariARI label (our extension's for Asterix and Carnival): the OCAtari HUD
categories that draw its value, optionally with an x range their box centre must lie in."""

MARGIN = 2
"""Pixels added around the union of a label's OCAtari boxes (the field's core: OCAtari's HUD boxes
are not always tight)."""
GROW = 16
"""Columns cut on each side of a core beyond it: room the fit may give a field for values the
play never drew (a score's next digit, a fourth life)."""


def hud_labels(game: str | GameSpec) -> tuple[str, ...]:
    """The labels of ``game`` that its HUD shows (the keys of :data:`HUD_SOURCES`)."""
    spec = game if isinstance(game, GameSpec) else get_game(game)
    return tuple(HUD_SOURCES.get(spec.name, {}))


def _sources(spec: GameSpec, label: str) -> tuple[tuple[str, ...], tuple[float, float] | None]:
    src = HUD_SOURCES[spec.name][label]
    if len(src) == 2 and isinstance(src[1], tuple):
        return (str(src[0]),), src[1]
    return tuple(str(s) for s in src), None


@dataclass
class Play:
    """One recorded play: per step the RAM, and per label the union box of its HUD objects and
    (after :func:`cut_fields`) the field's pixels."""

    game: str
    policy: str
    seed: int
    rams: np.ndarray
    """(N, 128) uint8: the RAM after each step (the step's frame shows it)."""
    actions: np.ndarray
    """(N,) the action taken after each step's frame (replayed by :func:`cut_fields`)."""
    resets: np.ndarray
    """(N,) bool: the episode ended at this step and the env was reset after it."""
    boxes: dict[str, tuple[float, float, float, float] | None]
    """Per label, the union (x0, y0, x1, y1) of its OCAtari HUD boxes over the play (None: never drawn)."""
    crops: dict[str, np.ndarray] = field(default_factory=dict)
    """Per label, (N, h, w, 3) uint8: the field's pixels at every step (:func:`cut_fields`)."""

    def byte(self, spec: GameSpec, label: str) -> np.ndarray:
        """(N,) the label's RAM byte at every step."""
        index = {lab.name: lab.index for lab in spec.ram_labels}[label]
        return self.rams[:, index].astype(np.int64)


def make_policy(policy: PlayPolicy, game: str, n_actions: int, seed: int, epsilon: float = 0.2) -> Callable[[np.ndarray, Sequence[Any]], int]:
    """``(ram, RAM-oracle objects) -> action`` for one play (module docstring)."""
    rng = np.random.default_rng(seed)
    if policy == "scripted":
        from trainers.data.scripted import scripted_policy

        scripted = scripted_policy(game, n_actions, seed, epsilon)
        if scripted is None:
            raise ValueError(f"{game} has no scripted policy; use policy 'held'")
        return scripted
    if policy != "held":
        raise ValueError(f"policy must be 'held' or 'scripted', got {policy!r}")
    state = {"action": 0, "left": 0}

    def act(ram: np.ndarray, objects: Sequence[Any]) -> int:
        if state["left"] <= 0:
            state["action"], state["left"] = int(rng.integers(n_actions)), int(rng.integers(4, 17))
        state["left"] -= 1
        return state["action"]

    return act


def _env(spec: GameSpec) -> Any:
    from moc_envs.envs.registration import make_ale_env

    # ALE v5's defaults, as the env runs the game (sticky actions 0.25, frameskip 4).
    return make_ale_env(spec, frameskip=4, repeat_action_probability=0.25)


def record_play(game: str | GameSpec, steps: int, seed: int, policy: PlayPolicy = "held") -> Play:
    """First pass: play ``steps`` steps, recording RAM, actions and the labels' HUD boxes."""
    from moc_envs.perception.frames import frame_source
    from moc_envs.perception.ram_detector import RamDetector
    from trainers.data.ground_truth import RamGroundTruth, ocatari_game_name

    spec = game if isinstance(game, GameSpec) else get_game(game)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    labels = hud_labels(spec)
    if not labels:
        raise ValueError(f"{spec.name} has no HUD labels to read (trainers.hud.data.HUD_SOURCES)")
    env = _env(spec)
    ale = env.unwrapped.ale
    frame_of = frame_source(env)
    act = make_policy(policy, spec.name, int(env.action_space.n), seed)
    oracle = RamDetector(spec) if policy == "scripted" else None
    truth = RamGroundTruth(ocatari_game_name(spec.ale_id), hud=True)
    union: dict[str, list[float] | None] = dict.fromkeys(labels)
    wanted = {lab: _sources(spec, lab) for lab in labels}
    rams = np.zeros((steps, 128), np.uint8)
    actions = np.zeros(steps, np.int64)
    resets = np.zeros(steps, bool)
    env.reset(seed=seed)
    if oracle is not None:
        oracle.reset(0)
    try:
        for t in range(steps):
            ram = ale.getRAM()
            rams[t] = ram
            try:
                objects = truth(ram)
            except (OverflowError, ValueError, IndexError):
                objects = []  # OCAtari's RAM code raises on a few states: no boxes this step
            for lab, (cats, xr) in wanted.items():
                for o in objects:
                    if not o.hud or o.category not in cats or (xr and not xr[0] <= o.x + o.w / 2 < xr[1]):
                        continue
                    u = union[lab]
                    box = [o.x, o.y, o.x + o.w, o.y + o.h]
                    union[lab] = box if u is None else [min(u[0], box[0]), min(u[1], box[1]), max(u[2], box[2]), max(u[3], box[3])]
            dets = oracle.detect(frame_of()[None], ram[None])[0] if oracle is not None else []
            actions[t] = act(ram, dets)
            _, _, term, trunc, _ = env.step(int(actions[t]))
            if term or trunc:
                resets[t] = True
                env.reset()
                truth.reset()
                if oracle is not None:
                    oracle.reset(0)
    finally:
        env.close()
    return Play(spec.name, policy, seed, rams, actions, resets, {k: None if v is None else tuple(v) for k, v in union.items()})


def field_boxes(plays: Sequence[Play], margin: int = MARGIN) -> dict[str, tuple[int, int, int, int]]:
    """Per label, the union of its HUD boxes over ``plays`` grown by ``margin``, in whole frame pixels."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for play in plays:
        for lab, box in play.boxes.items():
            if box is None:
                continue
            x0, y0 = int(np.floor(box[0])) - margin, int(np.floor(box[1])) - margin
            x1, y1 = int(np.ceil(box[2])) + margin, int(np.ceil(box[3])) + margin
            old = out.get(lab)
            if old is not None:
                x0, y0, x1, y1 = min(old[0], x0), min(old[1], y0), max(old[2], x1), max(old[3], y1)
            out[lab] = (max(x0, 0), max(y0, 0), min(x1, 160), min(y1, 210))
    return out


def cut_boxes(cores: dict[str, tuple[int, int, int, int]], grow: int = GROW) -> dict[str, tuple[int, int, int, int]]:
    """The rectangles :func:`cut_fields` keeps: each core with ``grow`` columns more on each side."""
    return {lab: (max(x0 - grow, 0), y0, min(x1 + grow, 160), y1) for lab, (x0, y0, x1, y1) in cores.items()}


def cut_fields(play: Play, boxes: dict[str, tuple[int, int, int, int]]) -> Play:
    """Second pass: replay ``play`` and keep each label's field (``boxes``) of every frame, in place."""
    from moc_envs.perception.frames import frame_source

    spec = get_game(play.game)
    env = _env(spec)
    ale = env.unwrapped.ale
    frame_of = frame_source(env)
    n = len(play.rams)
    crops = {lab: np.zeros((n, y1 - y0, x1 - x0, 3), np.uint8) for lab, (x0, y0, x1, y1) in boxes.items()}
    env.reset(seed=play.seed)
    try:
        for t in range(n):
            if not np.array_equal(ale.getRAM(), play.rams[t]):
                raise RuntimeError(f"{play.game} replay of seed {play.seed} left the recorded play at step {t}: the emulator is not deterministic here")
            frame = frame_of()
            for lab, (x0, y0, x1, y1) in boxes.items():
                crops[lab][t] = frame[y0:y1, x0:x1]
            env.step(int(play.actions[t]))
            if play.resets[t]:
                env.reset()
    finally:
        env.close()
    play.crops = crops
    return play
