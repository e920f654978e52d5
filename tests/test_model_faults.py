"""Faults of the learned detector and the agent loader that must stay loud (issue 26).

- A ``config.json`` whose model sizes are absurd, of the wrong type or not finite is refused
  with CorruptWeightsError naming the field before any model is built: the loads run in a
  subprocess under an address-space limit, where building the model would fail with a raw
  allocation error instead.
- Creating and closing envs keeps memory flat (the frozen image-encoder graph is traced once per
  weights, not once per load: TorchScript never frees a trace).
- ``gymnasium.make_vec(..., vectorization_mode="async")`` with the learned detector and default
  settings does not hang (building a detector starts no OpenMP pool in the forking parent).
- The agent loader refuses a wrong action count, a policy tagged for another game, extra tensors
  and non-finite normalisation values.

Every weights folder is a copy in tmp_path whose manifest is rewritten after the edit (the
manifest is no signature), so that only the checks under test can refuse it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from moc_envs import agents
from moc_envs.errors import CorruptWeightsError
from moc_envs.games import get_game
from moc_envs.model import runtime
from moc_envs.model.config import ModelConfig
from moc_envs.model.encoder import SpaceEncoder
from moc_envs.perception.space_detector import SpaceDetector
from moc_envs.weights.manifest import write_manifest

REPO = Path(__file__).resolve().parents[1]
PONG = REPO / "weights" / "Pong"
FIXTURE = Path(__file__).parent / "fixtures" / "pong_frames.npz"
MEMORY_LIMIT = 3 * 2**30
"""Address space of the config-bomb subprocess: a detector load needs under 1 GiB of it, and
``z_what_dim: 3000000`` asked for 6 GB (1e6: 2.35 GB at its peak)."""


def _env() -> dict[str, str]:
    """The environment of a child Python: this repository importable, OMP_NUM_THREADS unset."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _detector_copy(dest: Path, **model: object) -> Path:
    """A copy of the shipped Pong detector folder whose config.json model has ``model`` set."""
    folder = Path(
        shutil.copytree(PONG, dest, ignore=shutil.ignore_patterns("space", "agent", "eval_test.*", "card.*"))
    )
    meta = json.loads((folder / "config.json").read_text())
    meta["model"].update(model)
    (folder / "config.json").write_text(json.dumps(meta))
    write_manifest(folder, "Pong")
    return folder


# ------------------------------------------------------------------ config bomb
BOMBS: dict[str, tuple[dict[str, object], str]] = {
    "z_what_dim 3000000": ({"z_what_dim": 3_000_000}, r"z_what_dim must be in \[1, 1024\], got 3000000"),
    "z_what_dim 1000000": ({"z_what_dim": 1_000_000}, r"z_what_dim must be in \[1, 1024\], got 1000000"),
    "z_what_dim 1e6": ({"z_what_dim": 1e6}, r"z_what_dim must be an int, got float 1000000\.0"),
    "bg_z_dim 3000000": ({"bg_z_dim": 3_000_000}, r"bg_z_dim must be in \[1, 1024\], got 3000000"),
    "negative": ({"z_what_dim": -32}, r"z_what_dim must be in \[1, 1024\], got -32"),
    "float": ({"z_what_dim": 32.5}, r"z_what_dim must be an int, got float 32\.5"),
    "string": ({"z_what_dim": "32"}, r"z_what_dim must be an int, got str '32'"),
    "bool": ({"glimpse": True}, r"glimpse must be an int, got bool True"),
    "pres_squash huge": ({"pres_squash": 1e9}, r"pres_squash must be a finite number in \(0, 100\], got 1000000000\.0"),
    "pres_squash negative": ({"pres_squash": -8.8}, r"pres_squash must be a finite number in \(0, 100\], got -8\.8"),
    "pres_squash string": ({"pres_squash": "8.8"}, r"pres_squash must be a number, got str '8\.8'"),
    "encoder name": ({"image_encoder": ["lean"]}, r"image_encoder must be a string, got list"),
}

_LOADER = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from moc_envs.games import get_game
    from moc_envs.perception.space_detector import SpaceDetector
    out = {{}}
    for name, folder in json.loads(sys.argv[1]).items():
        try:
            SpaceDetector.from_pretrained(folder, get_game("Pong"))
            out[name] = ["loaded", ""]
        except BaseException as err:
            out[name] = [type(err).__name__, str(err)]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def bomb_results(tmp_path_factory) -> dict[str, list[str]]:
    """Each BOMBS folder loaded in one subprocess under MEMORY_LIMIT: [error type, message]."""
    if sys.platform != "linux":
        pytest.skip("RLIMIT_AS bounds the address space on Linux only")
    root = tmp_path_factory.mktemp("bombs")
    folders = {name: str(_detector_copy(root / str(i), **model)) for i, (name, (model, _)) in enumerate(BOMBS.items())}
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER.format(limit=MEMORY_LIMIT), json.dumps(folders)],
        capture_output=True, text=True, timeout=300, env={**_env(), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(BOMBS))
def test_config_bomb_is_refused_naming_the_field_before_anything_is_built(bomb_results, case) -> None:
    kind, message = bomb_results[case]
    assert kind == "CorruptWeightsError", (kind, message)
    assert "config.json is not a valid detector config" in message
    assert re.search(BOMBS[case][1], message), message


def test_nan_pres_squash_is_refused(tmp_path) -> None:
    """NaN made every z_pres probability NaN: the detector loaded and found nothing."""
    with pytest.raises(ValueError, match=r"pres_squash must be a finite number in \(0, 100\], got nan"):
        ModelConfig(pres_squash=float("nan"))
    folder = _detector_copy(tmp_path / "Pong", pres_squash=float("nan"))  # json writes NaN
    # Refused as a bad field, or (where the JSON reader refuses NaN itself) as a bad file.
    with pytest.raises(CorruptWeightsError, match=r"config\.json.*(pres_squash|NaN)"):
        SpaceDetector.from_pretrained(folder, get_game("Pong"))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"z_what_dim": 64}, r"wrong shape \(config\.json model: z_what_dim 64.*glimpse_encoder\.net\.3\.weight: "
                             r"file \(64, 256\) vs model \(128, 256\)"),
        ({"image_encoder": "space"}, r"does not match the detector model \(config\.json model: .*image_encoder "
                                     r"'space'.*missing keys \['image_encoder\.backbone"),
    ],
)  # fmt: skip
def test_config_that_disagrees_with_the_tensors_names_its_sizes(tmp_path, model, message) -> None:
    folder = _detector_copy(tmp_path / "Pong", **model)
    with pytest.raises(CorruptWeightsError, match=message):
        SpaceDetector.from_pretrained(folder, get_game("Pong"))


def test_shapes_are_compared_before_the_model_is_built(tmp_path, monkeypatch) -> None:
    """The expected shapes come from a meta-device model: no real model for a wrong config."""
    import moc_envs.perception.space_detector as sd

    built: list[str] = []

    class Spy(SpaceEncoder):
        def __init__(self, cfg: ModelConfig) -> None:
            super().__init__(cfg)
            built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(sd, "SpaceEncoder", Spy)
    folder = _detector_copy(tmp_path / "Pong", z_what_dim=1024)
    with pytest.raises(CorruptWeightsError, match="wrong shape"):
        SpaceDetector.from_pretrained(folder, get_game("Pong"))
    assert built == ["meta"]


# ------------------------------------------------------------------ memory over create/close
_CYCLES = textwrap.dedent(
    """
    import gc, json, os
    import gymnasium as gym
    import moc_envs

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    rss = {}
    for cycle in range(1, 51):
        env = gym.make("MOC/Pong-v0")
        env.reset(seed=cycle)
        env.step(0)
        env.close()
        del env
        gc.collect()
        if cycle in (10, 50):
            rss[cycle] = rss_mb()
    print(json.dumps(rss))
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_create_close_cycles_keep_memory_flat() -> None:
    """50 cycles of gym.make / reset / step / close: RSS grew about 1.8 MB a cycle before."""
    proc = subprocess.run(
        [sys.executable, "-c", _CYCLES], capture_output=True, text=True, timeout=300,
        env={**_env(), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rss = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = rss["50"] - rss["10"]
    assert growth < 20.0, f"RSS grew {growth:.1f} MB over cycles 10-50 ({rss})"


def test_detectors_with_the_same_weights_share_one_frozen_graph(tmp_path) -> None:
    spec = get_game("Pong")
    a = SpaceDetector.from_pretrained(PONG, spec, runtime="torchscript")
    b = SpaceDetector.from_pretrained(_detector_copy(tmp_path / "Pong"), spec, runtime="torchscript")
    assert isinstance(a._image_raw, torch.jit.ScriptModule) and a._image_raw is b._image_raw
    other = SpaceDetector.from_pretrained(REPO / "weights" / "Boxing", get_game("Boxing"), runtime="torchscript")
    assert other._image_raw is not a._image_raw


def test_shared_graph_is_thread_safe_and_matches_eager_mode() -> None:
    torch.manual_seed(0)
    enc = SpaceEncoder(ModelConfig(image_encoder="lean", glimpse_encoder="lean")).eval().image_encoder
    x = torch.rand(4, 3, 128, 128)
    graph = runtime.frozen_encoder(enc, x[:1])
    with torch.inference_mode():
        want = enc.raw(x)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                for _ in range(20):
                    torch.testing.assert_close(graph(x), want, atol=1e-4, rtol=1e-4)
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert runtime.frozen_encoder(enc, x[:1]) is graph


def test_past_the_cache_size_encoders_run_eagerly(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "FROZEN_CACHE_SIZE", runtime.frozen_cache_size())
    monkeypatch.setattr(runtime, "_full_warned", False)
    torch.manual_seed(1234)
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, padding=1)).eval()
    enc.raw = enc.forward  # type: ignore[attr-defined]
    with pytest.warns(RuntimeWarning, match="different image encoders are frozen in this process"):
        assert runtime.frozen_encoder(enc, torch.zeros(1, 3, 8, 8)) == enc.raw
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        assert runtime.frozen_encoder(enc, torch.zeros(1, 3, 8, 8)) == enc.raw


# ------------------------------------------------------------------ async vector env (fork)
_ASYNC = textwrap.dedent(
    """
    import gymnasium as gym
    import moc_envs

    for kwargs in ({}, {"threads": 2}):
        # gymnasium builds a dummy env here, in the parent, then forks the workers.
        envs = gym.make_vec("MOC/Pong-v0", num_envs=2, vectorization_mode="async", **kwargs)
        obs, _ = envs.reset(seed=0)
        for _ in range(3):
            obs, *_ = envs.step(envs.action_space.sample())
        envs.close()
        print("ok", kwargs, obs.shape)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="forks workers and reads /proc")
def test_async_make_vec_with_the_learned_detector_does_not_hang() -> None:
    """It hung forever: the parent's detector started torch's OpenMP pool, then forked."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _ASYNC], capture_output=True, text=True, timeout=240, env=_env()
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"async make_vec hung: {err}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok") == 2, proc.stdout


def test_loading_a_detector_starts_no_torch_worker_threads() -> None:
    """The root cause of the hang above, in-process: load and freeze run on one torch thread."""
    code = textwrap.dedent(
        """
        import os, torch
        torch.set_num_threads(2)  # as on a two-core machine without OMP_NUM_THREADS
        from moc_envs.games import get_game
        from moc_envs.perception.space_detector import SpaceDetector
        from moc_envs.weights.search import weights_root
        before = len(os.listdir("/proc/self/task"))
        SpaceDetector.from_pretrained(weights_root() / "Pong", get_game("Pong"), threads=2)
        print(before, len(os.listdir("/proc/self/task")), torch.get_num_threads())
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after, n = map(int, proc.stdout.split())
    assert after == before and n == 2


# ------------------------------------------------------------------ agent loader
def _agent_copy(dest: Path, edit_info=None, edit_tensors=None, tag: str = "Pong") -> Path:
    """A copy of the shipped Pong agent with agent.json / the policy tensors edited, re-manifested."""
    from safetensors.numpy import load, save

    folder = Path(shutil.copytree(PONG / agents.AGENT_DIR, dest, ignore=shutil.ignore_patterns("card.md")))
    info = json.loads((folder / agents.AGENT_FILE).read_text())
    tensors = load((folder / agents.POLICY_FILE).read_bytes())
    if edit_info is not None:
        edit_info(info)
    if edit_tensors is not None:
        edit_tensors(tensors)
    (folder / agents.AGENT_FILE).write_text(json.dumps(info))
    (folder / agents.POLICY_FILE).write_bytes(save(tensors, metadata={"format": agents.AGENT_FORMAT, "game": tag}))
    write_manifest(folder, "Pong")
    return folder


def test_unedited_agent_copy_loads(tmp_path) -> None:
    policy = agents.load_folder(_agent_copy(tmp_path / "agent"), "Pong")
    assert policy.n_actions == agents.game_actions("Pong") == 6


def test_agent_with_more_actions_than_the_game_is_refused(tmp_path) -> None:
    """An 18-action policy for Pong returned action 17, which the env refuses."""

    def widen(t: dict) -> None:
        t["action.weight"] = np.zeros((18, t["action.weight"].shape[1]), np.float32)
        t["action.bias"] = np.arange(18, dtype=np.float32)

    folder = _agent_copy(tmp_path / "agent", lambda i: i["architecture"].update(actions=18), widen)
    with pytest.raises(CorruptWeightsError, match=r"agent\.json: the policy has 18 actions, Pong has 6"):
        agents.load_folder(folder, "Pong")
    with pytest.raises(CorruptWeightsError, match="the policy has 18 actions"):
        agents.load_folder(folder)  # without a requested game: agent.json's game decides


def test_policy_tagged_for_another_game_is_refused(tmp_path) -> None:
    folder = _agent_copy(tmp_path / "agent", tag="Boxing")
    with pytest.raises(CorruptWeightsError, match=r"policy\.safetensors is tagged game 'Boxing', expected 'Pong'"):
        agents.load_folder(folder, "Pong")


def test_agent_json_naming_no_game_is_refused(tmp_path) -> None:
    folder = _agent_copy(tmp_path / "agent", lambda i: i.update(game="Pongg"))
    with pytest.raises(CorruptWeightsError, match=r"agent\.json: 'game' must name a supported game"):
        agents.load_folder(folder)


def test_policy_with_extra_tensors_is_refused(tmp_path) -> None:
    def add(t: dict) -> None:
        t["hidden.2.weight"] = np.zeros((4, 64), np.float32)

    folder = _agent_copy(tmp_path / "agent", edit_tensors=add)
    with pytest.raises(CorruptWeightsError, match=r"holds tensors that agent\.json's architecture has no place for: \['hidden\.2\.weight'\]"):
        agents.load_folder(folder, "Pong")


@pytest.mark.parametrize(("field", "value"), [("min_std", float("inf")), ("epsilon", float("inf")), ("clip", float("nan"))])
def test_non_finite_normalisation_is_refused(tmp_path, field, value) -> None:
    """min_std: Infinity divided every feature to 0: the policy always chose action 0."""
    folder = _agent_copy(tmp_path / "agent", lambda i: i["normalisation"].update({field: value}))
    # Refused as a bad field, or (where the JSON reader refuses the token itself) as a bad file.
    with pytest.raises(CorruptWeightsError, match=rf"agent\.json.*({field}|Infinity|NaN)"):
        agents.load_folder(folder, "Pong")
    with pytest.raises(CorruptWeightsError, match=r"clip must be a finite number > 0 and min_std, epsilon finite"):
        agents.ObsNormalisation.from_json(
            {"mean": [0.0], "var": [1.0], "epsilon": 1e-8, "min_std": 1e-2, "clip": 10.0, field: value}, 1
        )
