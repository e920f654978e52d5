"""The bar filter: frame-spanning lines in colours foreign to the game's background are painted
over with the background image, clean frames are left alone, the image loads safely, and the
envs read labels from the filtered frame while the observation and render() keep the bars."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from safetensors.numpy import save

import moc_envs
from moc_envs.errors import CorruptWeightsError
from moc_envs.perception.distractors import (
    BACKGROUND_FILE,
    BACKGROUND_FORMAT,
    BAR_COLOR,
    HORIZONTAL_THICKNESS,
    VERTICAL_THICKNESS,
    BarFilter,
    Bars,
    background_bytes,
    draw_bars,
    read_background,
    write_background,
)
from moc_envs.weights.manifest import verify_folder, write_manifest

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
GAMES = ("Pong", "Seaquest", "Freeway")


def shipped_background(game: str) -> np.ndarray:
    image = read_background(verify_folder(WEIGHTS / game, game), game)
    assert image is not None, f"weights/{game} ships no {BACKGROUND_FILE}"
    return image


def played_frames(game: str, steps: int = 300, seed: int = 3) -> np.ndarray:
    """Frames of random play, cropped to the detector's 210 rows, from a seed no image was made on."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(moc_envs.get_game(game).ale_id)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    frames = []
    try:
        for _ in range(steps):
            obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            frames.append(obs[:210])
            if term or trunc:
                env.reset()
    finally:
        env.close()
    return np.stack(frames)


@pytest.fixture(scope="module", params=GAMES)
def game_frames(request) -> tuple[str, np.ndarray, BarFilter]:
    game = request.param
    return game, played_frames(game), BarFilter(shipped_background(game))


def test_every_shipped_game_has_a_background_image() -> None:
    for game in moc_envs.game_names():
        if (WEIGHTS / game / "manifest.json").is_file():
            assert shipped_background(game).shape == (210, 160, 3)


def test_clean_frames_pass_through_untouched(game_frames) -> None:
    _, frames, bar_filter = game_frames
    rows, cols = bar_filter.find(frames)
    assert not rows.any() and not cols.any()
    assert bar_filter(frames) is frames


def test_bars_are_found_exactly_and_painted_over_from_their_sides(game_frames) -> None:
    _, frames, bar_filter = game_frames
    rng = np.random.default_rng(0)
    bars = [Bars(int(rng.integers(0, 210 - 13)), int(rng.integers(0, 160 - 10))) for _ in frames]
    noisy = np.stack([draw_bars(f, b) for f, b in zip(frames, bars, strict=True)])
    rows, cols = bar_filter.find(noisy)
    out = bar_filter(noisy)
    for i, b in enumerate(bars):
        assert np.flatnonzero(rows[i]).tolist() == list(range(b.row, b.row + HORIZONTAL_THICKNESS))
        assert np.flatnonzero(cols[i]).tolist() == list(range(b.col, b.col + VERTICAL_THICKNESS))
        under = np.zeros((210, 160), bool)
        under[b.row : b.row + HORIZONTAL_THICKNESS] = True
        under[:, b.col : b.col + VERTICAL_THICKNESS] = True
        assert np.array_equal(out[i][~under], frames[i][~under])  # the rest of the frame as it was
        # In each column of the horizontal bar (outside the vertical one) a pixel takes the
        # background's colour where that is the colour just above or below the bar, else the
        # pixel above (upper half) or below (lower half).
        top, bottom = b.row, b.row + HORIZONTAL_THICKNESS
        middle = (top + bottom + 1) // 2
        outside = np.ones(160, bool)
        outside[b.col : b.col + VERTICAL_THICKNESS] = False
        above = frames[i][top - 1 if top else bottom]
        below = frames[i][bottom] if bottom < 210 else above
        for row in range(top, bottom):
            mode = bar_filter.background[row]
            agree = (mode == above).all(axis=-1) | (mode == below).all(axis=-1)
            want = np.where(agree[:, None], mode, above if row < middle else below)
            assert (out[i][row][outside] == want[outside]).all()
    assert not (out == BAR_COLOR).all(axis=-1).any()
    assert np.array_equal(noisy[0], draw_bars(frames[0], bars[0]))  # the input is not written to


def test_an_object_crossing_a_bar_is_joined_up_and_one_cut_by_it_is_not_extended() -> None:
    background = shipped_background("Pong")
    field = tuple(int(v) for v in background[120, 80])  # the playing field's colour
    frame = np.empty((1, 210, 160, 3), np.uint8)
    frame[0] = background
    frame[0, 40:120, 30:34] = (200, 72, 72)  # a tall sprite through the bar
    frame[0, 60:76, 100:104] = (92, 186, 92)  # a paddle whose lower part the bar covers
    assert (background[60:90, 100:104] == field).all() and (background[40:120, 30:34] == field).all()
    noisy = draw_bars(frame[0], Bars(row=70, col=None))[None]
    out = BarFilter(background)(noisy)
    assert np.array_equal(out[0, :, 30:34], frame[0, :, 30:34])
    paddle = np.flatnonzero((out[0, :, 100] == (92, 186, 92)).all(axis=-1))
    assert paddle[0] == 60 and paddle[-1] == 69  # its visible part, not grown into the bar
    assert np.array_equal(out[0, 70:83, :30], background[70:83, :30])  # the field continues
    assert not (out[0] == BAR_COLOR).all(axis=-1).any()


def test_a_wall_the_bar_cuts_is_not_thickened() -> None:
    """Pong's top wall ends inside the bar: the background image says where, not the sides."""
    background = shipped_background("Pong")
    is_wall = (background[:, 80] == background[30, 80]).all(axis=-1)
    last = 30
    while is_wall[last + 1]:
        last += 1
    assert 30 < last < 60 and not is_wall[last + 1 : last + 20].any()  # the top wall, the field below
    frame = background[None].copy()
    noisy = draw_bars(frame[0], Bars(row=last - 3, col=None))[None]
    assert np.array_equal(BarFilter(background)(noisy), frame)


def test_a_thick_run_of_one_foreign_colour_is_the_game_not_a_bar() -> None:
    """Pong recolours its whole field when a match ends: no bar is that thick."""
    background = shipped_background("Pong")
    frame = np.zeros((1, 210, 160, 3), np.uint8)
    frame[0, 30:200] = (53, 95, 24)
    assert BarFilter(background)(frame) is frame
    # Nor several thinner runs that add up to more than one bar's worth (the score band apart).
    frame[0, 50:55] = 0
    frame[0, 100:105] = 0
    assert BarFilter(background)(frame) is frame


def test_a_bar_in_a_background_colour_is_left_alone() -> None:
    """The rule's limit, on purpose: a line of the game's own colours may be the game."""
    background = shipped_background("Pong")
    frame = played_frames("Pong", steps=5)[-1:]
    colour = tuple(int(v) for v in background[100, 80])
    lined = frame.copy()
    lined[0, 100:105] = colour
    assert BarFilter(background)(lined) is lined


def test_a_line_broken_by_one_pixel_is_not_a_bar() -> None:
    background = shipped_background("Pong")
    frame = played_frames("Pong", steps=5)[-1:].copy()
    frame[0, 50:63] = BAR_COLOR
    frame[0, 55, 7] = (0, 0, 0)
    rows, _ = BarFilter(background).find(frame)
    assert np.flatnonzero(rows[0]).tolist() == [r for r in range(50, 63) if r != 55]


def test_background_round_trip_and_refusals(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    folder = tmp_path / "Pong"
    folder.mkdir()
    write_background(folder, "Pong", image)
    write_manifest(folder, "Pong")
    assert np.array_equal(read_background(verify_folder(folder, "Pong"), "Pong"), image)

    def planted(data: bytes) -> None:
        (folder / BACKGROUND_FILE).write_bytes(data)
        write_manifest(folder, "Pong")

    planted(background_bytes(image, "Boxing"))
    with pytest.raises(CorruptWeightsError, match="game 'Boxing'"):
        read_background(verify_folder(folder, "Pong"), "Pong")
    planted(save({"mode": image[:200]}, metadata={"format": BACKGROUND_FORMAT, "game": "Pong"}))
    with pytest.raises(CorruptWeightsError, match=r"uint8 \(210, 160, 3\); got"):
        read_background(verify_folder(folder, "Pong"), "Pong")
    planted(save({"mode": image, "x": image}, metadata={"format": BACKGROUND_FORMAT, "game": "Pong"}))
    with pytest.raises(CorruptWeightsError, match="one tensor 'mode'"):
        read_background(verify_folder(folder, "Pong"), "Pong")
    (folder / BACKGROUND_FILE).unlink()
    write_manifest(folder, "Pong")
    assert read_background(verify_folder(folder, "Pong"), "Pong") is None
    with pytest.raises(ValueError, match=r"background must be uint8 of shape \(210, 160, 3\), got float64"):
        BarFilter(np.zeros((210, 160, 3)))


def test_moc_envs_background_records_a_dataset_image_into_a_folder(tmp_path: Path) -> None:
    from trainers.data.background import main
    from trainers.data.storage import BACKGROUND_FILE as PNG
    from trainers.data.storage import save_png

    image = shipped_background("Pong")
    data, folder = tmp_path / "data", tmp_path / "Pong"
    data.mkdir()
    folder.mkdir()
    save_png(data / PNG, image)
    (folder / "note.txt").write_text("kept")
    write_manifest(folder, "Pong")
    main(["--game", "Pong", "--weights", str(folder), "--data", str(data)])
    files = verify_folder(folder, "Pong")
    assert files.listed("note.txt") and np.array_equal(read_background(files, "Pong"), image)
    with pytest.raises(FileNotFoundError, match="holds no background image"):
        main(["--game", "Pong", "--weights", str(folder), "--data", str(tmp_path)])


def _capture_builder_frames(builder, into: list) -> None:
    update = builder.update

    def spy(detections, frame=None, ram=None, screen=None):
        into.append(frame)
        return update(detections, frame=frame, ram=ram, screen=screen)

    builder.update = spy


def test_the_env_reads_labels_from_the_filtered_frame_and_shows_the_bars() -> None:
    env = gym.make("MOC/Pong-v0", obs_mode="objects+frame", render_mode="rgb_array", distractors="both")
    try:
        assert env.get_wrapper_attr("detector").bar_filter is not None
        seen: list = []
        _capture_builder_frames(env.get_wrapper_attr("builder"), seen)
        obs, _ = env.reset(seed=4)
        for _ in range(3):
            obs, *_ = env.step(0)
        barred = (obs["frame"] == BAR_COLOR).all(axis=-1)
        assert barred.all(axis=1).sum() == HORIZONTAL_THICKNESS and barred.all(axis=0).sum() == VERTICAL_THICKNESS
        assert ((env.render() == BAR_COLOR).all(axis=-1)).any()
        assert len(seen) == 4 and not any((f == BAR_COLOR).all(axis=-1).any() for f in seen)
    finally:
        env.close()


def test_the_vector_env_reads_labels_from_the_filtered_frames() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, obs_mode="objects+frame", distractors="both", distractor_seed=3)
    try:
        seen: list = []
        for builder in envs.builders:
            _capture_builder_frames(builder, seen)
        obs, _ = envs.reset(seed=9)
        obs, *_ = envs.step(np.zeros(2, np.int64))
        assert all((f == BAR_COLOR).all(axis=-1).any() for f in obs["frame"])
        assert len(seen) == 4 and not any((f == BAR_COLOR).all(axis=-1).any() for f in seen)
    finally:
        envs.close()
