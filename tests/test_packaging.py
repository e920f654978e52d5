"""Packaging: declared dependencies, the Makefile's install stamps, --help of every command,
SB3's checker on the flat observation, and video recording with the `video` extra."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import moc_envs  # noqa: F401  (registers MOC/<Game>-v0)
from moc_envs.perception.observation import FEATURES, feature_names

ROOT = Path(__file__).resolve().parents[1]

# Import name of each core dependency: every one must be imported by our code.
IMPORT_NAMES = {
    "gymnasium": "gymnasium",
    "ale-py": "ale_py",
    "torch": "torch",
    "numpy": "numpy",
    "scipy": "scipy",
    "safetensors": "safetensors",
    "opencv-python-headless": "cv2",
    "pillow": "PIL",
    "tqdm": "tqdm",
    "pygame": "pygame",
    "stable-baselines3": "stable_baselines3",
    "numba": "numba",
    "onnxruntime": "onnxruntime",
}
INDIRECT = {"onnx": "torch.onnx.export, which moc_envs.model.runtime calls"}
"""Dependencies no module of ours imports by name: what imports them instead."""


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def _our_sources() -> str:
    return "\n".join(
        p.read_text() for d in ("moc_envs", "trainers", "benchmarks") for p in (ROOT / d).rglob("*.py")
    )


def test_core_dependencies_are_each_used_and_one_opencv() -> None:
    deps = [_dist_name(r) for r in _project()["dependencies"]]
    assert sorted(deps) == sorted([*IMPORT_NAMES, *INDIRECT]), "declare the import name of a new dependency here"
    runtime = (ROOT / "moc_envs" / "model" / "runtime.py").read_text()
    assert '"onnx"' in runtime and "torch.onnx.export" in runtime  # checked for by name before the export
    sources = _our_sources()
    for dist, module in IMPORT_NAMES.items():
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.M), f"{dist} is never imported"
    everything = deps + [_dist_name(r) for rs in _project()["optional-dependencies"].values() for r in rs]
    assert "opencv-python" not in everything, "only the headless OpenCV may be declared"
    assert "imageio" not in everything and "joblib" not in deps


def test_extras_cover_training_video_and_tests() -> None:
    extras = _project()["optional-dependencies"]
    assert {"oracle", "ocatari", "train", "video", "dev"} <= set(extras)
    assert "moviepy" in [_dist_name(r) for r in extras["video"]]
    assert any(r.startswith("moc-envs[") and "video" in r and "train" in r for r in extras["dev"])


def _fake_venv(tmp_path: Path, stamp_age: float | None) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    if stamp_age is not None:
        newest = max((ROOT / f).stat().st_mtime for f in ("pyproject.toml", "setup.py", "Makefile"))
        for stamp in (".moc-envs-demo.stamp", ".moc-envs-dev.stamp"):
            (venv / stamp).touch()
            os.utime(venv / stamp, (newest + stamp_age, newest + stamp_age))
    return venv


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["demo", "test"])
def test_make_installs_only_when_dependencies_changed(tmp_path: Path, target: str) -> None:
    def plan(venv: Path) -> str:
        out = subprocess.run(
            ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout

    fresh = plan(_fake_venv(tmp_path / "fresh", stamp_age=None))
    assert "pip install" in fresh and "--no-deps" in fresh and "ocatari==" in fresh
    installed = plan(_fake_venv(tmp_path / "installed", stamp_age=60))
    assert "pip install" not in installed
    assert ("moc-envs demo" if target == "demo" else "pytest") in installed
    stale = plan(_fake_venv(tmp_path / "stale", stamp_age=-60))  # pyproject changed since
    assert "pip install" in stale


HELP_MODULES = [
    "trainers.data.dataset",
    "trainers.detector.train",
    "trainers.evaluate.export",
    "trainers.classify.classifier",
    "trainers.evaluate.detector",
    "trainers.evaluate.card",
    "trainers.data.raw_frames",
    "trainers.detector.distill",
    "trainers.pipeline.cli",
    "trainers.evaluate.unmatched",
    "benchmarks.speed",
    "benchmarks.flicker",
    "benchmarks.ddp_speed",
    "benchmarks.detection",
    "benchmarks.probe",
    "benchmarks.agents",
    "benchmarks.train_speed",
    "benchmarks.transfer",
    "benchmarks.games",
    "benchmarks",
    "examples.rllib_ppo",
]


@pytest.mark.parametrize("module", HELP_MODULES)
def test_every_command_shows_its_defaults(module: str, capsys) -> None:
    main = importlib.import_module(module if module != "benchmarks" else "benchmarks.__main__").main
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "(default:" in text, f"python -m {module} --help shows no defaults"


def test_sb3_check_env_accepts_flat_observation_without_warnings() -> None:
    from stable_baselines3.common.env_checker import check_env

    env = gym.make("MOC/Pong-v0", detector="ram", obs_mode="flat")
    try:
        spec = moc_envs.get_game("Pong")
        assert env.observation_space.shape == (spec.n_slots * len(FEATURES),)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env, warn=True)
        names = feature_names(spec)
        assert len(names) == env.observation_space.shape[0] and len(set(names)) == len(names)
        assert names[: len(FEATURES)] == tuple(f"Player0.{f}" for f in FEATURES)
        obs, _ = env.reset(seed=3)
        objects = gym.make("MOC/Pong-v0", detector="ram")
        ref, _ = objects.reset(seed=3)
        objects.close()
        # The same features, row-major: "Ball0.x" is row Ball0, column x.
        np.testing.assert_array_equal(obs, ref.ravel())
        ball_x = names.index("Ball0.x")
        assert obs[ball_x] == ref[spec.slot_ranges["Ball"][0], FEATURES.index("x")]
    finally:
        env.close()


def test_record_video_with_the_video_extra(tmp_path: Path) -> None:
    # Needs the `video` extra (moviepy); `make test` installs it with the dev extras.
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(
        gym.make("MOC/Pong-v0", detector="ram", render_mode="rgb_array"),
        str(tmp_path / "videos"),
        episode_trigger=lambda episode: True,
        video_length=12,
        disable_logger=True,
    )
    env.reset(seed=0)
    for _ in range(15):
        env.step(env.action_space.sample())
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_version_matches_the_installed_metadata() -> None:
    from importlib.metadata import version

    out = subprocess.run(
        [sys.executable, "-m", "moc_envs", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"moc-envs {moc_envs.__version__}" == f"moc-envs {version('moc-envs')}"
