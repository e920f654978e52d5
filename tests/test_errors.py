"""Bad input gets a clear, specific error (issue 2, item 6), each checked by message."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

import moc_envs.weights.search
from moc_envs import (
    DeviceUnavailableError,
    FrameFormatError,
    MissingWeightsError,
    ObjectCentricWrapper,
    RamDetector,
    UnknownGameError,
    make_detector,
    make_env,
    require_weights,
    resolve_device,
)


@pytest.fixture
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    # $MOC_ENVS_WEIGHTS is searched in front of the bundled weights: hide those too.
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(moc_envs.weights.search, "weights_root", lambda: tmp_path)
    return tmp_path


def test_unknown_game(make_moc) -> None:
    with pytest.raises(UnknownGameError, match=r"Unknown game 'Pacman'\. Supported: .*MsPacman"):
        make_env("Pacman", detector="ram")
    with pytest.raises(UnknownGameError, match="Supported: Asterix, Boxing"):
        ObjectCentricWrapper(make_moc("Pong").unwrapped, detector="ram", game="Tetris")


def test_wrong_frame_shape_and_dtype(blank_frames) -> None:
    det = RamDetector("Pong")
    ram = np.zeros((1, 128), dtype=np.uint8)
    with pytest.raises(
        FrameFormatError, match=r"uint8 of shape \(N, 210, 160, 3\), got uint8 \(1, 84, 84, 3\)"
    ):
        det.detect(np.zeros((1, 84, 84, 3), dtype=np.uint8), ram)
    with pytest.raises(FrameFormatError, match=r"got float32 \(1, 210, 160, 3\)"):
        det.detect(blank_frames().astype(np.float32), ram)
    with pytest.raises(FrameFormatError, match=r"got uint8 \(210, 160, 3\)"):
        det.detect(blank_frames()[0], ram)
    with pytest.raises(FrameFormatError, match=r"rams must be uint8 of shape \(1, 128\)"):
        det.detect(blank_frames(), np.zeros((2, 128), dtype=np.uint8))
    with pytest.raises(FrameFormatError, match="RamDetector reads objects from RAM: pass rams"):
        det.detect(blank_frames())


def test_unknown_obs_mode() -> None:
    with pytest.raises(
        ValueError, match="Unknown obs_mode 'pixels'; expected one of objects, objects\\+frame, flat"
    ):
        gym.make("MOC/Pong-v0", detector="ram", obs_mode="pixels")


def test_unknown_detector_and_render_mode() -> None:
    with pytest.raises(ValueError, match="Unknown detector 'yolo'"):
        make_detector("yolo", "Pong")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="detector must be 'space', 'ram' or an object"):
        make_detector(42, "Pong")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unknown render_mode 'ansi'"):
        gym.make("MOC/Pong-v0", detector="ram", render_mode="ansi")


def test_cuda_without_cuda(no_cuda, empty_weights) -> None:
    with pytest.raises(
        DeviceUnavailableError, match="device='cuda' was requested but torch sees no CUDA"
    ):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
    # Through the env: weights present, no GPU -> the device error, not a torch trace.
    (empty_weights / "Pong").mkdir()
    for name in ("detector.safetensors", "config.json"):
        (empty_weights / "Pong" / name).write_bytes(b"{}")
    with pytest.raises(DeviceUnavailableError, match="use device='cpu' or device='auto'"):
        gym.make("MOC/Pong-v0", device="cuda")


def test_bad_device_string() -> None:
    with pytest.raises(
        ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"
    ):
        resolve_device("gpu")


def test_missing_weights(empty_weights) -> None:
    pattern = r"missing .*Pong/detector\.safetensors, .*Pong/config\.json"
    with pytest.raises(MissingWeightsError, match=pattern) as err:
        gym.make("MOC/Pong-v0")
    message = str(err.value)
    assert "moc-envs dataset --game Pong --out data/Pong" in message
    assert "moc-envs train-detector --game Pong --data data/Pong --out runs/pong" in message
    assert "moc-envs export runs/pong --game Pong" in message
    with pytest.raises(MissingWeightsError, match="Boxing/config.json"):
        require_weights("boxing")


def test_missing_ocatari_names_the_install_command(monkeypatch) -> None:
    from moc_envs.errors import MissingDependencyError
    from moc_envs.perception.ram_detector import import_ocatari

    # A None entry in sys.modules makes the import fail as if OCAtari were not installed.
    for mod in [m for m in list(sys.modules) if m == "ocatari" or m.startswith("ocatari.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "ocatari", None)
    with pytest.raises(MissingDependencyError, match=r'pip install --no-deps "ocatari==2.2.1"'):
        import_ocatari("ocatari.ram.extract_ram_info")
