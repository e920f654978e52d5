"""SB3 model zips load without unpickling and play as SB3's own load would.

``moc-envs dataset --policy sb3:PPO:<zip>`` used ``PPO.load``, which unpickles the zip's
``:serialized:`` entries: a doctored zip ran code. ``trainers.data.sb3_zip`` reads the tensors and the
plain JSON only; these tests check it against ``PPO.load`` on zips the test saved itself, and
that doctored zips run nothing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from moc_envs.errors import CorruptWeightsError
from trainers.data.policies import SB3Policy, make_policy
from trainers.data.sb3_zip import load_sb3_zip

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # SB3's advice on CPU/GPU use

MARKER = "marker.txt"


class _Plant:
    """Unpickling this opens (creates) a marker file: the code a doctored zip runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class _Spaces(gym.Env):
    """An env that only declares its spaces: SB3 needs no steps to build and save a model."""

    def __init__(self, shape: tuple[int, ...], image: bool = True, n: int = 6) -> None:
        if image:
            self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-1.0, 1.0, shape, np.float32)
        self.action_space = gym.spaces.Discrete(n)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def _save(tmp_path: Path, algo: str, policy: str, shape: tuple[int, ...], **kwargs) -> Path:
    """Save an SB3 model with scrambled weights (so that its actions are far from uniform)."""
    import stable_baselines3

    cls = getattr(stable_baselines3, algo)
    extra = {"buffer_size": 10} if algo == "DQN" else {}
    model = cls(policy, _Spaces(shape, image=policy == "CnnPolicy"), device="cpu", seed=0, **extra, **kwargs)
    if algo == "DQN":
        model.exploration_rate = 0.05
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.policy.parameters():
            scale = 1.5 / np.sqrt(np.prod(p.shape[1:])) if p.ndim > 1 else 0.1  # O(1) activations
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    path = tmp_path / f"{algo}-{policy}.zip"
    model.save(path)
    return path


def _observations(space: gym.spaces.Box, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    if space.dtype == np.uint8:  # images from dark to bright: noise alone averages out in a CNN
        return [(rng.random(space.shape) < d).astype(np.uint8) * 255 for d in np.linspace(0.05, 0.95, n)]
    return [rng.uniform(-1, 1, space.shape).astype(np.float32) for _ in range(n)]


CASES = {
    "PPO CnnPolicy": ("PPO", "CnnPolicy", (84, 84, 4), {}),
    "PPO MlpPolicy relu 32/16": (
        "PPO", "MlpPolicy", (8,),
        {"policy_kwargs": {"net_arch": {"pi": [32], "vf": [16]}, "activation_fn": torch.nn.ReLU}},
    ),
    "PPO CnnPolicy separate extractors": (
        "PPO", "CnnPolicy", (4, 84, 84), {"policy_kwargs": {"share_features_extractor": False}},
    ),
    "A2C MlpPolicy": ("A2C", "MlpPolicy", (5,), {}),
    "DQN CnnPolicy": ("DQN", "CnnPolicy", (84, 84, 4), {}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_saved_model_gives_the_actions_of_sb3s_own_load(tmp_path: Path, case: str) -> None:
    import stable_baselines3

    algo, policy, shape, kwargs = CASES[case]
    path = _save(tmp_path, algo, policy, shape, **kwargs)
    reference = getattr(stable_baselines3, algo).load(path, device="cpu")  # our own zip
    ours = load_sb3_zip(path, algo)
    assert ours.observation_space == reference.observation_space
    assert ours.n_actions == reference.action_space.n == 6
    rng = np.random.default_rng(0)
    seen = []
    for obs in _observations(reference.observation_space):
        want, _ = reference.predict(obs, deterministic=True)
        assert ours.act(obs, rng, deterministic=True) == int(want)
        if algo == "DQN":
            with torch.no_grad():
                seen.append(reference.q_net(reference.policy.obs_to_tensor(obs)[0])[0].numpy())
        else:
            tensor, _ = reference.policy.obs_to_tensor(obs)
            with torch.no_grad():
                probs = reference.policy.get_distribution(tensor).distribution.probs[0].numpy()
            np.testing.assert_allclose(ours.action_probabilities(obs), probs, rtol=1e-5, atol=1e-7)
            seen.append(probs)
    # The observations reached the network: its outputs differ between them.
    assert np.ptp(np.stack(seen), axis=0).max() > 0.01
    if algo == "DQN":
        assert ours.exploration_rate == pytest.approx(reference.exploration_rate)


def _doctor(src: Path, dst: Path, marker: Path, *, data: bool = True, weights: bool = False) -> Path:
    """A copy of ``src`` whose ``:serialized:`` entries (and/or policy.pth) carry the plant."""
    payload = base64.b64encode(pickle.dumps(_Plant(marker))).decode()
    with zipfile.ZipFile(src) as z_in, zipfile.ZipFile(dst, "w") as z_out:
        for name in z_in.namelist():
            blob = z_in.read(name)
            if name == "data" and data:
                doc = json.loads(blob)
                for value in doc.values():
                    if isinstance(value, dict) and ":serialized:" in value:
                        value[":serialized:"] = payload
                blob = json.dumps(doc).encode()
            if name == "policy.pth" and weights:
                state = torch.load(io.BytesIO(blob), weights_only=True)
                buffer = io.BytesIO()
                torch.save({**state, "extra": _Plant(marker)}, buffer)
                blob = buffer.getvalue()
            z_out.writestr(name, blob)
    return dst


def test_a_doctored_data_entry_runs_no_code(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    path = _save(tmp_path, "PPO", "CnnPolicy", (84, 84, 4))
    marker = tmp_path / MARKER
    doctored = _doctor(path, tmp_path / "doctored.zip", marker)
    # The plant is real: SB3's own load runs it (on the zip this test made).
    try:
        PPO.load(doctored, device="cpu")
    except Exception:  # noqa: BLE001 - the planted open() returned a file where SB3 wants a space
        pass
    assert marker.exists()
    marker.unlink()
    ours = load_sb3_zip(doctored, "PPO")
    assert not marker.exists()
    clean = load_sb3_zip(path, "PPO")
    obs = _observations(clean.observation_space, 2)[1]
    np.testing.assert_array_equal(ours.action_probabilities(obs), clean.action_probabilities(obs))
    policy = make_policy(f"sb3:PPO:{doctored}", 6, seed=0)
    policy(np.zeros((210, 160, 3), np.uint8))
    assert not marker.exists()


def test_a_doctored_policy_pth_is_refused_and_runs_no_code(tmp_path: Path) -> None:
    path = _save(tmp_path, "PPO", "MlpPolicy", (8,))
    marker = tmp_path / MARKER
    doctored = _doctor(path, tmp_path / "doctored.zip", marker, data=False, weights=True)
    with pytest.raises(CorruptWeightsError, match=r"doctored\.zip: 'policy\.pth' is not a plain state_dict") as err:
        load_sb3_zip(doctored, "PPO")
    assert "weights_only=False" not in str(err.value)  # torch's advice would run the file's code
    assert not marker.exists()


def _rewrite_data(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as z_in, zipfile.ZipFile(dst, "w") as z_out:
        for name in z_in.namelist():
            blob = z_in.read(name)
            if name == "data":
                doc = json.loads(blob)
                change(doc)
                blob = json.dumps(doc).encode()
            z_out.writestr(name, blob)
    return dst


def test_what_cannot_be_rebuilt_without_unpickling_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, "PPO", "MlpPolicy", (8,))

    def custom_class(doc):
        doc["policy_class"]["__module__"] = "my_project.policies"

    def custom_activation(doc):
        doc["policy_kwargs"] = {":type:": "<class 'dict'>", ":serialized:": "",
                                "activation_fn": "<class 'my_project.Swish'>"}  # fmt: skip

    def custom_extractor(doc):
        doc["policy_kwargs"] = {"features_extractor_class": "<class 'my_project.Encoder'>"}

    def box_actions(doc):
        doc["action_space"][":type:"] = "<class 'gymnasium.spaces.box.Box'>"

    for change, message in (
        (custom_class, r"policy class comes from 'my_project\.policies'"),
        (custom_activation, r"activation_fn .*my_project\.Swish.* cannot be rebuilt without unpickling"),
        (custom_extractor, r"features_extractor_class .*my_project\.Encoder.* cannot be rebuilt"),
        (box_actions, r"action space must be Discrete"),
    ):
        bad = _rewrite_data(path, tmp_path / f"{change.__name__}.zip", change)
        with pytest.raises(CorruptWeightsError, match=message):
            load_sb3_zip(bad, "PPO")
    with pytest.raises(CorruptWeightsError, match="policy class comes from"):
        load_sb3_zip(path, "DQN")  # an actor-critic policy is not a DQN one
    with pytest.raises(ValueError, match=r"Unknown or unsupported SB3 algorithm 'SAC'.*PPO, A2C, DQN"):
        load_sb3_zip(path, "SAC")


def test_files_that_are_not_sb3_zips_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SB3 policy file not found"):
        load_sb3_zip(tmp_path / "missing.zip")
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(CorruptWeightsError, match="not a readable zip file"):
        load_sb3_zip(tmp_path / "text.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("data", "{}")
    with pytest.raises(CorruptWeightsError, match="no 'policy.pth' in the zip"):
        load_sb3_zip(tmp_path / "other.zip")
    os.mkfifo(tmp_path / "fifo.zip")
    with pytest.raises(CorruptWeightsError, match="not a regular file"):
        load_sb3_zip(tmp_path / "fifo.zip")  # returns at once: a FIFO is not waited on
    with zipfile.ZipFile(tmp_path / "deep.zip", "w") as z:
        z.writestr("data", "[" * 100_000 + "]" * 100_000)
        z.writestr("policy.pth", b"")
    with pytest.raises(CorruptWeightsError, match="'data' is not valid JSON"):
        load_sb3_zip(tmp_path / "deep.zip")


def test_the_frame_policy_is_reproducible_under_its_seed(tmp_path: Path) -> None:
    path = _save(tmp_path, "PPO", "CnnPolicy", (84, 84, 4))
    frames = np.random.default_rng(3).integers(0, 256, (12, 210, 160, 3)).astype(np.uint8)
    runs = []
    for _ in range(2):
        policy = SB3Policy(path, "PPO", seed=5)
        assert policy.channel_first and policy.stack == 4  # SB3 saved the transposed space
        runs.append([policy(f) for f in frames])
    assert runs[0] == runs[1] and all(0 <= a < 6 for a in runs[0])
    with pytest.raises(ValueError, match=r"trained on observations of shape \(8,\)"):
        SB3Policy(_save(tmp_path, "PPO", "MlpPolicy", (8,)), "PPO")


def test_dataset_help_says_the_zip_is_read_without_unpickling(capsys: pytest.CaptureFixture[str]) -> None:
    from trainers.data.dataset import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "read without unpickling" in text and "weights_only=True" in text
