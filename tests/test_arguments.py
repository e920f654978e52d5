"""Arguments are checked up front (issue 10, item 5): actions, flags, keywords, devices,
weights, shared detectors, detector objects in env.spec, and human rendering without a display.
"""

from __future__ import annotations

import copy
import gc
import shutil
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import moc_envs.envs.registration
import moc_envs.envs.render
import moc_envs.envs.vector
import moc_envs.weights.search
from moc_envs import (
    Detection,
    DetectorInUseError,
    MissingWeightsError,
    ObjectCentricWrapper,
    RamDetector,
    make_env,
    make_vec,
)
from moc_envs.envs.render import display_problem


class Stateless:
    """A detector without per-env state (no reset): one ball in every frame."""

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        return [[Detection("Ball", 80, 100, 2, 4)] for _ in frames]


@pytest.fixture
def no_emulator(monkeypatch):
    """Fail the test if an ALE env is started: checks must come before the emulator."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the emulator was started before the arguments were checked")

    monkeypatch.setattr(moc_envs.envs.registration, "make_ale_env", boom)
    monkeypatch.setattr(moc_envs.envs.vector, "make_emulators", boom)  # either emulation backend


# ------------------------------------------------------------------ actions
@pytest.mark.parametrize(
    ("action", "error", "pattern"),
    [
        (-1, ValueError, r"action must be an integer in \[0, 6\) for the Discrete\(6\) action space, got -1"),
        (6, ValueError, r"in \[0, 6\) .* got 6$"),
        (2.7, TypeError, r"got float 2\.7"),
        (np.float64(1.0), TypeError, r"got float64 (np\.float64\()?1\.0"),
        ("UP", TypeError, r"got str 'UP'"),
        (True, TypeError, r"got bool True"),
        (np.bool_(False), TypeError, r"got bool_? (np\.)?False"),
        (None, TypeError, r"got NoneType None"),
        (np.array([1]), TypeError, r"got ndarray array\(\[1\]\)"),
        (np.array(1.0), TypeError, r"got float64 (np\.float64\()?1\.0"),
    ],
)
def test_bad_action_is_refused_before_the_emulator_steps(
    make_moc, action: Any, error: type[Exception], pattern: str
) -> None:
    env = make_moc("Pong")
    env.reset(seed=0)
    ale = env.unwrapped.ale
    frame = ale.getEpisodeFrameNumber()
    with pytest.raises(error, match=pattern):
        env.step(action)
    assert ale.getEpisodeFrameNumber() == frame


def test_integer_actions_of_any_kind_are_accepted(make_moc) -> None:
    env = make_moc("Pong")
    env.reset(seed=0)
    for action in (0, 5, np.int32(2), np.uint8(3), np.int64(4), np.array(1), np.array(5, dtype=np.uint16)):
        env.step(action)
    wide = make_moc("Pong", full_action_space=True)
    wide.reset(seed=0)
    wide.step(17)
    with pytest.raises(ValueError, match=r"in \[0, 18\) for the Discrete\(18\) action space, got 18"):
        wide.step(18)


@pytest.mark.parametrize(
    ("actions", "error", "pattern"),
    [
        ([0, 7], ValueError, r"actions\[1\] \(env 1\) must be an integer in \[0, 6\) .* got 7"),
        (np.array([0, -1]), ValueError, r"actions\[1\] \(env 1\) .* got -1"),
        (np.array([3, 0], dtype=np.uint8) + 6, ValueError, r"actions\[0\] \(env 0\) .* got 9"),
        ([0, 2.7], TypeError, r"actions\[1\] \(env 1\) .* got float 2\.7"),
        ([0, "UP"], TypeError, r"actions\[1\] \(env 1\) .* got str 'UP'"),
        ([True, 0], TypeError, r"actions\[0\] \(env 0\) .* got bool True"),
        (np.array([0.0, 1.0]), TypeError, r"actions\[0\] \(env 0\) .* got float64 (np\.float64\()?0\.0"),
        (np.array([1, 2, 3]), ValueError, r"one action per env, shape \(2,\), got \(3,\)"),
        ([1], ValueError, r"one action per env \(2\), got 1"),
        ("UP", TypeError, r"a sequence of 2 actions \(one per env\), got str 'UP'"),
        (3, TypeError, r"a sequence of 2 actions .* got int 3"),
        ({0: 1, 1: 2}, TypeError, r"got dict"),
    ],
)
def test_vector_actions_are_checked_per_env(
    actions: Any, error: type[Exception], pattern: str
) -> None:
    envs = make_vec("MOC/Pong-v0", 2, detector="ram")
    try:
        envs.reset(seed=0)
        frames = [ale.getEpisodeFrameNumber() for ale in (env.unwrapped.ale for env in envs.envs)]
        with pytest.raises(error, match=pattern):
            envs.step(actions)
        assert [ale.getEpisodeFrameNumber() for ale in (env.unwrapped.ale for env in envs.envs)] == frames
        envs.step([np.int32(1), 5])
        envs.step(np.array([2, 3], dtype=np.uint8))
    finally:
        envs.close()


# ------------------------------------------------------------------ flags, keywords, devices
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"ram_labels": "no"}, r"ram_labels must be True or False, got str 'no'"),
        ({"ram_labels": 1}, r"ram_labels must be True or False, got int 1"),
        ({"allow_unclassified": "yes"}, r"allow_unclassified must be True or False, got str 'yes'"),
        ({"full_action_space": "no"}, r"full_action_space must be True or False, got str 'no'"),
    ],
)
def test_flags_must_be_real_bools(no_emulator, kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        gym.make("MOC/Pong-v0", detector="ram", **kwargs)
    with pytest.raises(TypeError, match=pattern):
        make_vec("MOC/Pong-v0", 2, detector="ram", **kwargs)


def test_wrapper_checks_its_flags(make_moc) -> None:
    inner = make_moc("Pong").unwrapped
    with pytest.raises(TypeError, match="ram_labels must be True or False, got str 'no'"):
        ObjectCentricWrapper(inner, detector="ram", ram_labels="no")  # type: ignore[arg-type]
    env = ObjectCentricWrapper(inner, detector="ram", ram_labels=np.bool_(True))
    _, info = env.reset(seed=0)
    assert "ram_labels" in info


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("detecter", r"Unknown keyword 'detecter' for MOC/Pong-v0\. Did you mean 'detector'\?"),
        ("ram_label", r"Unknown keyword 'ram_label' for MOC/Pong-v0\. Did you mean 'ram_labels'\?"),
        ("frame_skip", r"Did you mean 'frameskip'\?"),
        ("repeat_action_prob", r"Did you mean 'repeat_action_probability'\?"),
        ("wieghts", r"Did you mean 'weights'\?"),
        ("xyzzy", r"Unknown keyword 'xyzzy' for MOC/Pong-v0\. Valid keywords: allow_unclassified, "
         r".*detector, device, .*frameskip, .*weights(, worker_timeout)?(, workers)?\."),
    ],
)
def test_unknown_keyword_suggests_the_nearest(no_emulator, key: str, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        gym.make("MOC/Pong-v0", detector="ram", **{key: 1})
    with pytest.raises(TypeError, match=pattern):
        make_env("Pong", detector="ram", **{key: 1})
    with pytest.raises(TypeError, match=pattern):
        make_vec("MOC/Pong-v0", 2, detector="ram", **{key: 1})


def test_vector_keywords_include_its_own(no_emulator) -> None:
    with pytest.raises(TypeError, match=r"Unknown keyword 'autoreset' .* Did you mean 'autoreset_mode'\?"):
        make_vec("MOC/Pong-v0", 2, detector="ram", autoreset="SameStep")


def test_tracker_keywords_pass_through_make(make_moc) -> None:
    wrapper = make_moc("Pong", max_distance=12.5, max_age=3, coast=2)
    while not isinstance(wrapper, ObjectCentricWrapper):
        wrapper = wrapper.env
    tracker = wrapper.builder.tracker
    assert tracker.max_distance == 12.5 and tracker.max_age == 3 and tracker.coast == 2
    envs = make_vec("MOC/Pong-v0", 2, detector="ram", coast=3)
    try:
        assert all(b.tracker.coast == 3 for b in envs.builders)
    finally:
        envs.close()


@pytest.mark.parametrize("coast", [-1, 31, 2.0, True])
def test_bad_coast_is_refused_before_the_emulator_starts(no_emulator, coast) -> None:
    pattern = r"coast must be (in 0\.\.max_age=30 steps|an int number of steps), got"
    with pytest.raises((TypeError, ValueError), match=pattern):
        gym.make("MOC/Pong-v0", detector="ram", coast=coast)
    with pytest.raises((TypeError, ValueError), match=pattern):
        make_vec("MOC/Pong-v0", 2, detector="ram", coast=coast)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu"])
def test_ram_detector_runs_on_the_cpu_only(no_emulator, device: str) -> None:
    pattern = rf"detector='ram' reads objects from the emulator RAM on the CPU; device must be 'auto' or 'cpu', got '{device}'"
    with pytest.raises(ValueError, match=pattern):
        gym.make("MOC/Pong-v0", detector="ram", device=device)
    with pytest.raises(ValueError, match=pattern):
        make_vec("MOC/Pong-v0", 2, detector="ram", device=device)


def test_ram_detector_accepts_auto_and_cpu(make_moc) -> None:
    make_moc("Pong", device="cpu").reset(seed=0)
    make_moc("Pong", device="auto").reset(seed=0)


# ------------------------------------------------------------------ weights=, allow_unclassified=
@pytest.fixture
def unclassified_pong(tmp_path):
    """A copy of the bundled Pong detector without its z_what classifier, with its own manifest."""
    from moc_envs.weights.manifest import write_manifest

    source = moc_envs.weights.search.weights_root() / "Pong"
    if not (source / "detector.safetensors").is_file():
        pytest.skip("no bundled Pong weights")
    folder = tmp_path / "root" / "Pong"
    folder.mkdir(parents=True)
    for name in ("config.json", "detector.safetensors"):
        shutil.copy(source / name, folder / name)
    write_manifest(folder, "Pong")
    return folder


def test_weights_and_allow_unclassified_reach_the_detector(unclassified_pong) -> None:
    pytest.importorskip("torch")
    root = unclassified_pong.parent
    with pytest.raises(MissingWeightsError, match=r"(?s)no z_what classifier.*allow_unclassified=True"):
        gym.make("MOC/Pong-v0", weights=str(root), device="cpu")
    env = gym.make("MOC/Pong-v0", weights=str(root), device="cpu", allow_unclassified=True)
    try:
        _, info = env.reset(seed=0)
        assert info["objects"] and {d.category for d in info["objects"]} == {"object"}
        assert env.spec.kwargs["weights"] == str(root) and env.spec.kwargs["allow_unclassified"]
    finally:
        env.close()
    envs = make_vec(
        "MOC/Pong-v0", 1, weights=unclassified_pong, device="cpu", allow_unclassified=True
    )
    try:
        _, infos = envs.reset(seed=0)
        assert {d.category for d in infos["objects"][0]} == {"object"}
    finally:
        envs.close()


def test_weights_elsewhere_fail_before_the_emulator(no_emulator, tmp_path) -> None:
    with pytest.raises(MissingWeightsError, match=r"neither a game folder .* nor a weights root holding Pong/"):
        gym.make("MOC/Pong-v0", weights=str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"weights='.*missing' is not a folder"):
        make_vec("MOC/Pong-v0", 2, weights=tmp_path / "missing")


def test_weights_need_the_learned_detector(make_moc) -> None:
    with pytest.raises(ValueError, match=r"weights='w' only applies to detector='space', got detector 'ram'"):
        make_moc("Pong", weights="w")


# ------------------------------------------------------------------ one env per stateful detector
def test_stateful_detector_refuses_a_second_env(make_moc) -> None:
    det = RamDetector("Skiing")
    first = make_moc("Skiing", detector=det)
    pattern = (
        r"This RamDetector keeps per-env state \(it has reset\(i\)\) and already serves another "
        r"open env \(Skiing ObjectCentricWrapper\).*Pass detector='ram' \(a string: each env "
        r"builds its own detector\) or one RamDetector instance per env"
    )
    with pytest.raises(DetectorInUseError, match=pattern):
        make_moc("Skiing", detector=det)
    with pytest.raises(DetectorInUseError, match=r"already serves another open env \(Skiing Object"):
        make_vec("MOC/Skiing-v0", 2, detector=det)
    first.close()
    second = make_moc("Skiing", detector=det)  # released by close()
    second.reset(seed=0)


def test_vector_env_is_one_owner(make_moc) -> None:
    det = RamDetector("Pong")
    envs = make_vec("MOC/Pong-v0", 3, detector=det)
    try:
        envs.reset(seed=0)
        with pytest.raises(DetectorInUseError, match=r"another open env \(MocVectorEnv\(Pong, num_envs=3\)\)"):
            make_moc("Pong", detector=det)
        with pytest.raises(DetectorInUseError):
            make_vec("MOC/Pong-v0", 2, detector=det)
    finally:
        envs.close()
    again = make_vec("MOC/Pong-v0", 2, detector=det)
    again.close()


def test_failed_or_collected_env_leaves_the_detector_free(make_moc) -> None:
    det = RamDetector("Pong")
    with pytest.raises(ValueError, match="Unknown obs_mode"):
        make_moc("Pong", detector=det, obs_mode="pixels")
    env = gym.make("MOC/Pong-v0", detector=det)
    del env  # never closed: its claim dies with it
    gc.collect()
    make_moc("Pong", detector=det).reset(seed=0)


def test_stateless_detector_may_serve_many_envs(make_moc) -> None:
    det = Stateless()
    a, b = make_moc("Pong", detector=det), make_moc("Pong", detector=det)
    envs = make_vec("MOC/Pong-v0", 2, detector=det)
    try:
        for env in (a, b):
            _, info = env.reset(seed=0)
            assert [d.category for d in info["objects"]] == ["Ball"]
        envs.reset(seed=0)
    finally:
        envs.close()


# ------------------------------------------------------------------ detector objects in env.spec
def test_detector_objects_pass_through_gym_make_uncopied(make_moc) -> None:
    det = RamDetector("Pong")  # holds a module: it cannot be deep-copied
    env = make_moc("Pong", detector=det)
    assert env.spec is not None
    assert env.spec.kwargs["detector"] is det
    assert env.spec.additional_wrappers[0].kwargs["detector"] is det
    assert copy.deepcopy(env.spec).kwargs["detector"] is det
    env.reset(seed=0)
    env.step(0)
    # Rebuilding from the spec hands over the same stateful object: refused while env is open.
    with pytest.raises(DetectorInUseError):
        gym.make(env.spec)
    shared = make_moc("Pong", detector=Stateless())
    rebuilt = gym.make(shared.spec)
    try:
        assert rebuilt.spec.kwargs["detector"] is shared.spec.kwargs["detector"]
        rebuilt.reset(seed=0)
    finally:
        rebuilt.close()


def test_spec_of_string_detector_rebuilds_the_env(make_moc) -> None:
    env = make_moc("Pong", ram_labels=True, frameskip=2)
    rebuilt = gym.make(env.spec)
    try:
        assert rebuilt.spec.kwargs == env.spec.kwargs
        obs, info = env.reset(seed=4)
        obs2, info2 = rebuilt.reset(seed=4)
        np.testing.assert_array_equal(obs, obs2)
        for action in (2, 3, 2, 0):
            np.testing.assert_array_equal(env.step(action)[0], rebuilt.step(action)[0])
    finally:
        rebuilt.close()


# ------------------------------------------------------------------ human rendering without a display
@pytest.mark.parametrize(
    ("environ", "platform", "problem"),
    [
        ({"SDL_VIDEODRIVER": "dummy", "DISPLAY": ":0"}, "linux", "SDL_VIDEODRIVER=dummy draws no window"),
        ({"SDL_VIDEODRIVER": "offscreen"}, "darwin", "SDL_VIDEODRIVER=offscreen"),
        ({}, "linux", "there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"),
        ({"SDL_VIDEODRIVER": "wayland,x11"}, "linux", "there is no display"),
        ({"DISPLAY": ":0"}, "linux", None),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", None),
        ({"SDL_VIDEODRIVER": "kmsdrm"}, "linux", None),
        ({}, "darwin", None),
        ({}, "win32", None),
    ],
)
def test_display_problem(environ: dict[str, str], platform: str, problem: str | None) -> None:
    found = display_problem(environ, platform)
    assert found == problem or (problem is not None and found is not None and found.startswith(problem))


def test_human_render_without_display_fails_when_the_window_opens(monkeypatch) -> None:
    # Building a human-mode env works anywhere (check_env and env.spec.make build one per
    # declared render mode); the window opens at the first reset, and the error comes there.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make("MOC/Pong-v0", detector="ram", render_mode="human")
    try:
        with pytest.warns(UserWarning, match=r"render_mode='human' shows nothing here: "
                          r"SDL_VIDEODRIVER=dummy draws no window.*render_mode='rgb_array'"):
            env.reset(seed=0)
    finally:
        env.close()
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        env = gym.make("MOC/Pong-v0", detector="ram", render_mode="human")
        try:
            with pytest.raises(ValueError, match=r"render_mode='human' cannot open a window: SDL "
                               r"says .*there is no display .*render_mode='rgb_array'"):
                env.reset(seed=0)
        finally:
            env.close()


def test_wrapper_opens_its_human_window_at_the_first_frame(make_moc, monkeypatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    inner = make_moc("Pong").unwrapped
    env = ObjectCentricWrapper(inner, detector="ram", render_mode="human")
    try:
        with pytest.warns(UserWarning, match=r"SDL_VIDEODRIVER=dummy draws no window.*'rgb_array'"):
            env.reset(seed=0)
    finally:
        env.close()
