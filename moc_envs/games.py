"""The game registry: one immutable spec per supported Atari game.

Each :class:`GameSpec` holds what the rest of the package needs to know about a
game and nothing else: its ALE id, the moving (non-HUD) object categories with
their slot counts (OCAtari's category names), the AtariARI RAM label table (our
own extension of it for Asterix and Carnival), and how detected boxes map to
localisation labels.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from moc_envs.errors import UnknownGameError

__all__ = [
    "LabelKind",
    "CategorySpec",
    "RamLabel",
    "LabelLink",
    "GameSpec",
    "GAMES",
    "get_game",
    "game_names",
    "TENNIS_NET_Y",
]

LabelKind = Literal["agent", "small", "other", "score", "misc"]
"""AtariARI label categories: agent loc (A), small object loc (S), other loc (O),
score/clock/lives/display (SC), miscellaneous (M)."""


@dataclass(frozen=True)
class CategorySpec:
    """A moving object category and how many observation slots it gets."""

    name: str
    slots: int


@dataclass(frozen=True)
class RamLabel:
    """One AtariARI label: its name, the RAM byte it reads, and its kind."""

    name: str
    index: int
    kind: LabelKind


@dataclass(frozen=True)
class LabelLink:
    """How one localisation label (AtariARI's, or our extension's) follows from a detected box.

    ``ram_value = scale * pixel + offset`` where ``pixel`` is the box's top-left
    ``x`` or ``y`` (``axis``). The box is picked among the detections whose
    category is ``category`` (one name, or several names when the RAM byte
    follows whichever of them sits in ``region``, e.g. Tennis' upper player):

    - ``region = (axis, lo, hi)`` keeps only boxes whose centre on that axis
      lies in ``[lo, hi)`` (a Freeway lane, one side of the Tennis net);
    - ``instance`` then indexes the remaining boxes ordered top to bottom, then
      left to right.

    Detections that carry observation slots (the tracker's output, what
    ``info["objects"]`` holds) are read as the observation shows them: only boxes
    in a slot count, so a link on a one-slot category reads that slot's box, and
    a spurious second box of the category (slot -1) is never read.

    ``clip = (border, nominal)`` handles sprites that the playfield border cuts
    (OCAtari clips Pong's paddles at the top wall): a box that starts at or
    before ``border`` on ``axis`` and is shorter than ``nominal`` pixels there is
    anchored on its far edge, ``pixel = start + extent - nominal``, because its
    visible top no longer moves with the RAM byte.

    ``wrap`` is the period of a RAM byte that counts around the screen (Freeway's
    car x runs 0..159 and a car crossing the edge is drawn at the other side):
    the estimate is taken modulo ``wrap``, so a sprite drawn at x = 157 reads 0,
    not 160.

    ``mirror = (shift, width)`` is for a sprite ``width`` px wide that turns
    round by being drawn mirrored, its pixels then starting ``shift`` px further
    right (Tennis' players: racket on the left or the right). Given the frame,
    an x link reads a box tight on such a sprite ``shift`` px further left when
    the sprite's top row lies right of the box's centre
    (:func:`moc_envs.perception.labels.mirrored_start`).

    ``category_offsets`` adds a further offset for boxes of the named categories,
    where a link reads several that are drawn differently (Asterix's consumables
    sit 1 px right of their lane's byte, enemies and rewards on it).

    ``reach = (width, categories)`` is for a sprite ``width`` px wide that stretches out toward
    another object (Boxing's boxers punch their opponent): a box wider than ``width`` + 1 reaches
    toward the nearest box of ``categories`` (given the step's other detections), so an x link
    reads the body at the box's far edge, ``pixel = x + w - width``, when that box lies left of
    this one's centre; otherwise the box is read as it is.

    ``frame_error`` (RAM units, 0 for none) says how far the frame itself can
    leave the label from the byte, whatever the detector and offset: the game
    draws the object at a coarser step than the byte (Pong's paddle only on
    even rows), draws it before the byte moves on within a step (some Freeway
    cars), or moves the sprite's edge with its pose or heading (Skiing's skier,
    Asterix's enemies). Such a label is exact only part of the time; within
    ``frame_error`` is the most any estimate from boxes can promise.
    """

    label: str
    category: str | tuple[str, ...]
    axis: Literal["x", "y"]
    offset: float
    scale: float = 1.0
    instance: int = 0
    region: tuple[Literal["x", "y"], float, float] | None = None
    clip: tuple[float, float] | None = None
    wrap: int | None = None
    mirror: tuple[float, float] | None = None
    frame_error: int = 0
    category_offsets: tuple[tuple[str, float], ...] = ()
    reach: tuple[float, tuple[str, ...]] | None = None

    @property
    def categories(self) -> tuple[str, ...]:
        """The category names this link reads from."""
        return (self.category,) if isinstance(self.category, str) else tuple(self.category)


@dataclass(frozen=True)
class GameSpec:
    """Everything moc_envs knows about one game. Immutable: one per game.

    ``ram_labels`` is AtariARI's RAM annotation table for the nine games it covers. Asterix
    and Carnival, which AtariARI does not annotate, carry moc_envs' own extension in the same
    style (``atariari=False``): positions, score, lives or ammo, with the RAM bytes that
    OCAtari's RAM mode reads.
    """

    name: str
    ale_id: str
    categories: tuple[CategorySpec, ...]
    ram_labels: tuple[RamLabel, ...] = ()
    label_links: tuple[LabelLink, ...] = ()
    # Motion boxes larger than this (w, h) in frame pixels are flashes or
    # scrolling artefacts, not objects; the dataset builder splits or drops them.
    max_object_size: tuple[int, int] = (40, 60)
    # Rows of the ALE screen. Carnival's is 214; every frame handed to a
    # detector is cropped to the top 210 rows (Carnival's last 4 are a static
    # border), so boxes keep OCAtari's coordinates.
    screen_height: int = 210
    # Whether some objects are drawn on alternate emulator frames only: the env and the dataset
    # then hand the detector the maximum of the last two frames (moc_envs.perception.frames).
    flicker: bool = False
    # Whether ram_labels is AtariARI's table for this game (names and RAM indexes as
    # atariari/benchmark/ram_annotations.py). False: moc_envs' own extension in the
    # same style, for games AtariARI does not annotate (Asterix, Carnival).
    atariari: bool = True

    @property
    def category_names(self) -> tuple[str, ...]:
        """Names of the moving categories, in slot order."""
        return tuple(c.name for c in self.categories)

    @property
    def n_slots(self) -> int:
        """Total number of observation slots over all categories."""
        return sum(c.slots for c in self.categories)

    @property
    def slot_ranges(self) -> dict[str, range]:
        """For each category, the range of observation rows it owns."""
        out: dict[str, range] = {}
        start = 0
        for c in self.categories:
            out[c.name] = range(start, start + c.slots)
            start += c.slots
        return out

    @property
    def ram_label_names(self) -> tuple[str, ...]:
        """Names of the game's RAM labels: AtariARI's, or moc_envs' extension where ``atariari`` is False."""
        return tuple(lab.name for lab in self.ram_labels)

    @property
    def localization_labels(self) -> tuple[str, ...]:
        """Labels that ``info["labels"]`` estimates from detected objects."""
        return tuple(link.label for link in self.label_links)

    def with_label_offsets(self, offsets: Mapping[str, float]) -> GameSpec:
        """This spec with the ``offset`` of the named label links replaced.

        A learned detector's boxes can sit a pixel off the OCAtari boxes the links were fitted
        on; its weights folder then carries offsets fitted for it (``labels.json``,
        :mod:`trainers.evaluate.label_offsets`). Unknown label names or non-finite offsets raise ValueError.
        """
        known = set(self.localization_labels)
        unknown = sorted(set(offsets) - known)
        if unknown:
            raise ValueError(
                f"{self.name} has no label links named {unknown}; expected some of {sorted(known)}"
            )
        bad = {k: v for k, v in offsets.items() if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)}
        if bad:
            raise ValueError(f"label offsets must be finite numbers, got {bad}")
        links = tuple(
            replace(link, offset=float(offsets[link.label])) if link.label in offsets else link
            for link in self.label_links
        )
        return replace(self, label_links=links)


def _cats(**slots: int) -> tuple[CategorySpec, ...]:
    return tuple(CategorySpec(name, n) for name, n in slots.items())


def _labels(*rows: tuple[str, int, LabelKind]) -> tuple[RamLabel, ...]:
    return tuple(RamLabel(name, index, kind) for name, index, kind in rows)


TENNIS_NET_Y = 110.0
"""Frame y (pixels) of the Tennis net: an object centred above it is on the upper court (measured)."""

# RAM indexes and kinds: the AtariARI tables (see ../shared/spec/labels-and-probing.md).
# Pixel offsets: OCAtari's RAM-mode object positions, inverted.
_SPECS: tuple[GameSpec, ...] = (
    GameSpec(
        name="Pong",
        ale_id="ALE/Pong-v5",
        categories=_cats(Player=1, Enemy=1, Ball=1),
        ram_labels=_labels(
            ("enemy_score", 13, "score"),
            ("player_score", 14, "score"),
            ("enemy_x", 45, "other"),
            ("player_x", 46, "agent"),
            ("ball_x", 49, "small"),
            ("enemy_y", 50, "other"),
            ("player_y", 51, "agent"),
            ("ball_y", 54, "small"),
        ),
        label_links=(
            # Paddles slide under the top wall: anchor on the bottom edge there. The
            # player's paddle is drawn on even rows only (top = byte - 13 or - 14).
            LabelLink("player_y", "Player", "y", 13, clip=(34, 15), frame_error=1),
            LabelLink("enemy_y", "Enemy", "y", 15, clip=(34, 15)),
            LabelLink("ball_x", "Ball", "x", 49),
            LabelLink("ball_y", "Ball", "y", 14),
            # The paddles never move sideways: RAM 45 / 46 hold 64 / 188 all game, their
            # columns (x 16 / 140) plus the 48 of the horizontal-position counter (measured).
            LabelLink("enemy_x", "Enemy", "x", 48),
            LabelLink("player_x", "Player", "x", 48),
        ),
        max_object_size=(12, 40),
    ),
    GameSpec(
        name="Boxing",
        ale_id="ALE/Boxing-v5",
        categories=_cats(Player=1, Enemy=1),
        ram_labels=_labels(
            ("clock", 17, "score"),
            ("player_score", 18, "score"),
            ("enemy_score", 19, "score"),
            ("player_x", 32, "agent"),
            ("enemy_x", 33, "other"),
            ("player_y", 34, "agent"),
            ("enemy_y", 35, "other"),
        ),
        label_links=(
            # A punch stretches the boxer's box toward the other boxer: the body is 15 px wide
            # (the boxes' mode on random play) and is read at the far edge of a wider box.
            LabelLink("player_x", "Player", "x", -5, reach=(15.0, ("Enemy",))),
            LabelLink("player_y", "Player", "y", -38),
            LabelLink("enemy_x", "Enemy", "x", -4, reach=(15.0, ("Player",))),
            LabelLink("enemy_y", "Enemy", "y", -38),
        ),
        max_object_size=(48, 64),
    ),
    GameSpec(
        name="Skiing",
        ale_id="ALE/Skiing-v5",
        categories=_cats(Player=1, Tree=6, Mogul=3, Flag=4),
        ram_labels=_labels(
            ("player_x", 25, "agent"),
            *((f"object_y_{i}", 87 + i, "other") for i in range(7)),
            ("clock_m", 104, "score"),
            ("clock_s", 105, "score"),
            ("clock_ms", 106, "score"),
            ("score", 107, "score"),
        ),
        # The skier's sprite starts 0, 1 or 2 px right of the byte with its pose
        # (RAM 15, measured): a box alone cannot tell which.
        label_links=(LabelLink("player_x", "Player", "x", 0, frame_error=1),),
        max_object_size=(40, 60),
    ),
    GameSpec(
        name="Freeway",
        ale_id="ALE/Freeway-v5",
        categories=_cats(Chicken=2, Car=10),
        ram_labels=_labels(
            ("player_y", 14, "agent"),
            ("score", 103, "score"),
            *((f"enemy_car_x_{i}", 108 + i, "other") for i in range(10)),
        ),
        # The player's chicken walks the left lane; car lane i (top to bottom,
        # y = 27 + 16 i) is AtariARI's enemy_car_x_(9 - i). A car is drawn at
        # x = byte - 3 modulo 160: bytes 0..2 put it at the right edge, and
        # columns 0..7 are the black HMOVE bar, under which a car entering or
        # leaving on the left is cut to its visible part (8 px wide in full).
        # Lanes 0..4 are drawn before their byte moves on in the step's last
        # emulator frame: cars 9 and 7 (moving on 1 frame in 5 and in 3) read
        # one pixel ahead on some steps whatever the offset (measured).
        label_links=(
            LabelLink("player_y", "Chicken", "y", 193, scale=-1.0, region=("x", 0, 76)),
            *(
                LabelLink(
                    f"enemy_car_x_{9 - i}",
                    "Car",
                    "x",
                    3,
                    region=("y", 24 + 16 * i, 40 + 16 * i),
                    clip=(8, 8),
                    wrap=160,
                    frame_error=1 if i < 5 else 0,
                )
                for i in range(10)
            ),
        ),
        max_object_size=(24, 24),
    ),
    GameSpec(
        name="Breakout",
        ale_id="ALE/Breakout-v5",
        categories=_cats(Player=1, Ball=1),
        ram_labels=_labels(
            *((f"block_bit_map_{i}", i, "misc") for i in range(30)),
            ("player_x", 72, "agent"),
            ("blocks_hit_count", 77, "misc"),
            ("score", 84, "score"),
            ("ball_x", 99, "small"),
            ("ball_y", 101, "small"),
        ),
        label_links=(
            LabelLink("player_x", "Player", "x", 47),
            LabelLink("ball_x", "Ball", "x", 49),
            LabelLink("ball_y", "Ball", "y", -9),
        ),
        max_object_size=(24, 16),
    ),
    GameSpec(
        name="SpaceInvaders",
        ale_id="ALE/SpaceInvaders-v5",
        categories=_cats(Player=1, Bullet=3, Satellite=1, Alien=36),
        ram_labels=_labels(
            ("missiles_y", 9, "small"),
            ("invaders_left_count", 17, "misc"),
            ("enemies_y", 24, "other"),
            ("enemies_x", 26, "other"),
            ("player_x", 28, "agent"),
            ("num_lives", 73, "score"),
            ("player_score", 104, "score"),
        ),
        label_links=(LabelLink("player_x", "Player", "x", 1),),
        max_object_size=(20, 20),
        # Shots drawn on alternate frames: 42.0% of the true shots visible in the last frame, 98.1%
        # in the max of the last two (benchmarks/results/flicker.md).
        flicker=True,
    ),
    GameSpec(
        name="MsPacman",
        ale_id="ALE/MsPacman-v5",
        categories=_cats(Player=1, Ghost=4, Fruit=1),
        ram_labels=_labels(
            ("enemy_sue_x", 6, "other"),
            ("enemy_inky_x", 7, "other"),
            ("enemy_pinky_x", 8, "other"),
            ("enemy_blinky_x", 9, "other"),
            ("player_x", 10, "agent"),
            ("fruit_x", 11, "other"),
            ("enemy_sue_y", 12, "other"),
            ("enemy_inky_y", 13, "other"),
            ("enemy_pinky_y", 14, "other"),
            ("enemy_blinky_y", 15, "other"),
            ("player_y", 16, "agent"),
            ("fruit_y", 17, "other"),
            ("ghosts_count", 19, "misc"),
            ("player_direction", 56, "misc"),
            ("dots_eaten_count", 119, "misc"),
            ("player_score", 120, "score"),
            ("num_lives", 123, "score"),
        ),
        label_links=(
            LabelLink("player_x", "Player", "x", 13),
            LabelLink("player_y", "Player", "y", -1),
        ),
        max_object_size=(16, 20),
        # Ghosts drawn on alternate frames: 93.7% of the true ghosts visible in the last frame,
        # 98.1% in the max of the last two (benchmarks/results/flicker.md).
        flicker=True,
    ),
    GameSpec(
        name="Tennis",
        ale_id="ALE/Tennis-v5",
        categories=_cats(Player=1, Enemy=1, Ball=1, BallShadow=1),
        ram_labels=_labels(
            ("ball_x", 16, "small"),
            ("ball_y", 17, "small"),
            ("player_y", 24, "agent"),
            ("enemy_y", 25, "other"),
            ("player_x", 26, "agent"),
            ("enemy_x", 27, "other"),
            ("player_score", 69, "score"),
            ("enemy_score", 70, "score"),
        ),
        # RAM 26/24 hold whoever plays the upper court and 27/25 the lower one
        # (the sides swap between sets), so the links pick a player by court. A
        # player (12 px wide) is drawn mirrored with the racket on the left, 4 px
        # further right (measured).
        label_links=(
            LabelLink("player_x", ("Player", "Enemy"), "x", 1, region=("y", -100, TENNIS_NET_Y), mirror=(4, 12)),
            LabelLink(
                "player_y",
                ("Player", "Enemy"),
                "y",
                166,
                scale=-1.0,
                region=("y", -100, TENNIS_NET_Y),
            ),
            LabelLink("enemy_x", ("Player", "Enemy"), "x", 1, region=("y", TENNIS_NET_Y, 400), mirror=(4, 12)),
            LabelLink(
                "enemy_y", ("Player", "Enemy"), "y", 166, scale=-1.0, region=("y", TENNIS_NET_Y, 400)
            ),
            LabelLink("ball_x", "Ball", "x", 2),
        ),
        max_object_size=(20, 40),
    ),
    GameSpec(
        name="Seaquest",
        ale_id="ALE/Seaquest-v5",
        categories=_cats(
            Player=1,
            Shark=12,
            Submarine=12,
            Diver=4,
            EnemyMissile=4,
            SurfaceSubmarine=1,
            PlayerMissile=1,
        ),
        ram_labels=_labels(
            *((f"enemy_obstacle_x_{i}", 30 + i, "other") for i in range(4)),
            ("score_0", 57, "score"),
            ("score_1", 58, "score"),
            ("num_lives", 59, "score"),
            ("divers_collected_count", 62, "score"),
            ("player_x", 70, "agent"),
            *((f"diver_or_enemy_missile_x_{i}", 71 + i, "small") for i in range(4)),
            ("player_direction", 86, "misc"),
            ("player_missile_direction", 87, "misc"),
            ("player_y", 97, "agent"),
            ("oxygen_meter_value", 102, "score"),
            ("player_missile_x", 103, "small"),
        ),
        label_links=(
            LabelLink("player_x", "Player", "x", 0),
            LabelLink("player_y", "Player", "y", -33),
            LabelLink("player_missile_x", "PlayerMissile", "x", 0),
        ),
        max_object_size=(24, 16),
    ),
    # Asterix and Carnival are not in AtariARI: their labels are moc_envs' own
    # extension in AtariARI's style, the RAM bytes read off OCAtari's RAM mode.
    GameSpec(
        name="Asterix",
        ale_id="ALE/Asterix-v5",
        categories=_cats(Player=1, Enemy=8, Reward=8, Consumable=8),
        ram_labels=_labels(
            ("player_y", 39, "agent"),
            ("player_x", 41, "agent"),
            *((f"lane_object_x_{i}", 42 + i, "other") for i in range(8)),
            ("num_lives", 83, "score"),
            ("score_0", 94, "score"),
            ("score_1", 95, "score"),
            ("score_2", 96, "score"),
        ),
        # player_y is the lane (0 top .. 7), drawn at y = 26 + 16 lane; lane i's
        # enemy, reward or consumable sits in the same band. Consumables are drawn
        # 1 px right of the byte, enemies 1 px right when they walk left (measured).
        label_links=(
            LabelLink("player_x", "Player", "x", 0),
            LabelLink("player_y", "Player", "y", -26 / 16, scale=1 / 16),
            *(
                LabelLink(
                    f"lane_object_x_{i}",
                    ("Enemy", "Reward", "Consumable"),
                    "x",
                    0,
                    region=("y", 24 + 16 * i, 40 + 16 * i),
                    category_offsets=(("Consumable", -1.0),),
                    frame_error=1,
                )
                for i in range(8)
            ),
        ),
        max_object_size=(20, 20),
        atariari=False,
    ),
    GameSpec(
        name="Carnival",
        ale_id="ALE/Carnival-v5",
        categories=_cats(
            Player=1,
            PlayerMissile=1,
            Wheel=1,
            Rabbit=6,
            Duck=6,
            Owl=6,
            FlyingDuck=6,
            ExtraBullets=6,
        ),
        ram_labels=_labels(
            ("flying_duck_y", 1, "other"),
            ("player_x", 2, "agent"),
            ("ammo_count", 3, "score"),
            *((f"target_x_{i}", 18 + i, "other") for i in range(6)),
            ("level", 42, "misc"),
            ("score_0", 45, "score"),
            ("score_1", 46, "score"),
            ("player_missile_y", 55, "small"),
            ("flying_duck_x", 111, "other"),
        ),
        # The gallery's target bytes are two groups a row, each the leftmost of up
        # to three targets, so a box has no byte of its own: no links for them.
        label_links=(
            LabelLink("player_x", "Player", "x", 4),
            LabelLink("flying_duck_x", "FlyingDuck", "x", 4),
            LabelLink("flying_duck_y", "FlyingDuck", "y", -108),
        ),
        max_object_size=(20, 20),
        screen_height=214,
        atariari=False,
    ),
)

GAMES: dict[str, GameSpec] = {spec.name: spec for spec in _SPECS}
"""All supported games by name (``"Pong"``, ``"Boxing"``, ...)."""


def game_names() -> tuple[str, ...]:
    """Names of all supported games, sorted."""
    return tuple(sorted(GAMES))


def get_game(name: str) -> GameSpec:
    """Look up a game's spec by name (case-insensitive); raise a helpful error if unknown."""
    if name in GAMES:
        return GAMES[name]
    by_lower = {k.lower(): k for k in GAMES}
    if name.lower() in by_lower:
        return GAMES[by_lower[name.lower()]]
    close = difflib.get_close_matches(name, list(GAMES), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownGameError(f"Unknown game '{name}'. Supported: {', '.join(game_names())}.{hint}")
