"""Shared test setup: headless pygame, quiet ALE, and small env factories."""

from __future__ import annotations

import os

# Headless: human rendering and pygame must not need a display or a sound card.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import moc_envs  # noqa: E402,F401  (registers MOC/<Game>-v0)


@pytest.fixture
def make_moc():
    """Factory for MOC envs with the RAM oracle; closes them after the test."""
    envs: list[gym.Env] = []

    def _make(game: str = "Pong", **kwargs):
        kwargs.setdefault("detector", "ram")
        env = gym.make(f"MOC/{game}-v0", **kwargs)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


@pytest.fixture
def blank_frames():
    """A factory of valid all-black frame batches (N, 210, 160, 3) uint8."""

    def _frames(n: int = 1) -> np.ndarray:
        return np.zeros((n, 210, 160, 3), dtype=np.uint8)

    return _frames


@pytest.fixture(scope="session")
def tiny_pong(tmp_path_factory):
    """A tiny real Pong dataset (8 train stacks) built by the dataset builder; tests only read it."""
    from trainers.data.dataset import build_dataset

    root = tmp_path_factory.mktemp("data") / "Pong"
    build_dataset(
        "Pong", root, train=8, val=2, test=2, seed=3, progress=False,
        warmup=60, warmup_jitter=20, stacks_per_episode=4, chunk_stacks=8,
    )  # fmt: skip
    return root


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The pid of a process that runs for the duration of the test."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _option_help(text: str) -> dict[str, str]:
    """{first flag: its help text} of an argparse --help page."""
    options: dict[str, str] = {}
    flag = None
    for line in text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            options[flag] = line
        elif flag is not None:
            options[flag] += " " + line.strip()
    return options


@pytest.fixture
def option_help():
    """Parse an argparse --help page into {first flag: its help text}."""
    return _option_help


def _oracle_frames(
    game: str, seed: int, steps: int, every: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Frames of random play of ``game`` (every ``every``-th step) and each frame's RAM-oracle
    boxes (k, 4) as (x, y, w, h) float64: real frames and the objects in them."""
    env = gym.make(f"MOC/{game}-v0", detector="ram", obs_mode="objects+frame")
    try:
        obs, info = env.reset(seed=seed)
        env.action_space.seed(seed)
        frames, boxes = [], []
        for step in range(steps):
            obs, _, terminated, truncated, info = env.step(env.action_space.sample())
            if step % every == every - 1:
                frames.append(obs["frame"])
                boxes.append(
                    np.array([(d.x, d.y, d.w, d.h) for d in info["objects"]], np.float64).reshape(
                        -1, 4
                    )
                )
            if terminated or truncated:
                obs, info = env.reset()
    finally:
        env.close()
    return np.stack(frames), boxes


@pytest.fixture(scope="session")
def oracle_frames():
    """``oracle_frames(game, seed, steps, every)``: frames of random play and their RAM-oracle boxes."""
    return _oracle_frames


def _flat_play(game: str, seed: int, steps: int) -> np.ndarray:
    """The flat RAM-oracle observations (steps + 1, F) of random play of ``game`` from ``seed``."""
    env = gym.make(f"MOC/{game}-v0", detector="ram", obs_mode="flat")
    try:
        obs, _ = env.reset(seed=seed)
        seen = [obs]
        for _ in range(steps):
            obs, *_ = env.step(env.action_space.sample())
            seen.append(obs)
    finally:
        env.close()
    return np.stack(seen)


@pytest.fixture(scope="session")
def flat_play():
    """``flat_play(game, seed, steps)``: flat RAM-oracle observations of random play."""
    return _flat_play
