"""Moving distractor bars ("Noisy Atari"): full-length bars redrawn at random positions every frame.

PermaKey tested its keypoint detector on Atari frames with distractors: bars 5 px thick across
its 84 x 84 frame, colour RGB (128, 0, 255), at a new random position every frame. Here the same
bars are drawn on the 210 x 160 frame a detector sees, their thickness scaled by the same factor
as the frame: a horizontal bar (full width) is ``5 * 210 / 84 = 12.5`` rows thick, rounded half
up to **13**; a vertical bar (full height) ``5 * 160 / 84 = 9.52`` columns, rounded to **10**.
Rounding half up keeps the bar at least as large as PermaKey's relative to the frame. A bar lies
wholly inside the frame, its top row (left column) uniform over every position that allows it.

Only pixels change: the env's RAM, rewards, terminations, the RAM oracle's input and the
ground truth never see a bar. :class:`Distractors` is one env's stream of bar positions, drawn
once per step (after a flicker game's max of two frames) and at reset; its seeding (see
:meth:`Distractors.reset`) makes ``reset(seed=s)`` reproduce the bars and gives every env of a
vector env its own stream. The single env, the vector envs and the dataset builder all draw
through this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH
from moc_envs.readouts.base import in_colours, rgb_codes

if TYPE_CHECKING:
    from moc_envs.weights.manifest import VerifiedFolder

__all__ = [
    "BACKGROUND_FILE",
    "BACKGROUND_FORMAT",
    "BAR_COLOR",
    "BarFilter",
    "BarMemory",
    "DISTRACTOR_KINDS",
    "HORIZONTAL_THICKNESS",
    "MAX_BAR_COLUMNS",
    "MAX_BAR_ROWS",
    "VERTICAL_THICKNESS",
    "Bars",
    "DistractorKind",
    "Distractors",
    "background_bytes",
    "check_distractors",
    "distractor_seed_argument",
    "draw_bars",
    "make_distractors",
    "read_background",
    "without_bars",
    "write_background",
]

DistractorKind = Literal["horizontal", "vertical", "both"]
DISTRACTOR_KINDS: tuple[DistractorKind, ...] = ("horizontal", "vertical", "both")
"""The accepted values of ``distractors`` besides None (off)."""

BAR_COLOR: tuple[int, int, int] = (128, 0, 255)
"""RGB colour of the bars (PermaKey's)."""

_PERMAKEY_SIDE = 84  # PermaKey's frame, 84 x 84
_PERMAKEY_THICKNESS = 5


def _scaled(pixels: int) -> tuple[int, int]:
    """PermaKey's thickness scaled to the rows and the columns of our frame, rounded half up."""

    def half_up(x: float) -> int:
        return math.floor(x + 0.5)  # round() would give 12 for 12.5 (banker's rounding)

    return (
        half_up(pixels * FRAME_HEIGHT / _PERMAKEY_SIDE),
        half_up(pixels * FRAME_WIDTH / _PERMAKEY_SIDE),
    )


HORIZONTAL_THICKNESS, VERTICAL_THICKNESS = _scaled(_PERMAKEY_THICKNESS)
"""Rows of a horizontal bar (13) and columns of a vertical bar (10) on the 210 x 160 frame."""

_STREAM_TAG = 0x4D4F4342  # keeps the bar stream apart from the game's own use of the same seed
_FROM_RESET, _FROM_BOTH, _FROM_DISTRACTOR_SEED = 0, 1, 2


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def check_distractors(distractors: object, distractor_seed: object = None) -> DistractorKind | None:
    """Return ``distractors`` once checked, or raise with what was expected and what was given.

    ``distractors``: None (off), ``"horizontal"``, ``"vertical"`` or ``"both"``;
    ``distractor_seed``: None or a non-negative int (Python or numpy), ignored when off.
    """
    if distractors is not None and (
        not isinstance(distractors, str) or distractors not in DISTRACTOR_KINDS
    ):
        choices = ", ".join(repr(k) for k in DISTRACTOR_KINDS)
        raise ValueError(f"distractors must be one of {choices} or None, got {distractors!r}")
    if distractor_seed is not None:
        if isinstance(distractor_seed, bool | np.bool_) or not isinstance(
            distractor_seed, int | np.integer
        ):
            raise TypeError(
                f"distractor_seed must be None or a non-negative int, got {_describe(distractor_seed)}"
            )
        if int(distractor_seed) < 0:
            raise ValueError(
                f"distractor_seed must be None or a non-negative int, got {int(distractor_seed)}"
            )
    return distractors  # type: ignore[return-value]


@dataclass(frozen=True)
class Bars:
    """Where one frame's bars are: the top row of the horizontal bar and the left column of the
    vertical one (None: no such bar)."""

    row: int | None
    col: int | None


def draw_bars(frame: np.ndarray, bars: Bars | None) -> np.ndarray:
    """A copy of ``frame`` (210, 160, 3) uint8 with ``bars`` drawn in :data:`BAR_COLOR`.

    ``bars=None`` (no position drawn yet) returns an unchanged copy.
    """
    if (
        not isinstance(frame, np.ndarray)
        or frame.dtype != np.uint8
        or frame.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3)
    ):
        got = (
            f"{frame.dtype} {frame.shape}"
            if isinstance(frame, np.ndarray)
            else type(frame).__name__
        )
        raise ValueError(
            f"frame must be uint8 of shape ({FRAME_HEIGHT}, {FRAME_WIDTH}, 3), got {got}"
        )
    out = frame.copy()
    if bars is not None:
        if bars.row is not None:
            out[bars.row : bars.row + HORIZONTAL_THICKNESS, :] = BAR_COLOR
        if bars.col is not None:
            out[:, bars.col : bars.col + VERTICAL_THICKNESS] = BAR_COLOR
    return out


class Distractors:
    """One env's distractor bars: a seeded stream of positions and the drawing.

    Call :meth:`reset` when the env resets and :meth:`step` once per env step; each draws the
    bars of the new frame, which :meth:`draw` then paints on it (as often as the frame is read).

    Args:
        kind: ``"horizontal"``, ``"vertical"`` or ``"both"`` (one bar of each).
        seed: the ``distractor_seed``; None derives the stream from the reset seed alone.
        index: the env's row in a vector env: with ``seed`` given and an unseeded reset, the
            rows get distinct streams from the one seed.

    Every frame takes two draws from the generator, a row and a column, whatever ``kind``
    uses: ``"both"`` is the union of ``"horizontal"`` and ``"vertical"`` for the same seeds.
    """

    def __init__(self, kind: DistractorKind, seed: int | None = None, index: int = 0) -> None:
        check_distractors(kind, seed)
        if kind is None:
            raise ValueError(
                "Distractors needs a kind ('horizontal', 'vertical' or 'both'), got None"
            )
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"index must be a non-negative int, got {_describe(index)}")
        self.kind: DistractorKind = kind
        self.seed = None if seed is None else int(seed)
        self.index = int(index)
        if self.seed is None:
            self._rng = np.random.default_rng()  # until a seeded reset, as the game's own RNG
        else:
            entropy = [_STREAM_TAG, _FROM_DISTRACTOR_SEED, self.seed, 0]
            self._rng = np.random.default_rng(
                np.random.SeedSequence(entropy, spawn_key=(self.index,))
            )
        self.bars: Bars | None = None
        """The current frame's bars (None before the first reset)."""

    def reset(self, seed: int | None = None) -> Bars:
        """New bars for the first frame of an episode; a ``seed`` (the env's reset seed) reseeds.

        Seeded resets key the stream by the reset seed and ``distractor_seed`` (not by the row),
        so env ``i`` of a vector env reset with ``seed + i`` draws what a single env reset with
        ``seed + i`` draws, and ``reset(seed=s)`` always reproduces them. An unseeded reset
        continues the stream.
        """
        if seed is not None:
            how = _FROM_RESET if self.seed is None else _FROM_BOTH
            entropy = [_STREAM_TAG, how, int(seed), 0 if self.seed is None else self.seed]
            self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
        return self.step()

    def step(self) -> Bars:
        """New bars at uniformly random positions, for the frame of the next env step."""
        row = int(self._rng.integers(0, FRAME_HEIGHT - HORIZONTAL_THICKNESS + 1))
        col = int(self._rng.integers(0, FRAME_WIDTH - VERTICAL_THICKNESS + 1))
        self.bars = Bars(
            row=row if self.kind in ("horizontal", "both") else None,
            col=col if self.kind in ("vertical", "both") else None,
        )
        return self.bars

    def draw(self, frame: np.ndarray) -> np.ndarray:
        """A copy of ``frame`` (210, 160, 3) uint8 with the current bars drawn."""
        return draw_bars(frame, self.bars)


def make_distractors(
    kind: DistractorKind | None, seed: int | None = None, index: int = 0
) -> Distractors | None:
    """A :class:`Distractors` for ``kind``, or None when ``kind`` is None (off)."""
    check_distractors(kind, seed)
    return None if kind is None else Distractors(kind, seed, index)


def distractor_seed_argument(text: str) -> int:
    """argparse type of ``--distractor-seed``: a non-negative int."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


BACKGROUND_FILE = "background.safetensors"
"""A weights folder's background (mode) image: tensor ``mode``, uint8 (210, 160, 3)."""

BACKGROUND_FORMAT = "moc_envs.background/1"


MAX_BAR_ROWS = FRAME_HEIGHT // 8
"""Most rows the bar filter paints over in one frame, and the thickest run (26): a bar is a line
across the frame; more lines of foreign colours are the game's own (Pong recolours its whole
field when a match ends)."""
MAX_BAR_COLUMNS = FRAME_WIDTH // 8
"""Most columns the bar filter paints over in one frame, and the thickest run (20)."""


def _runs(mask: np.ndarray, longest: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in the 1-D ``mask`` no longer than ``longest``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a <= longest]


def _paint_over(lines: np.ndarray, background: np.ndarray, start: int, stop: int) -> None:
    """Fill lines ``[start, stop)`` of ``lines`` (a frame, or its transpose; ``background`` the
    same view of the background image) in place.

    Each pixel takes the background's colour where that colour is the one just before or just
    after the run on its line (background continues: a wall, the field, a lane); elsewhere the
    first half of the run repeats the line just before it and the second half the line just
    after (something crosses the bar). So the background image's own sprites (SpaceInvaders'
    formation as it stood while the image was recorded) come back only where a sprite of their
    colour touches the bar. At the frame's edge the one side there is stands for both.
    """
    before = lines[start - 1] if start > 0 else lines[stop]
    after = lines[stop] if stop < len(lines) else before
    mode = background[start:stop]
    agree = (mode == before).all(axis=-1) | (mode == after).all(axis=-1)
    sides = np.empty_like(mode)
    middle = (stop - start + 1) // 2
    sides[:middle], sides[middle:] = before, after
    lines[start:stop] = np.where(agree[..., None], mode, sides)


class BarFilter:
    """Removes frame-spanning bars that are not part of the game: PermaKey's distractors.

    A row is a bar when all of its pixels have one colour and that colour is nowhere in the
    game's background (mode) image; so is a column. A run of such rows (at most
    :data:`MAX_BAR_ROWS` thick) is painted over pixel by pixel (columns likewise; rows first):
    with the background image where its colour is that of the line just before or just after the
    run (the field, a wall or a lane continues under the bar; an object cut by the bar keeps its
    visible part and is not extended), else from the sides, the upper half repeating the line
    just before the run and the lower half the line just after (a sprite crossing the bar is
    joined up). The detector, the readouts and the HUD reader see the frame about as the game drew
    it; an object wholly under a bar stays lost. This is a rule about one kind of noise, not about
    any game: nothing in it is fitted per game beyond the background image the trainer records
    anyway. Measured against the two simpler fills (``moc-envs bench noisy``): the background
    image alone paints back the objects it holds (SpaceInvaders' formation as it stood while it
    was recorded), the sides alone thicken walls and lengthen cut sprites (Pong's wall read as
    balls); both made false detections on the bars.

    On frames without bars it changes nothing: a game row or column of one colour is of a
    background colour (measured on every shipped game's held-out play, ``moc-envs bench
    noisy``). The check compares each row's first pixel and each column's top pixel with the
    background image's; only lines starting elsewhere in a colour foreign to it are compared in full.
    """

    def __init__(self, background: np.ndarray) -> None:
        if (
            not isinstance(background, np.ndarray)
            or background.dtype != np.uint8
            or background.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3)
        ):
            got = f"{background.dtype} {background.shape}" if isinstance(background, np.ndarray) else type(background).__name__
            raise ValueError(f"background must be uint8 of shape ({FRAME_HEIGHT}, {FRAME_WIDTH}, 3), got {got}")
        self.background = background
        self._codes = np.unique(rgb_codes(background))
        self._first_column = np.ascontiguousarray(background[:, 0])
        self._top_row = np.ascontiguousarray(background[0])

    def find(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boolean (N, 210) rows and (N, 160) columns of ``frames`` (N, 210, 160, 3) uint8 that
        are one colour foreign to the background (runs of any thickness)."""
        rows = np.zeros(frames.shape[:2], bool)
        cols = np.zeros((frames.shape[0], frames.shape[2]), bool)
        for found, lines, first, usual in (
            (rows, frames, frames[:, :, 0], self.background[:, 0]),
            (cols, frames.transpose(0, 2, 1, 3), frames[:, 0], self.background[0]),
        ):
            # A line whose first pixel is the background image's there is no bar; on a game's
            # frame that is nearly every line, so one comparison settles most of them.
            n_idx, i_idx = np.nonzero((first != usual).any(axis=-1))
            if len(n_idx):
                foreign = ~in_colours(rgb_codes(first[n_idx, i_idx]), self._codes)
                n_idx, i_idx = n_idx[foreign], i_idx[foreign]
                picked = lines[n_idx, i_idx]  # (K, length, 3): each candidate line whole
                found[n_idx, i_idx] = (picked == picked[:, :1]).all(axis=(1, 2))
        return rows, cols

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` (N, 210, 160, 3) uint8 with their bars painted over; the same array when no
        frame has one, else a copy."""
        return self.clean(frames)[0]

    def clean(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """:meth:`__call__`'s frames, and the boolean (N, 210) rows and (N, 160) columns it
        painted (None, None when no frame has a bar)."""
        if (frames[:, :, 0] == self._first_column).all() and (frames[:, 0] == self._top_row).all():
            return frames, None, None  # every line starts as the background image's does: no bar anywhere
        rows, cols = self.find(frames)
        # More foreign lines in one frame than one bar's worth is the game recolouring itself.
        rows[rows.sum(axis=1) > MAX_BAR_ROWS] = False
        cols[cols.sum(axis=1) > MAX_BAR_COLUMNS] = False
        painted_rows, painted_cols = np.zeros_like(rows), np.zeros_like(cols)
        out = frames
        for i in np.flatnonzero(rows.any(axis=1) | cols.any(axis=1)):
            row_runs, col_runs = _runs(rows[i], MAX_BAR_ROWS), _runs(cols[i], MAX_BAR_COLUMNS)
            if (row_runs or col_runs) and out is frames:
                out = frames.copy()
            for start, stop in row_runs:
                _paint_over(out[i], self.background, start, stop)
                painted_rows[i, start:stop] = True
            for start, stop in col_runs:
                _paint_over(out[i].transpose(1, 0, 2), self.background.transpose(1, 0, 2), start, stop)
                painted_cols[i, start:stop] = True
        return (frames, None, None) if out is frames else (out, painted_rows, painted_cols)


MEMORY_REACH = 2
"""Pixels a sprite may move between two frames and still be painted back from memory."""


class BarMemory:
    """Paints each env's bar pixels back with what its earlier frames showed there.

    A bar moves to a new place every frame, so what it covers now was mostly in sight a frame
    ago: a boxer half under a bar, a chicken or a car wholly under one. After the
    :class:`BarFilter` has painted a frame's bars over from that one frame, the painted pixels
    take the previous (cleaned) frame's colour where that colour also lay within
    :data:`MEMORY_REACH` pixels in the frame before it: slow sprites and the scenery come back; a
    fast ball would come back where it no longer is (a second ball), and keeps the one-frame
    fill. The first frame of an episode, or after clean frames, has no memory and keeps the
    one-frame fill; the second frame takes the previous one's colours everywhere under the bar.

    Decided by measurement on the tune play of every shipped game (F1 under bars, category-aware,
    as ``moc-envs bench noisy`` scores it): against the one-frame filter it gains 0.01-0.09 on 10
    of the 11 games (Breakout within 0.015 either way, by the bars' seed); a reach of 2 gained a
    little more than 0 or 1; taking the previous frame's colours with no reach test was as good
    on average but drew second balls in Breakout and Pong. Its cost: a sprite that moved under
    the bar can come back a pixel or two from where it is, and some of those pieces are extra
    boxes on the bars (``moc-envs bench noisy`` counts them).

    One memory serves the envs of a vector env, by row; the envs :meth:`reset` a row with its
    episode. Frames without bars cost nothing and clear the memory of their rows.
    """

    def __init__(self, reach: int = MEMORY_REACH) -> None:
        if reach < 0:
            raise ValueError(f"reach must be >= 0 pixels, got {reach}")
        self.reach = int(reach)
        self._seen: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def reset(self, index: int | None = None) -> None:
        """Forget env ``index``'s frames (every env's when None)."""
        if index is None:
            self._seen.clear()
        else:
            self._seen.pop(index, None)

    def __call__(
        self, frames: np.ndarray, cleaned: np.ndarray, painted: tuple[np.ndarray, np.ndarray] | None, rows: Sequence[int]
    ) -> np.ndarray:
        """``cleaned``, the bar filter's output for ``frames`` (env ``rows``; ``painted``: the rows
        and columns it painted, :meth:`BarFilter.clean`), with those lines taken from memory where
        it holds them; remembers the result."""
        if painted is None:  # no bar in any of these frames: nothing to paint, nothing to keep
            for i in rows:
                self._seen.pop(i, None)
            return frames
        # The filter's copy is this call's own: painted in place and kept as the memory.
        for k, i in enumerate(rows):
            prev, prev2 = self._seen.get(i, (None, None))
            if prev is not None:
                here = cleaned[k]
                for lines, view, view_prev, view_prev2 in (
                    (np.flatnonzero(painted[0][k]), here, prev, prev2),
                    (np.flatnonzero(painted[1][k]), *(None if a is None else a.transpose(1, 0, 2) for a in (here, prev, prev2))),
                ):
                    if len(lines):
                        self._fill(view, view_prev, view_prev2, lines)
            self._seen[i] = (cleaned[k], prev)
        return cleaned

    def _fill(self, out: np.ndarray, prev: np.ndarray, prev2: np.ndarray | None, lines: np.ndarray) -> None:
        """Paint full lines ``lines`` (first axis) of ``out`` from ``prev`` where the colour there lay
        within the reach in ``prev2`` (everywhere when there is no ``prev2``)."""
        if prev2 is None:
            out[lines] = prev[lines]
            return
        taken = prev[lines]  # (K, L, 3)
        want = rgb_codes(taken)
        near = want == rgb_codes(prev2[lines])  # the same colour in the same place: most of a bar
        ks, xs = np.nonzero(~near)
        if len(ks):  # the rest looks around, the frame's edge standing for what lies beyond it
            r = self.reach
            dy, dx = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
            yy = np.clip(lines[ks][:, None] + dy.ravel(), 0, prev.shape[0] - 1)
            xx = np.clip(xs[:, None] + dx.ravel(), 0, prev.shape[1] - 1)
            near[ks, xs] = (rgb_codes(prev2[yy, xx]) == want[ks, xs][:, None]).any(axis=1)
        block = out[lines]
        block[near] = taken[near]
        out[lines] = block


def without_bars(
    detector: object, frames: np.ndarray, memory: BarMemory | None = None, rows: Sequence[int] | None = None
) -> np.ndarray:
    """``frames`` as ``detector``'s bar filter leaves them (unchanged when it has none), their
    bar pixels painted back from ``memory`` (:class:`BarMemory`, rows ``rows``, default
    ``0..N-1``) where it holds them.

    The envs hand these to the detector, the readouts and the HUD reader, so that labels read
    from the frame see what the detector saw; ``render()`` still shows the frame with its bars.
    """
    bar_filter = getattr(detector, "bar_filter", None)
    if bar_filter is None:
        return frames
    if memory is None:
        return bar_filter(frames)
    cleaned, painted_rows, painted_cols = bar_filter.clean(frames)
    painted = None if painted_rows is None else (painted_rows, painted_cols)
    return memory(frames, cleaned, painted, range(len(frames)) if rows is None else rows)


def background_bytes(background: np.ndarray, game: str) -> bytes:
    """``background`` (210, 160, 3) uint8 as the bytes of a ``background.safetensors`` for ``game``."""
    from safetensors.numpy import save as serialise  # bytes in memory, not a file

    BarFilter(background)  # refuses a wrong shape or dtype before anything is written
    return serialise({"mode": np.ascontiguousarray(background)}, metadata={"format": BACKGROUND_FORMAT, "game": game})


def write_background(folder: str | Path, game: str, background: np.ndarray) -> Path:
    """Write ``background`` (210, 160, 3) uint8 as ``folder/background.safetensors``, atomically
    (the caller refreshes the folder's manifest)."""
    from moc_envs.weights.atomic import atomic_path

    data = background_bytes(background, game)
    path = Path(folder) / BACKGROUND_FILE
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_background(files: VerifiedFolder, game: str) -> np.ndarray | None:
    """The background image of a verified weights folder, or None when its manifest lists none.

    Raises CorruptWeightsError when the file is for another game or format, or is not one
    uint8 (210, 160, 3) tensor named ``mode``.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from moc_envs.errors import CorruptWeightsError
    from moc_envs.weights.manifest import safetensors_metadata

    if not files.listed(BACKGROUND_FILE):
        return None
    path = files.folder / BACKGROUND_FILE
    blob = files.read_bytes(BACKGROUND_FILE)
    tags = safetensors_metadata(blob, path)
    if tags.get("format") != BACKGROUND_FORMAT or tags.get("game") != game:
        raise CorruptWeightsError(
            f"{path} is tagged format {tags.get('format')!r}, game {tags.get('game')!r}; "
            f"expected format {BACKGROUND_FORMAT!r}, game {game!r}"
        )
    try:
        arrays = load(blob)
    except SafetensorError as err:
        raise CorruptWeightsError(f"{path} is not a readable safetensors file: {err}") from err
    mode = arrays.get("mode")
    if set(arrays) != {"mode"} or mode is None or mode.dtype != np.uint8 or mode.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3):
        got = {k: f"{v.dtype} {v.shape}" for k, v in arrays.items()}
        raise CorruptWeightsError(
            f"{path} must hold one tensor 'mode', uint8 ({FRAME_HEIGHT}, {FRAME_WIDTH}, 3); got {got}"
        )
    return mode
