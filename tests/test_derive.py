"""Settings derived from unlabelled data (trainers.detector.derive): HUD bands, z_scale prior, max_box; and the classifier options (trainers.classify.options)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainers.classify.options import (
    CLASSIFIER_CANDIDATES,
    ClassifierOptions,
    choose_classifier_options,
    pick_candidate,
)
from trainers.detector.derive import (
    HudSettings,
    RowRun,
    hud_bands,
    hud_bands_from_runs,
    max_box,
    motion_box_sizes,
    motion_runs,
    shifted_change,
    z_scale_prior_mean,
)

H, W = 210, 160
# Ten glyphs of 7x5 random cells: like digits, no glyph is (nearly) another one shifted.
DIGITS = list(np.random.default_rng(7).random((10, 7, 5)) < 0.5)


def _digit(frame: np.ndarray, y: int, x: int, value: int, scale: int = 2) -> None:
    """Draw the 14x10-pixel glyph of ``value`` at (y, x)."""
    glyph = np.kron(DIGITS[value % 10], np.ones((scale, scale), bool))
    frame[y : y + glyph.shape[0], x : x + glyph.shape[1]][glyph] = (200, 200, 200)


def _screens(n: int = 120, seed: int = 0, player_range: tuple[int, int] | None = None) -> np.ndarray:
    """Pairs of consecutive synthetic screens (n, 2, 210, 160, 3).

    A score (rows 2-15) that changes in place in about half the screens and now and then between
    the two frames of a pair, a clock (rows 18-31) that changes between every two frames, a ball
    that moves anywhere in rows 40-180; with ``player_range``, a player at the bottom edge
    (rows 196-203) moving a few pixels per frame within that column range.
    """
    rng = np.random.default_rng(seed)
    pairs = np.zeros((n, 2, H, W, 3), np.uint8)
    for i in range(n):
        score = int(rng.integers(0, 2)) * int(rng.integers(1, 3))
        bump = int(rng.random() < 0.05)
        clock = int(rng.integers(0, 9))
        bx, by = int(rng.integers(5, 150)), int(rng.integers(40, 170))
        px = int(rng.integers(*player_range)) if player_range else 0
        for t in range(2):
            f = pairs[i, t]
            _digit(f, 2, 20, score + t * bump)
            _digit(f, 18, 60, clock + t)
            f[by + 2 * t : by + 2 * t + 4, bx + 3 * t : bx + 3 * t + 2] = (250, 80, 80)
            if player_range:
                f[196:204, px + 4 * t : px + 4 * t + 8] = (90, 200, 90)
    return pairs


def test_score_and_clock_make_a_top_band_the_ball_none() -> None:
    bands, runs = hud_bands(_screens())
    # Score rows 2-15 and clock rows 18-31 are one band, with two rows of margin.
    assert bands == [(0, 0, W, 34)]
    # The ball's rows see it too rarely to be a HUD (and it goes everywhere).
    ball = [r for r in runs if r.y0 >= 40]
    assert ball and not any(HudSettings().is_hud(r) for r in ball)
    clock = next(r for r in runs if r.y0 <= 18 < r.y1)
    # It changes between every two frames, in place: no shift explains that.
    assert clock.change_rate == 1.0 and clock.shift_share < HudSettings.moving_shift_share


def test_a_narrow_moving_player_at_the_edge_is_not_a_hud() -> None:
    # Its columns are as few as a score's, but a shift explains its changes: it moves.
    bands, runs = hud_bands(_screens(player_range=(60, 80)))
    assert bands == [(0, 0, W, 34)]
    player = next(r for r in runs if r.y0 >= 190)
    assert player.footprint <= HudSettings.max_footprint
    assert player.change_rate == 1.0 and player.shift_share > HudSettings.moving_shift_share


def test_shifted_change_tells_a_move_from_a_change_in_place() -> None:
    a = np.zeros((H, W, 3), np.uint8)
    b = a.copy()
    a[100:108, 50:58] = 255
    b[100:108, 54:62] = 255  # moved 4 px right
    assert shifted_change(a, b, 90, 120) is True
    c = a.copy()
    _digit(c, 100, 50, 1)
    d = a.copy()
    _digit(d, 100, 50, 2)
    assert shifted_change(c, d, 90, 120) is False
    assert shifted_change(a, a.copy(), 0, H) is None


def test_runs_split_at_still_rows_and_measure_footprint() -> None:
    moving = np.zeros((10, H, W), bool)
    moving[:, 5:8, 10:20] = True  # every frame, 10 columns
    moving[:5, 50:52, :] = True  # half the frames, every column
    moving[0, 100, 0] = True  # one frame: below the quiet threshold of 0.2
    runs = motion_runs(moving, quiet=0.2)
    assert [(r.y0, r.y1) for r in runs] == [(5, 8), (50, 52)]
    assert runs[0].activity == 1.0 and runs[0].footprint == pytest.approx(10 / W)
    assert runs[1].activity == 0.5 and runs[1].footprint == 1.0
    with pytest.raises(ValueError, match=r"non-empty \(N, H, W\)"):
        motion_runs(np.zeros((0, H, W), bool))


def _hud(y0: int, y1: int) -> RowRun:
    return RowRun(y0, y1, activity=0.8, footprint=0.1)


def _play(y0: int, y1: int) -> RowRun:
    return RowRun(y0, y1, activity=0.5, footprint=0.9)


def test_band_rules_edge_distance_gap_and_size() -> None:
    s = HudSettings()
    # Top score and clock, play, bottom lives and score.
    assert hud_bands_from_runs([_hud(1, 9), _hud(14, 21), _play(34, 190), _hud(196, 205)]) == [(0, 23), (194, 210)]
    # A narrow run far below the first one (Breakout's bricks) does not join the band.
    assert hud_bands_from_runs([_hud(5, 15), _hud(81, 93), _play(100, 190)]) == [(0, 17)]
    # Too far from the edge to be a HUD, too tall, or not HUD-like: no band.
    assert hud_bands_from_runs([_hud(s.max_edge_distance + 1, 60), _play(70, 190)]) == []
    assert hud_bands_from_runs([_hud(0, 80)]) == []
    assert hud_bands_from_runs([_play(27, 37), _hud(40, 45)]) == []
    # The margin never reaches past half the gap to the next run.
    assert hud_bands_from_runs([_hud(0, 10), _play(12, 100)]) == [(0, 11)]
    moving = RowRun(0, 10, activity=0.9, footprint=0.1, change_rate=0.6, shift_share=0.5)
    assert hud_bands_from_runs([moving, _play(30, 100)]) == []


def test_hud_bands_refuses_bad_frames() -> None:
    with pytest.raises(ValueError, match=r"uint8 \(N, 2, 210, 160, 3\)"):
        hud_bands(np.zeros((4, 210, 160, 3), np.uint8))


def test_real_pong_probe_finds_its_score_band() -> None:
    from trainers.pipeline import probe_pairs

    pairs = probe_pairs("Pong", 32, seed=0)
    assert pairs.shape == (32, 2, H, W, 3) and pairs.dtype == np.uint8
    assert np.array_equal(pairs, probe_pairs("Pong", 32, seed=0))  # seeded
    bands, _ = hud_bands(pairs)
    # OCAtari's score boxes span rows 1-21 and the ball bounces off the wall at row 24.
    assert len(bands) == 1 and bands[0][1] == 0 and 21 <= bands[0][3] <= 24


# ---------------------------------------------------------------------------- box sizes
def test_z_scale_prior_sits_between_the_small_and_large_boxes() -> None:
    # One object size: boxes whose larger side is 16 of 210 rows (Pong's paddles) give MOC's Pong prior.
    paddles = np.array([[4 / W, 16 / H]] * 5)
    start, end = z_scale_prior_mean(paddles)
    assert end == round(math.log((16 / H) / (1 - 16 / H)), 2) == -2.5
    assert start == -2.0
    bigger = z_scale_prior_mean(paddles * 3)
    assert bigger[1] > end  # larger objects, larger prior boxes
    # Two sizes, the large one common (Tennis' players and ball): the prior side is their geometric
    # mean, 8 rows for 4 and 16, not the median's 16, however many more large boxes there are.
    for n_large in (6, 60):
        mixed = np.array([[4 / W, 16 / H]] * n_large + [[2 / W, 4 / H]] * (n_large // 2))
        assert z_scale_prior_mean(mixed)[1] == round(math.log((8 / H) / (1 - 8 / H)), 2)
    with pytest.raises(ValueError, match=r"non-empty \(N, 2\)"):
        z_scale_prior_mean(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="finite and > 0"):
        z_scale_prior_mean(np.array([[0.1, -0.2]]))


def test_max_box_is_a_margin_times_a_quantile_at_least_the_minimum() -> None:
    sizes = np.column_stack([np.arange(1, 1001, dtype=float), np.full(1000, 20.0)])
    w, h = max_box(sizes, margin=2.0, quantile=0.5)
    assert (w, h) == (round(2 * 500.5, 1), 40.0)
    assert max_box(np.full((10, 2), 3.0), minimum=(10.0, 13.125)) == (10.0, 13.1)
    with pytest.raises(ValueError, match="margin must be > 0"):
        max_box(sizes, margin=0)


def test_motion_box_sizes_reads_the_targets(tiny_pong) -> None:
    from trainers.data.reader import load_split

    d = load_split(tiny_pong, "train")
    sizes = motion_box_sizes(tiny_pong)
    assert sizes.shape == (int((d.motion_pres > 0.5).sum()), 2)
    assert np.allclose(sizes, d.motion_where[..., :2][d.motion_pres > 0.5])


# ---------------------------------------------------------------------------- classifier options
def _samples(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two categories with the same z_what and different box sizes, 200 samples per half."""
    rng = np.random.default_rng(seed)
    n = 400
    z = rng.normal(size=(n, 4))
    labels = np.array(["Ball", "Player"] * (n // 2), dtype=object)
    sizes = np.where((labels == "Ball")[:, None], [2.0, 4.0], [4.0, 16.0]) * rng.uniform(0.9, 1.1, (n, 2))
    return z, labels, sizes, np.arange(n) < n // 2


def test_options_that_read_the_box_size_win_when_only_the_size_tells() -> None:
    z, labels, sizes, half = _samples()
    chosen, table = choose_classifier_options(z, labels, sizes, half)
    assert chosen.size_weight > 0
    # Without colours the candidates that read them are left out.
    searched = [c for c in CLASSIFIER_CANDIDATES if not c.colour_weight]
    assert len(table) == len(searched) < len(CLASSIFIER_CANDIDATES)
    best = max(row["accuracy"] for row in table)
    assert best > 0.95 and max(r["accuracy"] for r in table if r["size_weight"] == 0) < 0.8
    # Among equally good candidates the earliest (fewest labels, simplest) wins.
    assert chosen == next(c for c, r in zip(searched, table, strict=True) if r["accuracy"] >= best - 0.002)


def test_options_that_read_the_colour_win_when_only_the_colour_tells() -> None:
    z, labels, sizes, half = _samples()
    sizes = np.full_like(sizes, 12.0)  # one size: only the colour tells the two apart
    colours = np.where((labels == "Ball")[:, None], [236, 236, 236], [240, 128, 128]).astype(np.uint8)
    chosen, table = choose_classifier_options(z, labels, sizes, half, colours=colours)
    assert len(table) == len(CLASSIFIER_CANDIDATES)
    assert chosen.colour_weight > 0
    assert max(r["accuracy"] for r in table if r["colour_weight"] == 0) < 0.8 < 0.95 < max(r["accuracy"] for r in table)
    with pytest.raises(ValueError, match="colours need one row per sample"):
        choose_classifier_options(z, labels, sizes, half, colours=colours[:-1])


def test_no_ambiguity_test_wins_a_tie() -> None:
    z, labels, sizes, half = _samples()
    colours = np.where((labels == "Ball")[:, None], [236, 236, 236], [240, 128, 128]).astype(np.uint8)
    # Colours tell the categories apart at once: refusing ambiguous samples adds nothing.
    chosen, table = choose_classifier_options(z, labels, sizes, half, colours=colours)
    twin = {k: v for k, v in chosen.as_json().items() if k != "max_ratio"}
    pair = [r for r in table if {k: r[k] for k in twin} == twin]
    assert chosen.max_ratio == 1.0 and pair[0]["accuracy"] >= pair[1]["accuracy"] - 0.002
    assert [r["max_ratio"] for r in pair] == [1.0, 0.9]


def test_the_colour_twin_wins_only_where_it_names_strictly_better() -> None:
    plain, colour = ClassifierOptions(8, "prototypes"), ClassifierOptions(8, "prototypes", colour_weight=3.0)
    later = ClassifierOptions(64, "prototypes")
    cands = (plain, colour, later)
    # Pong's case: the colour twin is better by less than the tolerance; it still wins.
    assert pick_candidate(cands, [0.9921, 0.9933, 0.9930]) == 1
    # Boxing's: a tie keeps the simpler one; so does a worse twin.
    assert pick_candidate(cands, [0.9951, 0.9951, 0.9950]) == 0
    assert pick_candidate(cands, [0.9951, 0.9940, None]) == 0
    # Outside the tolerance the best wins as before, colour or not.
    assert pick_candidate(cands, [0.90, 0.91, 0.99]) == 2
    with pytest.raises(ValueError, match="no candidate has an accuracy"):
        pick_candidate(cands, [None, None, None])


def test_option_search_errors() -> None:
    z, labels, sizes, half = _samples()
    unlabelled = labels.copy()
    unlabelled[~half] = ""
    with pytest.raises(ValueError, match="score half of the samples holds no labelled"):
        choose_classifier_options(z, unlabelled, sizes, half)
    with pytest.raises(ValueError, match="one row per sample"):
        choose_classifier_options(z[:-1], labels, sizes, half)
    only = (ClassifierOptions(),)
    assert choose_classifier_options(z, labels, sizes, half, candidates=only)[0] == ClassifierOptions()
