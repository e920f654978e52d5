"""Fitting a HUD reader from frames and RAM: fields placed, glyphs named, each label's rule chosen held out.

For each HUD label (:data:`trainers.hud.data.HUD_SOURCES`), from the fields cut from the
fitting plays:

1. **Place the field** (:func:`place_field`). Its background is the commonest colour there;
   its rows are the rows of the core (OCAtari's boxes, grown by a margin) that the play ever
   lit, plus one, less a static line across the whole cut (SpaceInvaders' ground); its
   columns are the core's, grown on each side through columns the play never lit (at most
   :data:`~trainers.hud.data.GROW`, never into another label's core): room for a digit or an
   icon the play did not show.
2. **Collect glyphs** (:func:`build_alphabet`). Every field's foreground is cut into glyphs
   (:func:`moc_envs.hud.glyphs.segment`); glyphs seen at least ``min_glyph`` times form the
   game's alphabet, except those that are two or three narrower ones drawn touching (read as
   those). Rarer ones (a sprite crossing the HUD) stay unknown, and a frame showing one is
   refused at run time.
3. **Name the digits** (:func:`search_layouts`). Each label's byte is tried as every number
   layout (:class:`~moc_envs.hud.fields.HudField` ``shift``, ``digits``, ``base``, ``scale``,
   ``bias``): the layout says which digit each drawn glyph should show, so it votes a digit
   for each glyph, and it explains a frame when every glyph there shows its majority digit.
   The layout explaining most frames wins (ties: BCD before the plain number, as Atari games
   store scores, unless another label of the game showed which base it uses). A label that a
   count of icons explains as well is a count, not a number. The winners' votes, pooled over
   the labels, name the glyphs (at least ``min_votes``, 90% agreeing); a glyph seen at many
   places of a field is a sprite crossing it (SpaceInvaders' saucer over a blinking score),
   never a digit, an icon or a lookup key.
4. **Choose the rule.** The best number layout, count of icons (``count + bias``), bar (the
   colour whose column count fits the byte best, with the lengths it misreads listed) and
   lookup table (glyph sequence -> its commonest byte) are scored on the held-out plays as
   the reader reads them, by right minus ``wrong_cost`` times wrong readings (refusing beats
   guessing). A lookup only knows the values the play showed, so a number, count or bar
   right on at least ``structured_exact`` of its readings is kept before it. A number may also
   carry a lead (:mod:`trainers.hud.lead`: a clock drawn behind its byte), scored in step order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from moc_envs.games import GameSpec
from moc_envs.hud.fields import HudField, encode, number_value, read_field
from moc_envs.hud.glyphs import DIGITS, MAX_GLYPH_SIZE, GlyphAlphabet, foreground, segment
from moc_envs.hud.reader import HudReader
from trainers.hud.data import Play
from trainers.hud.lead import fit_lead, score_lead

__all__ = [
    "FieldData",
    "Layout",
    "LAYOUT_SCALES",
    "LAYOUT_BIASES",
    "COUNT_BIASES",
    "place_field",
    "build_alphabet",
    "glyph_ids",
    "mobile_glyphs",
    "search_layouts",
    "score_reading",
    "fit_hud",
]

LAYOUT_SCALES = (1, 2, 4, 5)
"""Scales a number layout may have (Breakout's "score" byte is five times the last digit shown)."""
LAYOUT_BIASES = (-2, -1, 0, 1, 2)
"""Biases a number layout may have (a lives byte one off the digit; a clock drawn a tick late)."""
COUNT_BIASES = (-3, -2, -1, 0, 1, 2, 3)
"""Biases a count may have (Asterix shows one icon fewer than its lives byte)."""
QUIET = 0.001
"""A column lit on at most this share of the frames counts as never lit when growing a field."""
STATIC = 0.99
"""A pixel of the same colour on this share of the frames is static (a line drawn on every frame)."""

Box = tuple[int, int, int, int]


@dataclass
class FieldData:
    """One label's material: where it was cut, its core, and the fitting and held-out crops and bytes."""

    label: str
    cut: Box
    core: Box
    fit_crops: np.ndarray
    fit_bytes: np.ndarray
    val_crops: np.ndarray
    val_bytes: np.ndarray
    box: Box | None = None
    background: tuple[int, int, int] | None = None
    fit_glyphs: list[list[bytes]] = field(default_factory=list)
    fit_resets: np.ndarray | None = None
    """(N,) bool: an episode (or a play) ended after this fitting step (None: never)."""
    val_resets: np.ndarray | None = None

    def crops(self, which: str) -> np.ndarray:
        """The ``"fit"`` or ``"val"`` crops narrowed to the placed field."""
        if self.box is None:
            raise ValueError(f"{self.label}: place the field first (place_field)")
        x0, y0, x1, y1 = self.box
        c = self.fit_crops if which == "fit" else self.val_crops
        return c[:, y0 - self.cut[1] : y1 - self.cut[1], x0 - self.cut[0] : x1 - self.cut[0]]


@dataclass(frozen=True)
class Layout:
    """A number layout's parameters (:class:`~moc_envs.hud.fields.HudField`)."""

    shift: int
    digits: int
    base: int
    scale: int
    bias: int

    def preference(self) -> tuple[int, ...]:
        """Smaller is preferred among layouts that explain as many frames."""
        # BCD reads two digits a byte; a plain number reads all its digits.
        order = (2, 1, 0) if self.base == 16 else (0, 2, 1)
        return (0 if self.base == 16 else 1, self.shift, order.index(self.digits), abs(self.bias), self.scale)


def _packed(crops: np.ndarray) -> np.ndarray:
    """RGB pixels (..., 3) as one int32 each: 0xRRGGBB."""
    c = crops.astype(np.int32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _rgb(packed: int) -> tuple[int, int, int]:
    return ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)


def _modal_colour(packed: np.ndarray) -> int:
    colours, counts = np.unique(packed, return_counts=True)
    return int(colours[counts.argmax()])


def place_field(data: FieldData, other_cores: Sequence[Box]) -> bool:
    """Set ``data.box`` and ``data.background`` (module docstring, step 1); False when the play never
    lit the core."""
    packed = _packed(data.fit_crops)
    bg = _modal_colour(packed)
    lit = (packed != bg).mean(axis=0)  # (h, w) share of frames lit
    # Static pixels: one colour on nearly every frame (a modal colour per pixel).
    first = packed[0]
    static = ((packed == first).mean(axis=0) >= STATIC) & (first != bg)
    cx0, cy0 = data.cut[0], data.cut[1]
    k0, k1 = data.core[0] - cx0, data.core[2] - cx0
    q0, q1 = data.core[1] - cy0, data.core[3] - cy0
    rows = q0 + np.flatnonzero(lit[q0:q1, k0:k1].max(axis=1) > 0)
    # A line drawn across the whole cut on every frame is scenery, not a value.
    rows = [r for r in rows.tolist() if static[r].mean() < 0.9]
    if not rows:
        return False
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, lit.shape[0])
    while r0 < rows[0] and static[r0].mean() >= 0.9:
        r0 += 1
    while r1 - 1 > rows[-1] and static[r1 - 1].mean() >= 0.9:
        r1 -= 1
    quiet = lit[r0:r1].max(axis=0) <= QUIET

    def free(c: int) -> bool:
        x = cx0 + c
        return bool(quiet[c]) and not any(o[0] <= x < o[2] and o[1] < cy0 + r1 and cy0 + r0 < o[3] for o in other_cores)

    c0, c1 = k0, k1
    while c0 > 0 and free(c0 - 1):
        c0 -= 1
    while c1 < lit.shape[1] and free(c1):
        c1 += 1
    data.box = (cx0 + c0, cy0 + r0, cx0 + c1, cy0 + r1)
    data.background = _rgb(bg)
    return True


def _bitmap(key: bytes) -> np.ndarray:
    h, w = key[0], key[1]
    return np.unpackbits(np.frombuffer(key[2:], np.uint8))[: h * w].reshape(h, w).astype(bool)


def glyph_keys(crops: np.ndarray, background: tuple[int, int, int]) -> list[list[bytes]]:
    """Per crop, the keys of its glyphs left to right (each distinct crop is cut once)."""
    seen: dict[bytes, list[bytes]] = {}
    out = []
    for crop in crops:
        k = crop.tobytes()
        if k not in seen:
            seen[k] = [g.key for g in segment(foreground(crop, background))]
        out.append(seen[k])
    return out


def build_alphabet(counts: Counter[bytes], min_glyph: int) -> GlyphAlphabet:
    """The glyphs seen at least ``min_glyph`` times, narrowest first, less those drawn by
    narrower ones side by side (module docstring, step 2). Names are left empty."""
    kept: list[bytes] = []
    for key in sorted((k for k, n in counts.items() if n >= min_glyph), key=lambda k: (k[1], k[0], k)):
        if key[0] > MAX_GLYPH_SIZE or key[1] > MAX_GLYPH_SIZE:
            continue
        if kept and GlyphAlphabet.from_bitmaps([_bitmap(k) for k in kept], [""] * len(kept)).split(_bitmap(key)):
            continue
        kept.append(key)
    return GlyphAlphabet.from_bitmaps([_bitmap(k) for k in kept], [""] * len(kept))


def glyph_ids(crops: np.ndarray, background: tuple[int, int, int], alphabet: GlyphAlphabet) -> list[list[int]]:
    """Per crop, its glyphs' alphabet ids left to right, as the reader reads them (-1: unknown)."""
    seen: dict[bytes, list[int]] = {}
    out = []
    for crop in crops:
        k = crop.tobytes()
        if k not in seen:
            seen[k] = alphabet.ids(segment(foreground(crop, background)))
        out.append(seen[k])
    return out


def mobile_glyphs(crops: np.ndarray, background: tuple[int, int, int], alphabet: GlyphAlphabet, max_places: int = 8) -> set[int]:
    """Glyphs seen at more than ``max_places`` columns of a field: sprites passing through (a
    cannon), not HUD glyphs, which sit in a few fixed cells. Counts and lookups never read them."""
    places: dict[int, set[int]] = {}
    seen: set[bytes] = set()
    for crop in crops:
        k = crop.tobytes()
        if k in seen:
            continue
        seen.add(k)
        for g in segment(foreground(crop, background)):
            i = alphabet.index(g)
            if i >= 0:
                places.setdefault(i, set()).add(g.x0)
    return {i for i, xs in places.items() if len(xs) > max_places}


def _right_ids(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) ids from the right (-1: nothing drawn there) and (N,) usable frames (some glyph
    drawn, all known)."""
    p = max((len(r) for r in rows), default=0) or 1
    ids = np.full((len(rows), p), -1, np.int64)
    usable = np.zeros(len(rows), bool)
    for i, r in enumerate(rows):
        if r and -1 not in r:
            usable[i] = True
            ids[i, : len(r)] = r[::-1]
    return ids, usable


Pairs = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def _layout_votes(layout: Layout, ids: np.ndarray, usable: np.ndarray, byte: np.ndarray, n_glyphs: int) -> tuple[np.ndarray, np.ndarray, Pairs]:
    """Votes (G, 10) of ``layout``, the frames it can explain, and per read position (frames,
    glyph, digit): the inverse of :func:`moc_envs.hud.fields.encode`."""
    if layout.base == 16:
        hi, lo = byte >> 4, byte & 15
        ok = usable & (hi <= 9) & (lo <= 9)
        n = hi * 10 + lo
    else:
        ok, n = usable.copy(), byte.copy()
    v = n - layout.bias
    if layout.digits and layout.scale == 1:
        # The byte is a value of that many digits, shown with a wrap-round bias.
        ok &= n < 10**layout.digits
        v %= 10**layout.digits
    ok &= (v >= 0) & (v % layout.scale == 0)
    v = np.where(ok, v // layout.scale, 0)
    if layout.digits:
        ok &= v < 10**layout.digits
    n_pos = ids.shape[1]
    n_dig = np.ones(len(v), np.int64)
    if layout.digits:
        n_dig[:] = layout.digits
    else:
        rest = v // 10
        while rest.any():
            n_dig += rest > 0
            rest //= 10
    pairs: Pairs = []
    for k in range(int(n_dig.max()) if len(n_dig) else 0):
        d = (v // 10**k) % 10
        used = ok & (k < n_dig)
        p = layout.shift + k
        drawn = ids[:, p] if p < n_pos else np.full(len(v), -1)
        # A digit not drawn must be a leading zero: this and every higher digit 0.
        ok &= ~used | (drawn >= 0) | ((v // 10**k) == 0)
        pairs.append((used & (drawn >= 0), drawn, d))
    if not layout.digits:
        # All digits are read: any glyph drawn left of the value's digits must be a leading zero.
        zero = np.zeros(len(v), np.int64)
        for p in range(layout.shift + 1, n_pos):
            pairs.append(((p >= layout.shift + n_dig) & (ids[:, p] >= 0), ids[:, p], zero))
    votes = np.zeros((n_glyphs, 10), np.int64)
    for sel, drawn, d in pairs:
        s = sel & ok
        np.add.at(votes, (drawn[s], d[s]), 1)
    return votes, ok, pairs


def _explained(ok: np.ndarray, pairs: Pairs, names: np.ndarray) -> np.ndarray:
    good = ok.copy()
    for sel, drawn, d in pairs:
        good &= ~(sel & ok) | (names[drawn.clip(0)] == d)
    return good


def search_layouts(rows: list[list[int]], byte: np.ndarray, n_glyphs: int) -> list[tuple[int, Layout, np.ndarray]]:
    """Every number layout that explains some frame, with how many it explains and its votes,
    best first (module docstring, step 3)."""
    ids, usable = _right_ids(rows)
    if not usable.any() or n_glyphs == 0:
        return []
    out = []
    for shift in range(ids.shape[1]):
        for digits in (0, 1, 2):
            for base in (10, 16):
                if digits == 1 and base == 16:
                    continue  # one digit reads the same in both bases
                for scale in LAYOUT_SCALES:
                    for bias in LAYOUT_BIASES:
                        lay = Layout(shift, digits, base, scale, bias)
                        votes, ok, pairs = _layout_votes(lay, ids, usable, byte, n_glyphs)
                        n = int(_explained(ok, pairs, votes.argmax(axis=1)).sum())
                        if n:
                            out.append((n, lay, votes))
    out.sort(key=lambda t: (-t[0], t[1].preference()))
    return out


def _name_glyphs(
    searched: dict[str, list[tuple[int, Layout, np.ndarray]]],
    voters: set[str],
    ids: dict[str, list[list[int]]],
    placed: dict[str, FieldData],
    n_glyphs: int,
    candidates: int = 60,
    pool_share: float = 0.8,
) -> tuple[dict[str, Layout], np.ndarray]:
    """Each label's number layout and the pooled votes (G, 10) that name the glyphs.

    The ``voters`` go first, from the one whose best layout names the most glyphs to the
    least; each takes the layout that explains most frames with the glyphs named so far (its
    own votes for the others), so that a label the play shows little of (a score's high byte,
    always 0) cannot name a "5" a "0", and adds its votes when it explains ``pool_share`` of
    its frames. The other labels (icons a count reads as well) then take theirs the same way
    without voting. Ties go to the base an earlier label settled, then to
    :meth:`Layout.preference`.
    """
    def rank(lab: str) -> tuple[bool, int, int]:
        return (lab not in voters, -int((searched[lab][0][2].sum(axis=1) > 0).sum()), -searched[lab][0][0])

    pooled = np.zeros((n_glyphs, 10), np.int64)
    chosen: dict[str, Layout] = {}
    bases: Counter[int] = Counter()
    for lab in sorted(searched, key=rank):
        rows, byte = ids[lab], placed[lab].fit_bytes
        right, usable = _right_ids(rows)
        scored = []
        for _, lay, own in searched[lab][:candidates]:
            v, ok, pairs = _layout_votes(lay, right, usable, byte, n_glyphs)
            names = np.where(pooled.sum(axis=1) > 0, pooled.argmax(axis=1), own.argmax(axis=1))
            scored.append((int(_explained(ok, pairs, names).sum()), lay, v))
        top_n = max(n for n, _, _ in scored)
        top = [(lay, v) for n, lay, v in scored if n == top_n]
        base = bases.most_common(1)[0][0] if bases else None
        top.sort(key=lambda t: (t[0].base != base, t[0].preference()))
        chosen[lab] = top[0][0]
        if lab in voters and len({lay.base for lay, _ in top}) == 1:
            bases[top[0][0].base] += 1
        if lab in voters and top_n >= pool_share * int(usable.sum()):
            pooled += top[0][1]
    return chosen, pooled


def _exceptions(fld: HudField, rows: list[list[int]], alphabet: GlyphAlphabet, byte: np.ndarray, min_count: int = 3) -> HudField | None:
    """``fld`` with the values its rule misreads on the fitting frames listed (:func:`_irregular`:
    a clock drawn a frame late), or None when it misreads none."""
    values, bytes_ = [], []
    for r, b in zip(rows, byte.tolist(), strict=True):
        if r and -1 not in r:
            value = number_value(fld, [alphabet.names[i] for i in r])
            if value is not None:
                values.append(value)
                bytes_.append(b)
    table, unread = _irregular(values, np.asarray(bytes_, np.int64), lambda v: encode(fld, v), min_count)
    return replace(fld, table=table, unread=unread) if table or unread else None


def score_reading(fld: HudField, alphabet: GlyphAlphabet, crops: np.ndarray, byte: np.ndarray) -> dict[str, Any]:
    """How the reader reads ``crops`` with ``fld``: steps, given, right and wrong readings, exact rate."""
    cache: dict[bytes, int | None] = {}
    given = right = 0
    for crop, b in zip(crops, byte.tolist(), strict=True):
        k = crop.tobytes()
        if k not in cache:
            cache[k] = read_field(fld, crop, alphabet)
        got = cache[k]
        if got is not None:
            given += 1
            right += int(got == b)
    return {"steps": len(crops), "given": given, "right": right, "wrong": given - right,
            "coverage": given / max(len(crops), 1), "exact": right / given if given else float("nan")}  # fmt: skip


def _count(d: FieldData, rows: list[list[int]], mobile: set[int]) -> tuple[int, HudField | None]:
    """The best count of icons (the glyphs of the field that are not ``mobile``) and how many
    fitting frames it explains."""
    icons = sorted({i for r in rows for i in r if i >= 0} - mobile)
    if not icons:
        return 0, None
    counts = np.array([len(r) if set(r) <= set(icons) else -1 for r in rows])

    def explained(c: int) -> int:
        return int(((counts >= 0) & (counts + c == d.fit_bytes)).sum())

    best = max(COUNT_BIASES, key=lambda c: (explained(c), -abs(c)))
    assert d.box is not None and d.background is not None
    return explained(best), HudField(d.label, "count", d.box, d.background, glyphs=tuple(icons), bias=best)


def _bar(d: FieldData, crops: np.ndarray, min_exception: int = 5) -> tuple[HudField | None, HudField | None]:
    """The best bar (the colour whose column count fits the byte best), and the same with the
    lengths it misreads listed (:func:`_irregular`; None when it misreads none)."""
    assert d.box is not None and d.background is not None
    packed = _packed(crops)
    colours = [int(c) for c in np.unique(packed) if (packed == c).any(axis=(1, 2)).mean() >= 0.01]
    palette = tuple(dict.fromkeys([d.background, *(_rgb(c) for c in colours)]))
    best: tuple[int, tuple[int, float, float], np.ndarray] | None = None
    for pc in colours:
        if _rgb(pc) == d.background:
            continue
        length = (packed == pc).any(axis=1).sum(axis=1)
        if length.std() == 0:
            continue
        slope, _ = np.polyfit(length.astype(np.float64), d.fit_bytes.astype(np.float64), 1)
        for s in {float(slope), round(slope * 8) / 8}:
            if s == 0:
                continue
            icpt = float(np.median(d.fit_bytes - s * length))
            for i in {icpt, round(icpt * 2) / 2}:
                right = int((np.round(s * length + i) == d.fit_bytes).sum())
                if best is None or right > best[0]:
                    best = (right, (pc, s, i), length)
    if best is None:
        return None, None
    (pc, s, i), length = best[1], best[2]
    plain = HudField(d.label, "bar", d.box, d.background, colour=_rgb(pc), palette=palette, slope=s, intercept=i)
    table, unread = _irregular(length.tolist(), d.fit_bytes, lambda n: round(s * n + i), min_exception)
    return plain, (replace(plain, table=table, unread=unread) if table or unread else None)


def _irregular(
    values: Sequence[int], byte: np.ndarray, rule: Callable[[int], int | None], min_count: int, clear: float = 0.9
) -> tuple[tuple[tuple[tuple[int], int], ...], tuple[int, ...]]:
    """Values (bar lengths, numbers) seen at least ``min_count`` times that ``rule`` misreads: those
    with one byte on ``clear`` of their frames go to the table with it, the others are unread
    (the frame does not settle their byte)."""
    seen: dict[int, Counter[int]] = {}
    for v, b in zip(values, byte.tolist(), strict=True):
        seen.setdefault(int(v), Counter())[b] += 1
    table, unread = [], []
    for v, c in sorted(seen.items()):
        b, n = c.most_common(1)[0]
        total = sum(c.values())
        if total < min_count:
            continue
        if n < clear * total:
            unread.append(v)
        elif b != rule(v):
            table.append(((v,), b))
    return tuple(table), tuple(unread)


def _lookup(d: FieldData, rows: list[list[int]], mobile: set[int], min_count: int = 3, min_runs: int = 2, max_rows: int = 32) -> HudField | None:
    """Each glyph sequence without ``mobile`` glyphs seen at least ``min_count`` times, in
    ``min_runs`` separate stretches of frames, with one byte on 90% of them; None without any,
    or with more than ``max_rows`` (a table that large learns the play by heart, not the HUD)."""
    table: dict[tuple[int, ...], Counter[int]] = {}
    runs: Counter[tuple[int, ...]] = Counter()
    last: tuple[int, ...] | None = None
    for r, b in zip(rows, d.fit_bytes.tolist(), strict=True):
        seq = tuple(r) if r and -1 not in r and not mobile & set(r) else None
        if seq is not None:
            table.setdefault(seq, Counter())[b] += 1
            runs[seq] += seq != last
        last = seq
    out = []
    for seq, c in table.items():
        byte, n = c.most_common(1)[0]
        if n >= min_count and runs[seq] >= min_runs and n >= 0.9 * sum(c.values()):
            out.append((seq, byte))
    assert d.box is not None and d.background is not None
    if not out or len(out) > max_rows:
        return None
    return HudField(d.label, "lookup", d.box, d.background, table=tuple(sorted(out)))


def _ends(plays: Sequence[Play]) -> np.ndarray:
    """The plays' resets in one array, with the last step of each play an end too."""
    out = []
    for p in plays:
        ends = np.asarray(p.resets, bool).copy()
        if len(ends):
            ends[-1] = True
        out.append(ends)
    return np.concatenate(out) if out else np.zeros(0, bool)


def fit_hud(
    spec: GameSpec,
    fit_plays: Sequence[Play],
    val_plays: Sequence[Play],
    cores: dict[str, Box],
    cuts: dict[str, Box],
    min_glyph: int = 3,
    wrong_cost: float = 4.0,
    structured_exact: float = 0.95,
    min_votes: int = 5,
    log: Callable[[str], Any] = print,
) -> tuple[HudReader | None, dict[str, Any]]:
    """The HUD reader fitted on ``fit_plays`` and chosen on ``val_plays`` (module docstring), and a
    report per label (its rule, the candidates' readings fitted and held out). None when no
    label could be read."""
    report: dict[str, Any] = {}
    placed: dict[str, FieldData] = {}
    for lab, cut in cuts.items():
        d = FieldData(
            lab, cut, cores[lab],
            np.concatenate([p.crops[lab] for p in fit_plays]), np.concatenate([p.byte(spec, lab) for p in fit_plays]),
            np.concatenate([p.crops[lab] for p in val_plays]), np.concatenate([p.byte(spec, lab) for p in val_plays]),
            fit_resets=_ends(fit_plays), val_resets=_ends(val_plays),
        )  # fmt: skip
        # Labels drawn from the same OCAtari objects share their core and may share columns.
        if place_field(d, [c for other, c in cores.items() if c != cores[lab]]):
            placed[lab] = d
        else:
            report[lab] = {"decision": "left out: the plays never lit its field"}
    counts: Counter[bytes] = Counter()
    for d in placed.values():
        assert d.background is not None
        d.fit_glyphs = glyph_keys(d.crops("fit"), d.background)
        for r in d.fit_glyphs:
            counts.update(r)
    alphabet = build_alphabet(counts, min_glyph)
    ids = {lab: glyph_ids(d.crops("fit"), d.background, alphabet) for lab, d in placed.items() if d.background}
    # Step 3: counts first, then each label's best number layout; the winners name the glyphs.
    mobile = {lab: mobile_glyphs(d.crops("fit"), d.background, alphabet) for lab, d in placed.items() if d.background}
    counted = {lab: _count(d, ids[lab], mobile[lab]) for lab, d in placed.items()}
    searched = {lab: search_layouts(ids[lab], d.fit_bytes, len(alphabet)) for lab, d in placed.items()}
    searched = {lab: r for lab, r in searched.items() if r}
    voters = {lab for lab, r in searched.items() if r[0][0] > counted[lab][0]}
    chosen, votes = _name_glyphs(searched, voters, ids, placed, len(alphabet))
    # A digit is named by at least min_votes frames, 90% of them agreeing; a sprite that crossed
    # a field (a glyph seen in many places) is never a digit, whatever frames it sat in.
    moving = set().union(*mobile.values()) if mobile else set()
    names = [
        DIGITS[int(row.argmax())] if i not in moving and row.sum() >= min_votes and row.max() >= 0.9 * row.sum() else ""
        for i, row in enumerate(votes)
    ]
    alphabet = GlyphAlphabet(alphabet.bitmaps, alphabet.sizes, names)
    log(f"{spec.name}: {len(alphabet)} glyphs, named {''.join(n or '?' for n in names)}")
    # Step 4: each rule held out.
    fields = []
    for lab, d in placed.items():
        assert d.box is not None and d.background is not None
        candidates: list[tuple[str, HudField | None]] = []
        if lab in chosen:
            lay = chosen[lab]
            number = HudField(lab, "number", d.box, d.background, shift=lay.shift, digits=lay.digits, base=lay.base, scale=lay.scale, bias=lay.bias)
            candidates += [("number", number), ("number+table", _exceptions(number, ids[lab], alphabet, d.fit_bytes))]
            candidates += [("number+lead", fit_lead(number, ids[lab], alphabet, d.fit_bytes, d.fit_resets))]
        bar, bar_table = _bar(d, d.crops("fit"))
        candidates += [("count", counted[lab][1]), ("bar", bar), ("bar+table", bar_table), ("lookup", _lookup(d, ids[lab], mobile[lab]))]
        rows: dict[str, Any] = {}
        scored = []
        for rank, (kind, fld) in enumerate(candidates):
            if fld is None:
                continue
            if fld.lead:  # read in step order, as the env reads it
                held = score_lead(fld, alphabet, d.crops("val"), d.val_bytes, d.val_resets)
                on_fit = score_lead(fld, alphabet, d.crops("fit"), d.fit_bytes, d.fit_resets)
            else:
                held = score_reading(fld, alphabet, d.crops("val"), d.val_bytes)
                on_fit = score_reading(fld, alphabet, d.crops("fit"), d.fit_bytes)
            rows[kind] = {"fit": on_fit, "held_out": held}
            scored.append((held["right"] - wrong_cost * held["wrong"], -rank, kind, fld, held))
        structured = [t for t in scored if t[2] != "lookup"]
        best_s = max(structured, default=None, key=lambda t: (t[0], t[1]))
        best = max(scored, default=None, key=lambda t: (t[0], t[1]))
        lookup = next((t for t in scored if t[2] == "lookup"), None)
        if best_s is not None and best_s[4]["given"] and best_s[4]["exact"] >= structured_exact and (
            lookup is None or best_s[4]["given"] >= 0.9 * lookup[4]["given"]
        ):
            best = best_s
        if best is None or best[0] <= 0:
            report[lab] = {"decision": "left out: no rule reads it right more often than wrong", "candidates": rows}
            log(f"  {lab}: left out")
            continue
        fields.append(best[3])
        held = best[4]
        report[lab] = {"kind": best[2], "box": list(d.box), "values_seen": int(len(np.unique(d.fit_bytes))), "held_out": held, "candidates": rows}
        log(f"  {lab}: {best[2]} in {d.box}, held out exact {held['exact']:.3f} on {held['given']}/{held['steps']} steps")
    if not fields:
        return None, report
    return HudReader(spec, fields, alphabet), report
