"""Fitting a clock's lead: the amount its byte runs ahead of the value drawn, from the steps before.

Skiing draws its hundredths one emulator frame late, and the clock adds 5 hundredths every 3
frames (1 or 2 a frame), so after a 4-frame step the byte is 1 or 2 above the drawn value and no
rule on one frame reads it right more often than about two times in three. Where the clock is in
its 3-frame cycle shows in how the drawn value moved over the last two steps (7 then 7, 7 then 6,
6 then 7 hundredths), so a table from those two changes to the lead reads it
(:class:`moc_envs.hud.fields.LeadTracker`). :func:`fit_lead` counts, over the fitting plays in step
order, the lead seen after each pair of changes and keeps the commonest per pair;
:func:`score_lead` reads held-out plays as the env does (episode by episode).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from moc_envs.hud.fields import HudField, LeadTracker, drawn_value, number_value
from moc_envs.hud.glyphs import GlyphAlphabet

__all__ = ["MIN_LEAD_COUNT", "byte_value", "fit_lead", "score_lead"]

MIN_LEAD_COUNT = 3
"""A pair of changes enters the table only when the fitting plays showed it this often."""


def byte_value(field: HudField, byte: int) -> int | None:
    """The decimal value a byte holds in the field's base (BCD: one nibble a digit), None when
    it is no such number."""
    if field.base == 16:
        hi, lo = byte >> 4, byte & 15
        return hi * 10 + lo if hi <= 9 and lo <= 9 else None
    return byte


def fit_lead(
    field: HudField, rows: Sequence[Sequence[int]], alphabet: GlyphAlphabet, byte: np.ndarray,
    resets: np.ndarray | None, min_count: int = MIN_LEAD_COUNT,
) -> HudField | None:  # fmt: skip
    """``field`` as a plain number (scale 1, bias 0) with the lead table the fitting steps show
    (module docstring), or None when the layout has no fixed number of digits or no pair of
    changes was seen ``min_count`` times. ``rows``: each step's glyph ids; ``resets``: the episode
    ended after this step."""
    if field.kind != "number" or not field.digits or field.scale != 1:
        return None
    plain = replace(field, bias=0, table=(), unread=(), lead=())
    modulus = 10**plain.digits
    resets = np.zeros(len(byte), bool) if resets is None else resets
    votes: defaultdict[tuple[int, int], Counter[int]] = defaultdict(Counter)
    drawn: list[int] = []
    for r, b, end in zip(rows, byte.tolist(), resets.tolist(), strict=True):
        value = number_value(plain, [alphabet.names[i] for i in r]) if r and -1 not in r else None
        if value is None:
            drawn = []
        else:
            drawn = [*drawn[-2:], value]
            held = byte_value(plain, int(b))
            if len(drawn) == 3 and held is not None:
                key = ((drawn[2] - drawn[1]) % modulus, (drawn[1] - drawn[0]) % modulus)
                votes[key][(held - value) % modulus] += 1
        if end:
            drawn = []
    lead = tuple((key, c.most_common(1)[0][0]) for key, c in sorted(votes.items()) if sum(c.values()) >= min_count)
    return replace(plain, lead=lead) if lead else None


def score_lead(
    field: HudField, alphabet: GlyphAlphabet, crops: np.ndarray, byte: np.ndarray, resets: np.ndarray | None
) -> dict[str, Any]:
    """How the env reads ``crops`` (in step order, episodes split by ``resets``) with the lead
    field: the figures of :func:`trainers.hud.fit.score_reading`."""
    resets = np.zeros(len(crops), bool) if resets is None else resets
    tracker = LeadTracker(field)
    cache: dict[bytes, int | None] = {}
    given = right = 0
    for crop, b, end in zip(crops, byte.tolist(), resets.tolist(), strict=True):
        k = crop.tobytes()
        if k not in cache:
            cache[k] = drawn_value(field, crop, alphabet)
        got = tracker.step(cache[k])
        if got is not None:
            given += 1
            right += int(got == b)
        if end:
            tracker.reset()
    return {"steps": len(crops), "given": given, "right": right, "wrong": given - right,
            "coverage": given / max(len(crops), 1), "exact": right / given if given else float("nan")}  # fmt: skip
