"""Readouts: the AtariARI labels that one box's position cannot give, estimated from the frame.

A label link (:class:`moc_envs.games.LabelLink`) turns one tracked box into one RAM byte, and the
HUD reader (:mod:`moc_envs.hud`) reads scores, lives and clocks from fixed fields. What is left
needs more: a count of boxes (invaders left), which ghost a box is, which way a sprite faces, a
wall of bricks as bits. A :class:`~moc_envs.readouts.base.Readout` gives such labels from the
step's tracked objects and frame. A weights folder's ``readouts.json`` (fitted from play with RAM
as the teacher by ``moc-envs readouts``, :mod:`trainers.readouts`) holds the game's readouts as
JSON; the env adds what they read to ``info["labels"]``.
"""

from moc_envs.readouts.base import Readout, check_byte, check_keys, check_labels
from moc_envs.readouts.registry import (
    READOUT_KINDS,
    READOUTS_FORMAT,
    READOUTS_JSON,
    ReadoutSet,
    detector_readouts,
    read_readouts,
    readout_from_json,
    save_readouts,
)

__all__ = [
    "READOUTS_FORMAT",
    "READOUTS_JSON",
    "READOUT_KINDS",
    "Readout",
    "ReadoutSet",
    "check_byte",
    "check_keys",
    "check_labels",
    "detector_readouts",
    "read_readouts",
    "readout_from_json",
    "save_readouts",
]
