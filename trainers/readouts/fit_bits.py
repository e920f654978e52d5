"""Fit a :class:`~moc_envs.readouts.bits.BitsReadout`: which pixels show each bit of some RAM bytes.

Random play seldom changes most bits of a brick wall (Breakout's top rows stay whole for
thousands of random steps), and a bit that never changes cannot be located. So beside the fitting
play the fitter plays the game once more with its wall *poked*: at the start of each episode and
every few steps (:data:`POKE_EVERY`), each byte of the labels is set to its value at reset with
every bit kept at random (:data:`KEEP`); the frame after the step shows that wall and the RAM after
it is the teacher. RAM is written only here, in fitting; the readout reads frames.

Then, for every bit, the pixels that are lit (not the frame's background colour) on the steps the
bit is set and unlit on the steps it is clear, each on at least :data:`MIN_RECALL` of them, are
that bit's patch; the two farthest apart become its probes (a ball over a gone brick lights one of
them, not both). A bit no pixel shows is drawn nowhere: when the natural play (the episodes passed
in, not the poked one) never changes it, it goes to the byte's constant ``base``; when it does, the
byte cannot be read and its label is left out of the readout (reported by ``log``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.readouts.base import Readout
from moc_envs.readouts.bits import BitsReadout, Probe
from trainers.readouts.data import HOLD, Episode

__all__ = ["KEEP", "MIN_RECALL", "POKE_EVERY", "BitStats", "fit_bits", "poked_play", "bit_stats", "choose_probes"]

KEEP = 0.5
"""Chance that a poke keeps each bit a byte had at reset."""
POKE_EVERY = (8, 32)
"""Steps between pokes (inclusive range, drawn at random)."""
MIN_RECALL = 0.98
"""A pixel shows a bit when it is lit on this share of the steps the bit is set, and unlit on this
share of those it is clear (the ball and the frame a brick is hit leave a few steps off)."""
MIN_EACH = 20
"""Steps a bit must be seen set and clear before its pixels are looked for."""
MIN_SHARE = 0.01
"""Pixels lit on fewer (or unlit on fewer) of the steps are no bit's patch: not worth comparing."""
CHUNK = 512
"""Steps per block of the bit-by-pixel counts."""


def _byte_indexes(spec: GameSpec, labels: Sequence[str]) -> np.ndarray:
    index = {lab.name: lab.index for lab in spec.ram_labels}
    unknown = [lab for lab in labels if lab not in index]
    if unknown or not labels:
        raise ValueError(f"{spec.name} has no RAM labels {unknown}; expected some of {sorted(index)}")
    return np.array([index[lab] for lab in labels], dtype=np.intp)


def poked_play(spec: GameSpec, labels: Sequence[str], steps: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(frame, ram)`` after each of ``steps`` steps of the plain ALE game (v5 settings) played by
    random actions held :data:`HOLD` steps, the labels' bytes poked (module docstring)."""
    from moc_envs.envs.registration import make_ale_env

    idx = _byte_indexes(spec, labels)
    rng = np.random.default_rng(seed)
    env = make_ale_env(spec, frameskip=4, repeat_action_probability=0.25)
    ale = env.unwrapped.ale
    n_actions = int(env.action_space.n)
    try:
        env.reset(seed=seed)
        full = ale.getRAM()[idx].copy()
        action, left, poke = 0, 0, 0
        for _ in range(steps):
            if poke <= 0:
                keep = rng.random((len(idx), 8)) < KEEP
                masks = np.packbits(keep, axis=1, bitorder="little")[:, 0]
                for i, value in zip(idx, full & masks, strict=True):
                    ale.setRAM(int(i), int(value))
                poke = int(rng.integers(POKE_EVERY[0], POKE_EVERY[1] + 1))
            poke -= 1
            if left <= 0:
                action, left = int(rng.integers(n_actions)), int(rng.integers(HOLD[0], HOLD[1] + 1))
            left -= 1
            obs, _, term, trunc, _ = env.step(action)
            yield np.asarray(obs, dtype=np.uint8), ale.getRAM().copy()
            if term or trunc:
                env.reset(seed=int(rng.integers(2**31)))
                full = ale.getRAM()[idx].copy()
                poke = 0
    finally:
        env.close()


@dataclass
class BitStats:
    """Per bit (byte-major, 8 a byte) and compared pixel: how often each is set / lit, and both."""

    n: int
    background: tuple[int, int, int]
    pixels: np.ndarray
    """(P,) flat indexes (``y * 160 + x``) of the pixels compared: lit and unlit often enough."""
    bit_on: np.ndarray
    """(B,) steps each bit is set."""
    pixel_on: np.ndarray
    """(P,) steps each compared pixel is lit."""
    both: np.ndarray
    """(B, P) steps a bit is set and the pixel lit."""

    def recalls(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, P) shares: lit where the bit is set, unlit where it is clear (0 for a bit never set / clear)."""
        on = self.bit_on[:, None].astype(np.float64)
        off = self.n - on
        lit_set = np.divide(self.both, on, out=np.zeros(self.both.shape), where=on > 0)
        unlit_clear = np.divide(off - (self.pixel_on[None, :] - self.both), off, out=np.zeros(self.both.shape), where=off > 0)
        return lit_set, unlit_clear


def _modal_colour(frame: np.ndarray) -> tuple[int, int, int]:
    packed = frame.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1])
    values, counts = np.unique(packed, return_counts=True)
    v = int(values[np.argmax(counts)])
    return (v >> 16 & 255, v >> 8 & 255, v & 255)


def bit_stats(steps: Sequence[tuple[np.ndarray, np.ndarray]], idx: np.ndarray) -> BitStats:
    """Count, over ``(frame, ram)`` steps, how the bits of the RAM bytes ``idx`` and the frame's
    lit pixels go together; lit means not the background (the first frame's commonest colour)."""
    if not steps:
        raise ValueError("bit_stats needs at least one step")
    background = _modal_colour(steps[0][0])
    bg = np.array(background, dtype=np.uint8)
    n = len(steps)
    lit = np.empty((n, 210 * 160 // 8), dtype=np.uint8)  # packed: a full play fits in a few MB
    bits = np.empty((n, len(idx) * 8), dtype=np.uint8)
    for t, (frame, ram) in enumerate(steps):
        lit[t] = np.packbits(np.any(frame != bg, axis=-1).ravel())
        bits[t] = np.unpackbits(ram[idx][:, None], axis=1, bitorder="little").ravel()
    pixel_on = np.zeros(210 * 160, dtype=np.int64)
    for s in range(0, n, CHUNK):
        pixel_on += np.unpackbits(lit[s : s + CHUNK], axis=1).sum(0, dtype=np.int64)
    # Only pixels both lit and unlit often enough can be a bit's patch: compare those alone.
    cols = np.flatnonzero((pixel_on >= MIN_SHARE * n) & (pixel_on <= (1 - MIN_SHARE) * n))
    both = np.zeros((bits.shape[1], len(cols)), dtype=np.float64)
    for s in range(0, n, CHUNK):
        # float32 products of 0/1 blocks of <= CHUNK steps are exact; summed in float64.
        block = np.unpackbits(lit[s : s + CHUNK], axis=1)[:, cols].astype(np.float32)
        both += bits[s : s + CHUNK].T.astype(np.float32) @ block
    return BitStats(n, background, cols, bits.sum(0).astype(np.int64), pixel_on[cols], np.rint(both).astype(np.int64))


def choose_probes(candidates: np.ndarray, count: int = 2) -> list[tuple[int, int]]:
    """``count`` of the flat pixel indexes ``candidates`` as ``(y, x)``, spread out: the pair
    farthest apart (then each next the farthest from those chosen); ties to the first in order."""
    yx = np.stack(np.divmod(np.asarray(candidates, dtype=np.int64), 160), axis=1)
    if len(yx) <= 1:
        return [(int(y), int(x)) for y, x in yx]
    d = ((yx[:, None, :] - yx[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    chosen = [int(i), int(j)]
    while len(chosen) < min(count, len(yx)):
        chosen.append(int(np.argmax(d[:, chosen].min(axis=1))))
    return [(int(yx[k, 0]), int(yx[k, 1])) for k in chosen]


def fit_bits(
    spec: GameSpec,
    episodes: Sequence[Episode],
    labels: Sequence[str],
    poke_steps: int = 3000,
    seed: int = 0,
    probes_per_bit: int = 2,
    margin: int = 1,
    log: Callable[[str], None] | None = print,
) -> list[Readout]:
    """One :class:`BitsReadout` for the ``labels`` that can be read (module docstring), fitted on
    the natural ``episodes`` and a poked play of ``poke_steps`` steps (seed ``seed``); an empty
    list when none can."""
    idx = _byte_indexes(spec, labels)
    natural = [(s.frame, s.ram) for e in episodes for s in e]
    steps = natural + list(poked_play(spec, labels, poke_steps, seed))
    stats = bit_stats(steps, idx)
    lit_set, unlit_clear = stats.recalls()
    nat_bits = (
        np.unpackbits(np.stack([r[idx] for _, r in natural])[:, :, None], axis=2, bitorder="little")
        if natural else np.zeros((0, len(idx), 8), dtype=np.uint8)
    )  # fmt: skip
    kept, bases, probes = [], [], []
    for i, lab in enumerate(labels):
        base, why = 0, None
        rows: list[Probe] = []
        for b in range(8):
            k = 8 * i + b
            seen = stats.bit_on[k] >= MIN_EACH and stats.n - stats.bit_on[k] >= MIN_EACH
            shown = stats.pixels[(lit_set[k] >= MIN_RECALL) & (unlit_clear[k] >= MIN_RECALL)] if seen else stats.pixels[:0]
            if len(shown):
                for y, x in choose_probes(shown, probes_per_bit):
                    rows.append((b, y, x, stats.background))
                continue
            values = np.unique(nat_bits[:, i, b])
            if len(values) > 1:
                why = f"bit {b} changes in play but no pixel shows it"
                break
            # Drawn nowhere and constant in play (or never seen in play: the poked value at reset).
            if len(values) == 1 and values[0]:
                base |= 1 << b
        if why is None and not rows:
            why = "no bit is drawn"
        if why is not None:
            if log is not None:
                log(f"{spec.name} {lab}: left out ({why})")
            continue
        kept.append(lab)
        bases.append(base)
        probes.append(rows)
    if not kept:
        return []
    # The game's moving objects hide probes; a detector's boxes on the wall itself do not.
    readout = BitsReadout(spec, kept, bases, probes, tuple(spec.slot_ranges), margin=margin)
    if log is not None and natural:
        log(f"{spec.name} bits: {len(kept)} of {len(labels)} labels, "
            f"{sum(len(p) for p in probes)} probes; fit play exact {_exact_share(readout, episodes, kept, idx, labels):.4f}")  # fmt: skip
    return [readout]


def _exact_share(readout: BitsReadout, episodes: Sequence[Episode], kept: list[str], idx: np.ndarray, labels: Sequence[str]) -> float:
    """Share of (step, label) readings of the natural play equal to the RAM byte (given ones only)."""
    where = {lab: int(idx[list(labels).index(lab)]) for lab in kept}
    right = total = 0
    for e in episodes:
        for s in e:
            for lab, v in readout.read(s.objects, s.frame).items():
                total += 1
                right += int(v == s.ram[where[lab]])
    return right / total if total else float("nan")
