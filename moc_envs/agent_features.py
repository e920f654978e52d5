"""What an agent's network reads of the flat object observation: slots as they are, or relative.

The env's flat observation (``obs_mode="flat"``) holds each tracked slot's ``present, x, y, w, h,
dx, dy`` in the tracker's slot order (:mod:`moc_envs.perception.observation`). A slot keeps an
object while it is tracked, but which car of Freeway's ten sits in which slot changes as they
leave and re-enter, so a small MLP must compare every slot's position with the player's to find
the one that matters. Object-centric agents that do well (SCoBots) read relations instead.

``features="relative"`` rewrites each observation, with no per-game rule beyond what
:class:`~moc_envs.games.GameSpec` already says of the player (its ``player_x`` / ``player_y``
label link: category and region):

- a first row, the player (the anchor), its position absolute;
- then every slot, category by category in the game's order, each object's box position as
  seen from the player's (``x - player x``, ``y - player y``, in the same units), size and
  velocity as they are; the player's own slot reads as absent (zeros); within a category of
  several slots, present objects come first, nearest to the player (centre to centre, in frame
  pixels) first, absent ones last as zeros.

``features="relative_screen"`` is the same but orders each category's present objects as they lie
on the screen (box centre top to bottom, then left to right) instead of nearest first: an object
then keeps its row while the player moves (Freeway's ten cars, one to a lane, always in lane
order), at the cost of a row that says nothing of how near the object is.

When no player is found on a step, the anchor row is zeros and positions are absolute (as seen
from the frame's origin); the anchor's ``present`` entry says so. ``"slots"`` is the identity.
The relative observation has one row more than the env's: ``(n_slots + 1) * 7`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moc_envs.games import GameSpec, get_game
from moc_envs.perception.observation import FEATURES

__all__ = [
    "FEATURE_SETS",
    "RELATIVE_SETS",
    "RelativeLayout",
    "layout_for",
    "relative_layout",
    "feature_count",
    "apply_features",
    "feature_set_names",
]

FEATURE_SETS: tuple[str, ...] = ("slots", "relative", "relative_screen")
"""The observations an agent can read: ``slots`` (the env's, unchanged), ``relative`` or
``relative_screen``."""

RELATIVE_SETS: tuple[str, ...] = ("relative", "relative_screen")
"""The feature sets that read objects from the player's position (they need a layout)."""

_F = len(FEATURES)
_W, _H = 160.0, 210.0  # frame pixels per unit of the observation's x and y


@dataclass(frozen=True)
class RelativeLayout:
    """Where the player is looked for and how slots are regrouped, for one game."""

    game: str
    n_slots: int
    candidates: np.ndarray
    """Slots that may hold the player, in order (its label link's categories)."""
    region: tuple[int, float, float] | None
    """``(axis, lo, hi)``: the player's box centre on ``axis`` (0: x, 1: y), in frame pixels, lies
    in ``[lo, hi)`` (Freeway's left chicken, Tennis' near court side); None: the first present."""
    groups: tuple[np.ndarray, ...]
    """Slot indexes of each category in the game's order."""
    sorted_groups: tuple[bool, ...]
    """Whether a group is sorted by distance to the player (categories of several slots)."""


def relative_layout(game: str | GameSpec) -> RelativeLayout:
    """The :class:`RelativeLayout` of ``game``; ValueError when its spec names no player."""
    spec = game if isinstance(game, GameSpec) else get_game(game)
    link = next((lk for name in ("player_x", "player_y") for lk in spec.label_links if lk.label == name), None)
    if link is None:
        raise ValueError(
            f"features='relative' reads objects from the player's position; {spec.name} has no player_x "
            "or player_y label link to find the player by: use features='slots'"
        )
    ranges = spec.slot_ranges
    cats = (link.category,) if isinstance(link.category, str) else tuple(link.category)
    candidates = np.array([s for c in cats for s in ranges[c]], dtype=np.int64)
    region = None
    if link.region is not None:
        axis, lo, hi = link.region
        region = (0 if axis == "x" else 1, float(lo), float(hi))
    groups = tuple(np.array(list(r), dtype=np.int64) for r in ranges.values())
    return RelativeLayout(spec.name, spec.n_slots, candidates, region, groups, tuple(len(g) > 1 for g in groups))


def layout_for(features: str, game: str | GameSpec) -> RelativeLayout | None:
    """The layout ``features`` needs for ``game``: None for ``slots``; ValueError for an unknown set."""
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {', '.join(FEATURE_SETS)}, got {features!r}")
    return relative_layout(game) if features in RELATIVE_SETS else None


def _anchors(obs: np.ndarray, layout: RelativeLayout) -> np.ndarray:
    """Per observation (N, n_slots, 7), the player's slot, -1 where none is present."""
    cand = obs[:, layout.candidates]  # (N, K, 7)
    ok = cand[:, :, 0] > 0.5
    if layout.region is not None:
        axis, lo, hi = layout.region
        scale = _W if axis == 0 else _H
        centre = (cand[:, :, 1 + axis] + cand[:, :, 3 + axis] / 2) * scale
        ok &= (centre >= lo) & (centre < hi)
    first = np.argmax(ok, axis=1)
    return np.where(ok.any(axis=1), layout.candidates[first], -1)


def feature_count(features: str, n_slots: int) -> int:
    """Entries per observation that ``features`` gives for a game of ``n_slots`` slots."""
    return (n_slots + (1 if features in RELATIVE_SETS else 0)) * _F


def apply_features(obs: np.ndarray, features: str, layout: RelativeLayout | None) -> np.ndarray:
    """``obs`` (N, n_slots * 7) or (n_slots * 7,) as ``features`` reads it, float32.

    ``"slots"`` returns it as it is; ``"relative"`` and ``"relative_screen"`` (``layout``:
    :func:`relative_layout` of the observation's game) return (N, (n_slots + 1) * 7): the player's
    row, then every slot's.
    """
    if features == "slots":
        return np.asarray(obs, dtype=np.float32)
    if features not in RELATIVE_SETS or layout is None:
        raise ValueError(f"features must be one of {FEATURE_SETS} (a relative one with a layout), got {features!r}")
    x = np.asarray(obs, dtype=np.float64)
    n_in = layout.n_slots * _F
    if x.ndim not in (1, 2) or x.shape[-1] != n_in:
        raise ValueError(f"expected flat observations of {n_in} entries ({layout.game}), got shape {x.shape}")
    slots = x.reshape(-1, layout.n_slots, _F)
    n = slots.shape[0]
    anchor = _anchors(slots, layout)
    player = np.where((anchor >= 0)[:, None], slots[np.arange(n), np.maximum(anchor, 0)], 0.0)
    origin = player[:, 1:3]  # the player's box corner; zeros without one
    centre = (player[:, 1:3] + player[:, 3:5] / 2) * (_W, _H)
    out = np.zeros((n, layout.n_slots + 1, _F))
    out[:, 0] = player
    row = 1
    for group, sort in zip(layout.groups, layout.sorted_groups, strict=True):
        members = slots[:, group]  # (N, G, 7)
        # The player's own slot is in row 0: here it reads as absent.
        present = (members[:, :, 0] > 0.5) & (group[None, :] != anchor[:, None])
        rel = members.copy()
        rel[:, :, 1:3] -= origin[:, None, :]
        rel[~present] = 0.0
        if sort:
            c = (members[:, :, 1:3] + members[:, :, 3:5] / 2) * (_W, _H)
            if features == "relative":
                d = c - centre[:, None, :]
                key = np.hypot(d[..., 0], d[..., 1])
            else:  # screen order: rows first; x < 1000 frame pixels breaks ties within a row
                key = c[..., 1] * 1000.0 + c[..., 0]
            key = np.where(present, key, np.inf)
            rel = np.take_along_axis(rel, np.argsort(key, axis=1, kind="stable")[:, :, None], axis=1)
        out[:, row : row + len(group)] = rel
        row += len(group)
    flat = out.reshape(n, -1).astype(np.float32)
    return flat[0] if x.ndim == 1 else flat


def feature_set_names(feature_names: tuple[str, ...] | list[str], features: str, layout: RelativeLayout | None) -> list[str]:
    """Names of the entries ``features`` gives, from the env's flat ``feature_names``."""
    if features == "slots" or layout is None:
        return list(feature_names)
    spec = get_game(layout.game)
    names = [f"player.{f}" for f in FEATURES]
    rank_name = "nearest" if features == "relative" else "screen"
    for cat, group in zip(spec.category_names, layout.groups, strict=True):
        for rank in range(len(group)):
            label = f"{cat}.{rank_name}{rank}" if len(group) > 1 else cat
            names += [f"{label}.{f}" for f in FEATURES]
    return names
