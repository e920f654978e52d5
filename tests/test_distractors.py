"""Distractor bars ("Noisy Atari"): the drawing, the env option on every kind of env, seeding,
and the dataset builder and ``moc-envs train`` passing it on. The RAM oracle keeps models out."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import moc_envs
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.envs.wrapper import ObjectCentricWrapper
from moc_envs.perception.detection import Detection
from moc_envs.perception.distractors import (
    BAR_COLOR,
    HORIZONTAL_THICKNESS,
    VERTICAL_THICKNESS,
    Bars,
    Distractors,
    draw_bars,
)

COLOR = np.array(BAR_COLOR, np.uint8)
STEPS = 12


# ---------------------------------------------------------------- helpers
def bar_mask(bars: Bars) -> np.ndarray:
    """The (210, 160) pixels ``bars`` cover, worked out here independently of draw_bars."""
    mask = np.zeros((210, 160), bool)
    if bars.row is not None:
        mask[bars.row : bars.row + 13] = True
    if bars.col is not None:
        mask[:, bars.col : bars.col + 10] = True
    return mask


def found_bars(frame: np.ndarray) -> Bars:
    """The bars visible in ``frame``: full rows / columns of the bar colour, checked for thickness."""
    on = (frame == COLOR).all(axis=-1)
    rows, cols = np.flatnonzero(on.all(axis=1)), np.flatnonzero(on.all(axis=0))
    for idx, thick in ((rows, 13), (cols, 10)):
        if idx.size:
            assert idx.size == thick and (np.diff(idx) == 1).all(), f"bar {idx.tolist()}"
    return Bars(row=int(rows[0]) if rows.size else None, col=int(cols[0]) if cols.size else None)


def expected_stream(kind: str, reset_seed: int | None, n: int, distractor_seed: int | None = None) -> list[Bars]:
    """The bars of the first frame and of ``n`` steps after ``reset(seed=reset_seed)``."""
    d = Distractors(kind, distractor_seed)  # type: ignore[arg-type]
    return [d.reset(reset_seed), *(d.step() for _ in range(n))]


def rollout(game: str = "Pong", seed: int = 0, steps: int = STEPS, **kw) -> dict[str, list]:
    """Frames, RAM, rewards, flags, objects and RAM labels of a fixed action sequence."""
    env = gym.make(f"MOC/{game}-v0", detector="ram", obs_mode="objects+frame", ram_labels=True, **kw)
    actions = np.random.default_rng(123).integers(0, env.action_space.n, steps)
    out: dict[str, list] = {k: [] for k in ("frame", "objects_obs", "ram", "reward", "done", "objects", "ram_labels")}

    def keep(obs, info, reward=0.0, done=False) -> None:
        out["frame"].append(obs["frame"].copy())
        out["objects_obs"].append(obs["objects"].copy())
        out["ram"].append(env.unwrapped.ale.getRAM().copy())
        out["reward"].append(float(reward))
        out["done"].append(done)
        out["objects"].append(info["objects"])
        out["ram_labels"].append(info["ram_labels"])

    try:
        keep(*env.reset(seed=seed))
        for a in actions:
            obs, r, term, trunc, info = env.step(int(a))
            keep(obs, info, r, (term, trunc))
    finally:
        env.close()
    return out


@pytest.fixture(scope="module")
def clean() -> dict[str, list]:
    return rollout(seed=0)


# ---------------------------------------------------------------- the drawing
def test_bar_thickness_is_permakeys_scaled_to_the_ale_frame() -> None:
    # 5 px of 84 -> 12.5 of 210 rows (half up: 13) and 9.52 of 160 columns (10).
    assert (HORIZONTAL_THICKNESS, VERTICAL_THICKNESS) == (13, 10)
    assert BAR_COLOR == (128, 0, 255)


@pytest.mark.parametrize("bars", [Bars(0, None), Bars(197, None), Bars(None, 0), Bars(None, 150), Bars(40, 77)])
def test_draw_bars_paints_exactly_the_bar_pixels_and_leaves_its_input(bars: Bars) -> None:
    frame = np.random.default_rng(0).integers(0, 128, (210, 160, 3), dtype=np.uint8)
    before = frame.copy()
    out = draw_bars(frame, bars)
    mask = bar_mask(bars)
    assert (out[mask] == COLOR).all()
    assert np.array_equal(out[~mask], frame[~mask])
    assert np.array_equal(frame, before)  # a copy is drawn on
    assert found_bars(out) == bars
    assert np.array_equal(draw_bars(frame, None), frame)
    with pytest.raises(ValueError, match=r"frame must be uint8 of shape \(210, 160, 3\), got float32"):
        draw_bars(frame.astype(np.float32), bars)


def test_positions_are_uniform_over_every_place_a_whole_bar_fits() -> None:
    d = Distractors("both", 0)
    draws = [d.step() for _ in range(20000)]
    rows = np.bincount([b.row for b in draws], minlength=198)
    cols = np.bincount([b.col for b in draws], minlength=151)
    assert rows.size == 198 and cols.size == 151  # never past 210 - 13 or 160 - 10
    assert rows.min() > 0 and cols.min() > 0  # every position occurs, the edges included
    # Counts per position stay near their mean (~101 and ~132): a loose check of uniformity.
    assert rows.max() < 2 * rows.mean() and cols.max() < 2 * cols.mean()


def test_both_is_the_union_of_horizontal_and_vertical_for_the_same_seeds() -> None:
    both = expected_stream("both", 4, 20)
    horizontal = expected_stream("horizontal", 4, 20)
    vertical = expected_stream("vertical", 4, 20)
    assert [b.row for b in both] == [b.row for b in horizontal] and all(b.col is None for b in horizontal)
    assert [b.col for b in both] == [b.col for b in vertical] and all(b.row is None for b in vertical)


# ---------------------------------------------------------------- the single env
def test_bars_change_only_frame_pixels_ram_rewards_and_truth_are_untouched(clean) -> None:
    noisy = rollout(seed=0, distractors="both")
    for key in ("ram", "reward", "done", "ram_labels", "objects", "objects_obs"):
        if key in ("ram", "objects_obs"):
            same = all(np.array_equal(a, b) for a, b in zip(clean[key], noisy[key], strict=True))
        else:
            same = clean[key] == noisy[key]
        assert same, f"{key} changed with distractors"
    expected = expected_stream("both", 0, STEPS)
    for t, (c, n) in enumerate(zip(clean["frame"], noisy["frame"], strict=True)):
        bars = found_bars(n)
        assert bars == expected[t]  # one new position per step (and at reset), from the seeded stream
        changed = (c != n).any(axis=-1)
        assert not (changed & ~bar_mask(bars)).any()  # nothing changes outside the bars
        assert np.array_equal(n, draw_bars(c, bars))
    assert len({b.row for b in expected}) > 1 and len({b.col for b in expected}) > 1


@pytest.mark.parametrize("kind", ["horizontal", "vertical"])
def test_one_bar_kinds_draw_only_their_bar(clean, kind: str) -> None:
    noisy = rollout(seed=0, steps=4, distractors=kind)
    for t, (bars, frame) in enumerate(zip(expected_stream(kind, 0, 4), noisy["frame"], strict=True)):
        assert found_bars(frame) == bars
        assert (bars.row is None) == (kind == "vertical") and (bars.col is None) == (kind == "horizontal")
        assert np.array_equal(frame, draw_bars(clean["frame"][t], bars))


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    a = rollout(seed=5, steps=6, distractors="both")
    b = rollout(seed=5, steps=6, distractors="both")
    assert all(np.array_equal(x, y) for x, y in zip(a["frame"], b["frame"], strict=True))
    other_reset = [found_bars(f) for f in rollout(seed=6, steps=6, distractors="both")["frame"]]
    assert other_reset != [found_bars(f) for f in a["frame"]]
    # distractor_seed moves the bars and nothing else.
    c = rollout(seed=5, steps=6, distractors="both", distractor_seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(a["ram"], c["ram"], strict=True))
    assert [found_bars(f) for f in c["frame"]] == expected_stream("both", 5, 6, distractor_seed=11)
    assert [found_bars(f) for f in c["frame"]] != [found_bars(f) for f in a["frame"]]


def test_a_seeded_reset_reproduces_the_bars_and_an_unseeded_one_continues() -> None:
    env = gym.make("MOC/Pong-v0", detector="ram", obs_mode="objects+frame", distractors="both", distractor_seed=3)
    try:
        first = [found_bars(env.reset(seed=9)[0]["frame"])] + [found_bars(env.step(0)[0]["frame"]) for _ in range(3)]
        again = [found_bars(env.reset(seed=9)[0]["frame"])] + [found_bars(env.step(0)[0]["frame"]) for _ in range(3)]
        assert first == again == expected_stream("both", 9, 3, distractor_seed=3)
        # Unseeded: the stream goes on where the last episode left it.
        fresh = Distractors("both", 3)
        fresh.reset(9)
        for _ in range(3):
            fresh.step()
        assert found_bars(env.reset()[0]["frame"]) == fresh.step()
    finally:
        env.close()


def test_flicker_games_get_the_bars_after_the_max_of_two_frames_once_per_step() -> None:
    assert moc_envs.get_game("MsPacman").flicker
    clean_run = rollout("MsPacman", seed=2, steps=6)
    noisy = rollout("MsPacman", seed=2, steps=6, distractors="horizontal")
    assert all(np.array_equal(x, y) for x, y in zip(clean_run["ram"], noisy["ram"], strict=True))
    # One position per env step (frameskip 4 emulator frames), drawn on the pooled frame.
    for bars, c, n in zip(expected_stream("horizontal", 2, 6), clean_run["frame"], noisy["frame"], strict=True):
        assert np.array_equal(n, draw_bars(c, bars))


class NoObjects:
    """A detector that finds nothing, so that render() is the frame enlarged and nothing else."""

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        return [[] for _ in frames]


def test_render_shows_the_bars() -> None:
    env = gym.make("MOC/Pong-v0", detector=NoObjects(), render_mode="rgb_array", obs_mode="objects+frame", distractors="both")
    try:
        obs, _ = env.reset(seed=1)
        obs, *_ = env.step(0)
        image = env.render()
        assert found_bars(obs["frame"]) == expected_stream("both", 1, 1)[1]
        assert np.array_equal(image, obs["frame"].repeat(3, axis=0).repeat(3, axis=1))
        on = (image == COLOR).all(axis=-1)
        assert on.all(axis=1).sum() == 3 * 13 and on.all(axis=0).sum() == 3 * 10
    finally:
        env.close()


def test_the_env_checker_passes_with_distractors() -> None:
    """check_env resets twice with one seed and compares the observations, the frame included."""
    import warnings

    from gymnasium.utils.env_checker import check_env

    env = gym.make(
        "MOC/Pong-v0", detector="ram", obs_mode="objects+frame", render_mode="rgb_array", distractors="both"
    )
    try:
        with warnings.catch_warnings():
            # check_env suggests env.unwrapped, which is the bare ALE env here, not ours.
            warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")
            check_env(env, skip_render_check=False)
    finally:
        env.close()


# ---------------------------------------------------------------- vector envs
def _frames(obs) -> np.ndarray:
    return obs["frame"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasium_vectorization_modes_honour_the_option(mode: str) -> None:
    envs = gym.make_vec(
        "MOC/Pong-v0", num_envs=2, vectorization_mode=mode, detector="ram", obs_mode="objects+frame",
        distractors="both", distractor_seed=4,
    )  # fmt: skip
    try:
        seen = [[found_bars(f) for f in _frames(envs.reset(seed=10)[0])]]
        for _ in range(3):
            seen.append([found_bars(f) for f in _frames(envs.step(np.zeros(2, np.int64))[0])])
    finally:
        envs.close()
    for i in range(2):  # gymnasium seeds env i with 10 + i: each env its own stream, as a single env
        assert [s[i] for s in seen] == expected_stream("both", 10 + i, 3, distractor_seed=4)


@pytest.mark.parametrize("workers", [None, 2])
def test_moc_vector_envs_honour_the_option_in_every_process(workers: int | None) -> None:
    envs = moc_envs.make_vec(
        "MOC/Pong-v0", 2, detector="ram", obs_mode="objects+frame", distractors="vertical",
        distractor_seed=8, workers=workers,
    )  # fmt: skip
    try:
        assert isinstance(envs, MocVectorEnv) == (workers is None)
        # Unseeded: the rows' streams come from distractor_seed and the row, whichever process runs it.
        unseeded = [found_bars(f) for f in _frames(envs.reset()[0])]
        assert unseeded == [Distractors("vertical", 8, index=i).step() for i in range(2)]
        assert unseeded[0] != unseeded[1]
        seen = [[found_bars(f) for f in _frames(envs.reset(seed=20)[0])]]
        for _ in range(3):
            seen.append([found_bars(f) for f in _frames(envs.step(np.zeros(2, np.int64))[0])])
    finally:
        envs.close()
    for i in range(2):
        assert [s[i] for s in seen] == expected_stream("vertical", 20 + i, 3, distractor_seed=8)


def test_vector_env_rows_match_single_envs_and_same_step_autoreset_redraws() -> None:
    envs = moc_envs.make_vec(
        "MOC/Pong-v0", 2, detector="ram", obs_mode="objects+frame", distractors="both",
        autoreset_mode="SameStep", max_episode_steps=2,
    )  # fmt: skip
    try:
        obs, _ = envs.reset(seed=0)
        streams = [Distractors("both"), Distractors("both")]
        assert [found_bars(f) for f in _frames(obs)] == [s.reset(i) for i, s in enumerate(streams)]
        envs.step(np.zeros(2, np.int64))
        obs, _, _, truncated, infos = envs.step(np.zeros(2, np.int64))  # truncated: reset in the same step
        assert truncated.all()
        ended = [found_bars(f["frame"]) for f in infos["final_obs"]]
        for s in streams:
            s.step()  # the first step's bars
        assert ended == [s.step() for s in streams]
        assert [found_bars(f) for f in _frames(obs)] == [s.reset(None) for s in streams]
    finally:
        envs.close()


# ---------------------------------------------------------------- bad values
BAD = [
    ({"distractors": "diagonal"}, ValueError, "distractors must be one of 'horizontal', 'vertical', 'both' or None, got 'diagonal'"),
    ({"distractors": "Both"}, ValueError, "got 'Both'"),
    ({"distractors": True}, ValueError, "got True"),
    ({"distractors": "both", "distractor_seed": -1}, ValueError, "distractor_seed must be None or a non-negative int, got -1"),
    ({"distractors": "both", "distractor_seed": "3"}, TypeError, "distractor_seed must be None or a non-negative int, got str '3'"),
    ({"distractors": "both", "distractor_seed": 1.0}, TypeError, "got float 1.0"),
    ({"distractors": "both", "distractor_seed": True}, TypeError, "got bool True"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD)
@pytest.mark.parametrize("maker", ["make", "make_vec", "workers", "wrapper"])
def test_bad_values_are_refused_with_expected_and_got(maker: str, kwargs: dict, error: type, message: str) -> None:
    import re

    with pytest.raises(error, match=re.escape(message)):
        if maker == "make":
            gym.make("MOC/Pong-v0", detector="ram", **kwargs)
        elif maker == "make_vec":
            moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", **kwargs)
        elif maker == "workers":  # refused in this process, before a worker starts
            moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", workers=2, **kwargs)
        else:
            inner = gym.make("ALE/Pong-v5")
            try:
                ObjectCentricWrapper(inner, detector="ram", **kwargs)
            finally:
                inner.close()


def test_a_misspelt_keyword_and_a_bad_row_offset_are_refused() -> None:
    with pytest.raises(TypeError, match="Did you mean 'distractors'"):
        gym.make("MOC/Pong-v0", detector="ram", distractor="both")
    with pytest.raises(TypeError, match="Did you mean 'distractor_seed'"):
        moc_envs.make_vec("MOC/Pong-v0", 2, detector="ram", distractors_seed=1)
    with pytest.raises(ValueError, match="row_offset must be an int >= 0, got -1"):
        MocVectorEnv("Pong", 1, detector="ram", row_offset=-1)


# ---------------------------------------------------------------- the dataset builder and the pipeline
SMALL = dict(
    game="Pong", train=4, val=0, test=0, seed=0, progress=False, warmup=20, warmup_jitter=0,
    stacks_per_episode=4, chunk_stacks=4, background_frames=8,
)  # fmt: skip


def test_the_dataset_builder_records_bar_frames_and_clean_truth(tmp_path: Path) -> None:
    from trainers.data.dataset import build_dataset
    from trainers.data.raw_frames import build_raw_frames
    from trainers.data.reader import load_ground_truth, load_meta, load_split

    build_dataset(out=tmp_path / "clean", **SMALL)
    build_dataset(out=tmp_path / "noisy", distractors="both", distractor_seed=2, **SMALL)
    clean, noisy = load_split(tmp_path / "clean", "train"), load_split(tmp_path / "noisy", "train")
    assert np.array_equal(clean.rams, noisy.rams)  # the same play, the same RAM
    assert np.array_equal(load_ground_truth(tmp_path / "clean", "train").x, load_ground_truth(tmp_path / "noisy", "train").x)
    assert (load_meta(tmp_path / "noisy")["build"]["distractors"], load_meta(tmp_path / "noisy")["build"]["distractor_seed"]) == ("both", 2)
    assert load_meta(tmp_path / "clean")["build"]["distractors"] is None
    # The stored 128 x 128 frames hold the bars: some whole row and some whole column of bar colour.
    for frame in noisy.frames.reshape(-1, 128, 128, 3):
        on = (frame == COLOR).all(axis=-1)
        assert on.all(axis=1).any() and on.all(axis=0).any()
    assert not any((f == COLOR).all(axis=-1).all(axis=1).any() for f in clean.frames.reshape(-1, 128, 128, 3))
    # Full-size frames replayed from the recorded settings: clean frames plus the bars, exactly.
    raw_clean = np.load(build_raw_frames(tmp_path / "clean", "train", progress=False))["frames"]
    raw_noisy = np.load(build_raw_frames(tmp_path / "noisy", "train", progress=False))["frames"]
    for clean_stack, noisy_stack in zip(raw_clean, raw_noisy, strict=True):
        stack_bars = [found_bars(n) for n in noisy_stack]
        for c, n, bars in zip(clean_stack, noisy_stack, stack_bars, strict=True):
            assert bars.row is not None and bars.col is not None
            assert np.array_equal(n, draw_bars(c, bars))
        # A new position every frame (both coordinates repeating by chance: about 1 in 30000).
        assert all(a != b for a, b in zip(stack_bars[:-1], stack_bars[1:], strict=True))


def test_the_dataset_command_line_takes_and_checks_the_options(tmp_path: Path, capsys) -> None:
    from trainers.data.dataset import build_dataset, main

    with pytest.raises(SystemExit):
        main(["--game", "Pong", "--out", str(tmp_path / "d"), "--distractors", "diagonal"])
    assert "invalid choice: 'diagonal'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--game", "Pong", "--out", str(tmp_path / "d"), "--distractor-seed", "3"])
    assert "--distractor-seed needs --distractors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--game", "Pong", "--out", str(tmp_path / "d"), "--distractors", "both", "--distractor-seed", "-2"])
    assert "expected an int >= 0, got '-2'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="distractors must be one of"):
        build_dataset(out=tmp_path / "d", distractors="diagonal", **SMALL)
    assert not (tmp_path / "d").exists()  # refused before anything is written


def test_moc_envs_train_passes_the_options_to_the_dataset_stage(tmp_path: Path, monkeypatch, capsys) -> None:
    import trainers.data.dataset as dataset
    from trainers.pipeline import STAGES, main, stages
    from trainers.pipeline import run as pl

    built: list[dict] = []

    def fake_build(game, out, **kwargs):
        built.append(kwargs)
        return {"splits": {"train": {"stacks": 1}}}

    def stop(run):
        raise RuntimeError("stop after the dataset")

    monkeypatch.setattr(dataset, "build_dataset", fake_build)
    monkeypatch.setattr(stages, "probe_pairs", lambda game, n, seed=0: np.zeros((n, 2, 210, 160, 3), np.uint8))
    monkeypatch.setattr(pl, "STAGE_FUNCS", {**{s: stop for s in STAGES}, "dataset": stages.STAGE_FUNCS["dataset"]})
    out = tmp_path / "run"
    argv = ["--game", "Pong", "--out", str(out), "--preset", "cpu", "--no-progress"]
    with pytest.raises(RuntimeError, match="stop after the dataset"):
        main([*argv, "--distractors", "both", "--distractor-seed", "6"])
    assert built[0]["distractors"] == "both" and built[0]["distractor_seed"] == 6
    state = json.loads((out / "pipeline.json").read_text())
    assert state["settings"]["distractors"] == "both" and state["stages"]["dataset"]["status"] == "done"
    # Clean frames now would need a new dataset: refused without --redo dataset.
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "distractors 'both', not None" in err and "--redo dataset" in err
    # And the other way round: a clean dataset does not become a noisy one unasked.
    clean_argv = ["--game", "Pong", "--out", str(tmp_path / "clean"), "--preset", "cpu", "--no-progress"]
    with pytest.raises(RuntimeError, match="stop after the dataset"):
        main(clean_argv)
    assert built[-1]["distractors"] is None and built[-1]["distractor_seed"] is None
    capsys.readouterr()
    assert main([*clean_argv, "--distractors", "horizontal"]) == 2
    assert "distractors None, not 'horizontal'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--distractors", "diagonal"])
