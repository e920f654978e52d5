"""Emulation backends of the vector envs: ``emulator="ale-vector"`` against the per-env path.

Where the backend claims the per-env path's emulation (moc_envs.envs.emulators), a seeded
rollout with the same actions gives the same frames, rewards, flags, lives and frame numbers;
the documented differences (the stale frame of the step that ends an episode, the seeds ALE
v5 derives above 2**31) are checked as stated; bad arguments are refused before anything starts.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import moc_envs
from moc_envs.envs.emulators import EMULATORS, check_emulator
from moc_envs.envs.vector import MocVectorEnv
from moc_envs.perception.detection import Detection


class Recorder:
    """A stateless detector that keeps every batch of frames it is shown."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        self.frames.append(frames.copy())
        return [[] for _ in frames]


def _seeds(n: int, small: bool) -> list[int]:
    """The first ``n`` seeds whose ALE v5 emulator seed is below 2**31 (``small``) or not."""
    out, seed = [], 0
    while len(out) < n:
        word = int(np.random.SeedSequence(seed).generate_state(2)[1])
        if (word < 2**31) == small:
            out.append(seed)
        seed += 1
    return out


def _rollout(game: str, emulator: str, seeds: list[int], steps: int, mode: str = "NextStep", **kw: Any):
    rec = Recorder()
    envs = MocVectorEnv(game, len(seeds), detector=rec, emulator=emulator, autoreset_mode=mode, **kw)
    try:
        _, first = envs.reset(seed=seeds)
        rng = np.random.default_rng(1)
        flags = []
        for _ in range(steps):
            _, r, term, trunc, infos = envs.step(rng.integers(0, envs.single_action_space.n, len(seeds)))
            flags.append((r, term, trunc, infos["lives"], infos["frame_number"], infos["episode_frame_number"]))
        return rec.frames, flags, first
    finally:
        envs.close()


@pytest.mark.parametrize(
    ("game", "mode"), [("Pong", "NextStep"), ("SpaceInvaders", "SameStep"), ("Carnival", "NextStep")]
)
def test_same_emulation_without_sticky_actions_but_the_frame_that_ends_an_episode(game: str, mode: str) -> None:
    """Pong; SpaceInvaders (flicker: the max of the last two frames); Carnival (214-row screen)."""
    kw = {"repeat_action_probability": 0.0, "max_episode_steps": 12}
    py_frames, py_flags, _ = _rollout(game, "python", [3, 9], 30, mode, **kw)
    vec_frames, vec_flags, _ = _rollout(game, "ale-vector", [3, 9], 30, mode, **kw)
    assert len(py_frames) == len(vec_frames)
    for a, b in zip(py_flags, vec_flags, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    ends = [t for t, f in enumerate(py_flags) if (f[1] | f[2]).any()]
    assert len(ends) >= 2  # truncated after 12 steps: the rollout crosses episode ends
    shown = {k for k in range(len(py_frames)) if not np.array_equal(py_frames[k], vec_frames[k])}
    if mode == "NextStep":
        ended = {t + 1 for t in ends}  # batch 0 is the reset's
        assert shown <= ended
        if not moc_envs.get_game(game).flicker:
            # The step that ends an episode shows the step before's frame.
            for k in ended:
                np.testing.assert_array_equal(vec_frames[k], py_frames[k - 1])
    else:
        # SameStep: one extra batch per end (the reset rows' frames), which matches; at most the
        # final frames differ.
        assert len(py_frames) == 1 + len(py_flags) + len(ends)
        assert len(shown) <= len(ends)


@pytest.mark.parametrize("game", ["Pong", "SpaceInvaders"])
def test_same_emulation_with_sticky_actions_for_seeds_below_2_31(game: str) -> None:
    seeds = _seeds(2, small=True)
    py_frames, py_flags, py_first = _rollout(game, "python", seeds, 40)
    vec_frames, vec_flags, vec_first = _rollout(game, "ale-vector", seeds, 40)
    np.testing.assert_array_equal(np.stack(py_frames), np.stack(vec_frames))
    for a, b in zip(py_flags, vec_flags, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    for i in range(2):
        assert tuple(int(v) for v in py_first["seeds"][i]) == tuple(vec_first["seeds"][i])


def test_seeds_above_2_31_are_reproducible_and_say_what_seeded_the_emulator() -> None:
    seeds = _seeds(2, small=False)
    frames_a, flags_a, first = _rollout("Pong", "ale-vector", seeds, 25)
    frames_b, flags_b, _ = _rollout("Pong", "ale-vector", seeds, 25)
    np.testing.assert_array_equal(np.stack(frames_a), np.stack(frames_b))
    for i, seed in enumerate(seeds):
        np_seed, ale_seed = np.random.SeedSequence(seed).generate_state(2)
        assert first["seeds"][i][0] == np_seed and first["seeds"][i][1] == int(ale_seed) - 2**31


def test_learned_observations_match_and_make_vec_passes_the_emulator() -> None:
    def run(emulator: str) -> list[np.ndarray]:
        envs = gym.make_vec(
            "MOC/Pong-v0", num_envs=2, device="cpu", emulator=emulator, repeat_action_probability=0.0
        )
        try:
            assert isinstance(envs, MocVectorEnv) and envs.emulator.name == emulator
            obs = [envs.reset(seed=0)[0]]
            for t in range(15):
                obs.append(envs.step(np.array([t % 6, (t * 5) % 6]))[0])
            return obs
        finally:
            envs.close()

    np.testing.assert_array_equal(np.stack(run("python")), np.stack(run("ale-vector")))


def test_ale_vector_runs_in_worker_processes() -> None:
    envs = moc_envs.make_vec("MOC/Pong-v0", 2, workers=2, emulator="ale-vector", device="cpu")
    try:
        obs, _ = envs.reset(seed=0)
        obs, *_ = envs.step(np.array([0, 1]))
        assert obs.shape == (2, moc_envs.get_game("Pong").n_slots, 7)
    finally:
        envs.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"emulator": "ale_vector"}, ValueError, "Unknown emulator 'ale_vector'.*Did you mean 'ale-vector'"),
        ({"emulator": 2}, TypeError, "emulator must be one of 'python', 'ale-vector', got int 2"),
        ({"emulator": "ale-vector", "detector": "ram"}, ValueError, "detector='ram' reads objects from the RAM"),
        ({"emulator": "ale-vector", "ram_labels": True}, ValueError, "ram_labels=True .* no emulator RAM"),
        ({"emulator": "ale-vector", "mode": 1}, ValueError, "cannot take the ALE keyword mode=1"),
        ({"emulator": "ale-vector", "frameskip": (2, 5)}, ValueError, r"frameskip as an int >= 1 .* got tuple \(2, 5\)"),
        ({"emulator": "ale-vector", "emulator_threads": 0}, ValueError, "emulator_threads must be None .* got int 0"),
        ({"emulator_threads": 2}, ValueError, "emulator='python' steps its envs in this thread"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(kwargs: dict[str, Any], error: type, match: str) -> None:
    kwargs = {"detector": Recorder(), **kwargs}
    with pytest.raises(error, match=match):
        MocVectorEnv("Pong", 2, **kwargs)
    with pytest.raises(error, match=match):
        moc_envs.make_vec("MOC/Pong-v0", 2, **kwargs)


def test_a_flicker_game_needs_two_frames_a_step() -> None:
    with pytest.raises(ValueError, match="SpaceInvaders is a flicker game.*frameskip >= 2, got 1"):
        MocVectorEnv("SpaceInvaders", 2, detector=Recorder(), emulator="ale-vector", frameskip=1)
    MocVectorEnv("Pong", 1, detector=Recorder(), emulator="ale-vector", frameskip=1).close()


def test_what_the_vector_env_cannot_do_is_a_clear_error() -> None:
    envs = MocVectorEnv("Pong", 2, detector=Recorder(), emulator="ale-vector")
    try:
        with pytest.raises(ValueError, match="the first reset\\(\\) must reset every env"):
            envs.reset(options={"reset_mask": np.array([True, False])})
        envs.reset(seed=0)
        envs.reset(options={"reset_mask": np.array([True, False])})  # after a full reset: fine
        with pytest.raises(ValueError, match="get_env_attr\\('spec'\\): emulator='ale-vector'"):
            envs.get_env_attr("spec", [0])
        assert envs.env_is_wrapped(gym.Wrapper, [0, 1]) == [False, False]
        assert envs.envs == []
    finally:
        envs.close()


def test_the_names_are_the_documented_ones() -> None:
    assert EMULATORS == ("python", "ale-vector")
    assert check_emulator("ale-vector") == "ale-vector"
