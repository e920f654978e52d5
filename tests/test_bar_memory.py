"""The bar memory: bar pixels painted back from the frames before, slow sprites only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moc_envs.perception.distractors import (
    BarFilter,
    BarMemory,
    Bars,
    draw_bars,
    read_background,
    without_bars,
)
from moc_envs.weights.manifest import verify_folder

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SPRITE = (200, 72, 72)


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    image = read_background(verify_folder(WEIGHTS / "Pong", "Pong"), "Pong")
    assert image is not None
    return image


class _Filtered:
    """What the envs hand to without_bars: an object with a bar filter."""

    def __init__(self, background: np.ndarray) -> None:
        self.bar_filter = BarFilter(background)


def _scene(background: np.ndarray, x: int, y: int = 100, height: int = 16) -> np.ndarray:
    frame = background.copy()
    frame[y : y + height, x : x + 8] = SPRITE
    return frame


def _play(background: np.ndarray, clean: list[np.ndarray], bars: list[Bars], memory: BarMemory | None) -> list[np.ndarray]:
    detector = _Filtered(background)
    return [without_bars(detector, draw_bars(f, b)[None], memory)[0] for f, b in zip(clean, bars, strict=True)]


def test_a_sprite_wholly_under_a_bar_comes_back_from_the_frames_before(background) -> None:
    clean = [_scene(background, 60 + step, y=104, height=8) for step in range(4)]  # 1 px a step: slow
    bars = [Bars(row=20, col=None), Bars(row=150, col=None), Bars(row=40, col=140), Bars(row=102, col=None)]
    with_memory = _play(background, clean, bars, BarMemory())
    one_frame = _play(background, clean, bars, None)
    # The last bar (rows 102-114) covers the whole sprite (rows 104-111): the one-frame filter paints
    # the field there; the memory shows the sprite where it was a frame ago, a pixel to the left.
    assert not (one_frame[3] == SPRITE).all(axis=-1).any()
    assert (with_memory[3][104:112, 62:70] == SPRITE).all()
    assert (with_memory[3] == SPRITE).all(axis=-1).sum() == 64
    assert np.array_equal(with_memory[3][:, :60], clean[3][:, :60])  # the scenery as the game drew it
    assert np.array_equal(with_memory[0], one_frame[0])  # an episode's first frame: nothing to remember


def test_a_fast_ball_is_not_painted_where_it_was(background) -> None:
    def ball(x: int) -> np.ndarray:
        frame = background.copy()
        frame[100:104, x : x + 2] = SPRITE
        return frame

    clean = [ball(40 + 6 * step) for step in range(3)]  # 6 px a step
    # The last bar (columns 44-53) covers the ball now (52-53) and a frame ago (46-47).
    bars = [Bars(row=10, col=None), Bars(row=180, col=None), Bars(row=None, col=44)]
    out = _play(background, clean, bars, BarMemory())
    assert not (out[2] == SPRITE).all(axis=-1).any()  # lost under the bar, not drawn where it was
    far = _play(background, clean, bars, BarMemory(reach=6))  # a reach as long as its step
    assert (far[2][100:104, 46:48] == SPRITE).all()  # ... would draw a second ball


def test_rows_reset_and_clean_frames_clear_the_memory(background) -> None:
    memory, detector = BarMemory(), _Filtered(background)
    clean = np.stack([_scene(background, 60), _scene(background, 90)])
    first = np.stack([draw_bars(f, Bars(row=20, col=None)) for f in clean])
    without_bars(detector, first, memory)
    covered = np.stack([draw_bars(f, Bars(row=100, col=None)) for f in clean])
    memory.reset(0)
    out = without_bars(detector, covered, memory)
    assert (out[1][100:113, 90:98] == SPRITE).all()  # row 1 remembers its sprite
    assert not (out[0][100:113, 60:68] == SPRITE).all()  # row 0 was reset: the one-frame fill
    assert without_bars(detector, clean, memory) is clean  # clean frames pass untouched ...
    out = without_bars(detector, covered, memory)  # ... and leave nothing to paint from
    assert not (out[1][100:113, 90:98] == SPRITE).all()
    with pytest.raises(ValueError, match="reach must be >= 0 pixels, got -1"):
        BarMemory(reach=-1)
