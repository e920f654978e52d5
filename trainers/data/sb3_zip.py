"""Stable-Baselines3 model zips, read without unpickling anything.

``PPO.load`` (and every SB3 ``load``) unpickles the ``:serialized:`` entries of the zip's
``data`` file with cloudpickle, so a doctored zip runs its own code at load. This module reads
the same zip as data only:

* ``policy.pth``, the policy's ``state_dict``, with ``torch.load(..., weights_only=True)``;
* the plain JSON of ``data``: the observation space's dtype, shape and bounds, the action
  space's size, the policy class's module, ``policy_kwargs`` (``net_arch``, the activation's
  name, ``normalize_images``...) and DQN's ``exploration_rate``; every ``:serialized:`` value
  is ignored;
* the layer sizes, and which features extractor was used, from the tensors' names and shapes.

From those it rebuilds SB3's own policy class (``ActorCriticPolicy`` for PPO and A2C,
``DQNPolicy`` for DQN, with SB3's ``FlattenExtractor`` or ``NatureCNN``) and loads the weights
strictly. What cannot be rebuilt that way (a custom policy or features extractor, an activation
outside ``torch.nn``, a continuous or dict action/observation space) is refused with
:class:`~moc_envs.errors.CorruptWeightsError` saying what was found.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from moc_envs.errors import CorruptWeightsError

__all__ = ["SUPPORTED_ALGOS", "SB3Model", "load_sb3_zip"]

SUPPORTED_ALGOS = {"PPO": "actor-critic", "A2C": "actor-critic", "DQN": "dqn"}
"""The algorithms whose saved policies :func:`load_sb3_zip` rebuilds, and their policy family."""

# Where SB3 defines the policy classes of each family (``policy_class.__module__`` in data).
_POLICY_MODULES = {
    "actor-critic": "stable_baselines3.common.policies",
    "dqn": "stable_baselines3.dqn.policies",
}
# Activations written by SB3 as ``str(cls)``; the name is looked up in torch.nn, never imported.
_ACTIVATIONS = frozenset(
    "Tanh ReLU LeakyReLU ELU SELU CELU GELU SiLU Mish Sigmoid Softplus Softsign Hardtanh "
    "Hardswish ReLU6 Tanhshrink Identity".split()
)
_ACTIVATION_REPR = re.compile(r"^<class 'torch\.nn\.modules\.(?:activation|linear)\.(\w+)'>$")
_EXTRACTOR_REPR = re.compile(
    r"^<class 'stable_baselines3\.common\.torch_layers\.(NatureCNN|FlattenExtractor)'>$"
)
# policy_kwargs entries that only matter for training or for continuous actions.
_IGNORED_KWARGS = frozenset(
    "ortho_init optimizer_class optimizer_kwargs log_std_init full_std use_expln squash_output "
    "use_sde".split()
)
_DTYPES = frozenset("uint8 int8 uint16 int16 int32 int64 float16 float32 float64".split())
_NUMBER = re.compile(r"[-+]?(?:inf|nan|\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)", re.I)

MAX_DATA_BYTES = 64 << 20
MAX_POLICY_BYTES = 2 << 30
MAX_OBSERVATION_SIZE = 10_000_000
MAX_ACTIONS = 100_000


@dataclass
class SB3Model:
    """A policy rebuilt from an SB3 zip: SB3's own torch module and what it was trained on."""

    policy: Any
    """``ActorCriticPolicy`` or ``DQNPolicy``, weights loaded, in evaluation mode."""
    observation_space: Any
    """The ``gymnasium.spaces.Box`` the model was trained on (after SB3's own transposition)."""
    n_actions: int
    family: Literal["actor-critic", "dqn"]
    exploration_rate: float = 0.0
    """DQN's epsilon at save time (``model.predict`` acts randomly with it); 0 otherwise."""

    def action_probabilities(self, obs: np.ndarray) -> np.ndarray:
        """The policy's probability of each action for one observation (DQN: one-hot argmax)."""
        import torch

        with torch.no_grad():
            tensor, _ = self.policy.obs_to_tensor(obs)
            if self.family == "dqn":
                q = self.policy.q_net(tensor)[0]
                probs = torch.nn.functional.one_hot(q.argmax(), self.n_actions).double()
            else:
                probs = self.policy.get_distribution(tensor).distribution.probs[0].double()
        return probs.cpu().numpy()

    def act(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> int:
        """One action for ``obs``: the most likely one, or one drawn with ``rng``.

        Drawing as SB3's ``model.predict(obs, deterministic=False)`` does: from the action
        distribution for PPO/A2C; for DQN the greedy action, random with ``exploration_rate``.
        """
        if not deterministic and self.family == "dqn" and rng.random() < self.exploration_rate:
            return int(rng.integers(self.n_actions))
        probs = self.action_probabilities(obs)
        if deterministic or self.family == "dqn":
            return int(np.argmax(probs))
        cdf = np.cumsum(probs)
        return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


def _bad(path: Path, what: str) -> CorruptWeightsError:
    return CorruptWeightsError(f"SB3 model {path}: {what}")


def _read_zip(path: Path) -> tuple[dict[str, Any], bytes]:
    """``data`` parsed as JSON and the bytes of ``policy.pth``; the file must be a regular zip."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"SB3 policy file not found: {path}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise _bad(path, "not a regular file")
        try:
            with zipfile.ZipFile(f) as z:
                members = {info.filename: info for info in z.infolist()}
                for name, limit in (("data", MAX_DATA_BYTES), ("policy.pth", MAX_POLICY_BYTES)):
                    if name not in members:
                        raise _bad(path, f"no '{name}' in the zip (is it a model saved by SB3?)")
                    if members[name].file_size > limit:
                        raise _bad(path, f"'{name}' is {members[name].file_size} bytes, over {limit}")
                data_bytes = z.read("data")
                weights = z.read("policy.pth")
        except (
            zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            ValueError,
        ) as e:  # fmt: skip
            if isinstance(e, CorruptWeightsError):
                raise
            raise _bad(path, f"not a readable zip file ({e})") from None
    try:
        data = json.loads(data_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"its 'data' is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise _bad(path, "its 'data' is not a JSON object")
    return data, weights


def _load_state_dict(path: Path, blob: bytes) -> dict[str, Any]:
    """``policy.pth`` as tensors only: anything pickled beyond tensors is refused by torch."""
    import torch

    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for foreign files
        # First line only: torch goes on to advise weights_only=False, which would run the code.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _bad(path, f"'policy.pth' is not a plain state_dict of tensors ({reason})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _bad(path, "'policy.pth' is not a state_dict (names to tensors)")
    return state


def _entry(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _bad(path, f"'data' has no readable '{key}'")
    return value


def _int(value: Any, what: str, path: Path, low: int, high: int) -> int:
    """An int written by SB3 as a number or as its str() (``"6"``), within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(path, f"{what} must be an integer, got {value!r}")
    text = str(value).strip()
    if not re.fullmatch(r"-?\d{1,12}", text) or not low <= int(text) <= high:
        raise _bad(path, f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return int(text)


def _numbers(text: Any) -> tuple[list[float], bool]:
    """The numbers in a numpy array's repr, and whether the repr shows them all (no '...')."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return [float(text)], True
    if not isinstance(text, str):
        return [], False
    return [float(t) for t in _NUMBER.findall(text)], "..." not in text


def _action_count(data: dict[str, Any], path: Path) -> int:
    space = _entry(data, "action_space", path)
    if not str(space.get(":type:", "")).endswith("spaces.discrete.Discrete'>"):
        raise _bad(path, f"the action space must be Discrete, got {space.get(':type:')!r}")
    if _int(space.get("start", 0), "action_space.start", path, -(2**31), 2**31) != 0:
        raise _bad(path, f"a Discrete action space starting at {space['start']} is not supported")
    return _int(space.get("n"), "action_space.n", path, 1, MAX_ACTIONS)


def _observation_space(data: dict[str, Any], path: Path) -> Any:
    """The Box the model saw, rebuilt from its dtype, shape and the bounds' repr."""
    import gymnasium as gym

    space = _entry(data, "observation_space", path)
    if not str(space.get(":type:", "")).endswith("spaces.box.Box'>"):
        raise _bad(path, f"the observation space must be a Box, got {space.get(':type:')!r}")
    dims = space.get("_shape", space.get("shape"))
    if not isinstance(dims, list) or not 1 <= len(dims) <= 4:
        raise _bad(path, f"observation_space shape must be 1 to 4 sizes, got {dims!r}")
    shape = tuple(_int(d, "an observation size", path, 1, MAX_OBSERVATION_SIZE) for d in dims)
    if math.prod(shape) > MAX_OBSERVATION_SIZE:
        raise _bad(path, f"observation shape {shape} is over {MAX_OBSERVATION_SIZE} values")
    dtype = space.get("dtype")
    if dtype not in _DTYPES:
        raise _bad(path, f"observation dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    low, low_all = _numbers(space.get("low"))
    high, high_all = _numbers(space.get("high"))
    if not low or not high:
        raise _bad(path, "observation_space has no readable 'low'/'high' bounds")
    if dtype == "uint8" and len(shape) == 3:
        # SB3 scales by 1/255 exactly when the space is a [0, 255] uint8 image; a long repr
        # is abbreviated ('...'), so what it shows stands for the rest.
        if set(low) == {0.0} and set(high) == {255.0}:
            return gym.spaces.Box(0, 255, shape, np.uint8)
    size = math.prod(shape)
    if low_all and high_all and len(low) == len(high) == size:
        lo, hi = np.array(low).reshape(shape), np.array(high).reshape(shape)
    elif len(set(low)) == 1 and len(set(high)) == 1:
        lo, hi = np.full(shape, low[0]), np.full(shape, high[0])
    else:
        # Bounds that the repr abbreviates only matter to SB3 for images, handled above.
        info = np.iinfo(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else None
        lo = np.full(shape, info.min if info else -np.inf)
        hi = np.full(shape, info.max if info else np.inf)
    try:
        return gym.spaces.Box(lo.astype(dtype), hi.astype(dtype), shape, np.dtype(dtype))
    except (ValueError, OverflowError) as e:
        raise _bad(path, f"observation bounds do not fit {dtype}: {e}") from None


def _policy_kwargs(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The JSON part of ``policy_kwargs`` (SB3 stores a non-JSON dict with str() of its items)."""
    kwargs = data.get("policy_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise _bad(path, f"policy_kwargs must be a JSON object, got {type(kwargs).__name__}")
    return {k: v for k, v in kwargs.items() if k not in (":type:", ":serialized:")}


def _layer_sizes(state: dict[str, Any], prefix: str, path: Path) -> list[tuple[int, int]]:
    """(out, in) of each Linear in the Sequential ``prefix``, in order."""
    found = {}
    for name, tensor in state.items():
        m = re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", name)
        if m:
            if tensor.ndim != 2:
                raise _bad(path, f"{name} must be a matrix, got shape {tuple(tensor.shape)}")
            found[int(m[1])] = (int(tensor.shape[0]), int(tensor.shape[1]))
    return [found[i] for i in sorted(found)]


def _extractor(state: dict[str, Any], prefix: str, kwargs: dict[str, Any], path: Path) -> Any:
    """The features extractor class and kwargs, from the tensors and what policy_kwargs says."""
    from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN

    cnn = f"{prefix}features_extractor.linear.0.weight" in state
    named = kwargs.get("features_extractor_class")
    if named is not None:
        m = _EXTRACTOR_REPR.fullmatch(str(named))
        if m is None:
            raise _bad(
                path,
                f"features_extractor_class {named!r} cannot be rebuilt without unpickling; "
                "only SB3's NatureCNN and FlattenExtractor can",
            )
        if (m[1] == "NatureCNN") != cnn:
            raise _bad(path, f"policy_kwargs names {m[1]}, but policy.pth holds other tensors")
    if not cnn:
        return FlattenExtractor, {}
    extra = kwargs.get("features_extractor_kwargs") or {}
    if not isinstance(extra, dict) or not set(extra) <= {"features_dim", "normalized_image"}:
        raise _bad(path, f"features_extractor_kwargs {extra!r} are not understood")
    features_dim = int(state[f"{prefix}features_extractor.linear.0.weight"].shape[0])
    normalized = extra.get("normalized_image", False)
    if not isinstance(normalized, bool):
        raise _bad(path, f"normalized_image must be true or false, got {normalized!r}")
    return NatureCNN, {"features_dim": features_dim, "normalized_image": normalized}


def _activation(kwargs: dict[str, Any], family: str, path: Path) -> Any:
    import torch

    named = kwargs.get("activation_fn")
    if named is None:
        return torch.nn.ReLU if family == "dqn" else torch.nn.Tanh  # SB3's defaults
    m = _ACTIVATION_REPR.fullmatch(str(named))
    if m is None or m[1] not in _ACTIVATIONS:
        raise _bad(
            path,
            f"activation_fn {named!r} cannot be rebuilt without unpickling; expected one of "
            f"torch.nn's {', '.join(sorted(_ACTIVATIONS))}",
        )
    return getattr(torch.nn, m[1])


def _flag(kwargs: dict[str, Any], key: str, default: bool, path: Path) -> bool:
    value = kwargs.get(key, default)
    if not isinstance(value, bool):
        raise _bad(path, f"policy_kwargs {key} must be true or false, got {value!r}")
    return value


def _build(
    family: str, state: dict[str, Any], kwargs: dict[str, Any], obs_space: Any, n: int, path: Path
) -> Any:
    """SB3's policy of ``family`` with the architecture that ``state`` and ``kwargs`` describe."""
    import gymnasium as gym
    import torch

    unknown = set(kwargs) - _IGNORED_KWARGS - {
        "net_arch", "activation_fn", "features_extractor_class", "features_extractor_kwargs",
        "normalize_images", "share_features_extractor",
    }  # fmt: skip
    if unknown:
        raise _bad(
            path, f"policy_kwargs {sorted(unknown)} cannot be rebuilt without unpickling"
        )
    common = {
        "activation_fn": _activation(kwargs, family, path),
        "normalize_images": _flag(kwargs, "normalize_images", True, path),
    }
    action_space = gym.spaces.Discrete(n)

    def lr(_: float) -> float:
        return 0.0  # no training here; SB3 wants a schedule for the optimiser it builds

    if family == "dqn":
        from stable_baselines3.dqn.policies import DQNPolicy

        extractor, extractor_kwargs = _extractor(state, "q_net.", kwargs, path)
        layers = _layer_sizes(state, "q_net.q_net.", path)
        if not layers:
            raise _bad(path, "policy.pth has no q_net.q_net layers (not a DQN policy?)")
        make = partial(
            DQNPolicy,
            obs_space, action_space, lr, net_arch=[o for o, _ in layers[:-1]],
            features_extractor_class=extractor, features_extractor_kwargs=extractor_kwargs,
            **common,
        )  # fmt: skip
    else:
        from stable_baselines3.common.policies import ActorCriticPolicy

        extractor, extractor_kwargs = _extractor(state, "", kwargs, path)
        pi = [o for o, _ in _layer_sizes(state, "mlp_extractor.policy_net.", path)]
        vf = [o for o, _ in _layer_sizes(state, "mlp_extractor.value_net.", path)]
        share = _flag(kwargs, "share_features_extractor", True, path)
        if "vf_features_extractor.linear.0.weight" in state:
            # A shared extractor is saved under each of its names with equal values.
            share = all(
                torch.equal(v, state.get("vf_" + k[len("pi_") :], v))
                for k, v in state.items()
                if k.startswith("pi_features_extractor.")
            )
        make = partial(
            ActorCriticPolicy,
            obs_space, action_space, lr, net_arch={"pi": pi, "vf": vf},
            features_extractor_class=extractor, features_extractor_kwargs=extractor_kwargs,
            share_features_extractor=share, **common,
        )  # fmt: skip
    try:
        policy = make()
    except (AssertionError, ValueError, TypeError) as e:  # NatureCNN asserts an image space
        raise _bad(path, f"its policy cannot be rebuilt for {obs_space}: {e}") from None
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise _bad(
            path, f"policy.pth does not fit the architecture read from the zip's JSON: {e}"
        ) from None
    policy.set_training_mode(False)
    return policy


def load_sb3_zip(path: str | Path, algo: str = "PPO") -> SB3Model:
    """Rebuild the policy saved in the SB3 zip ``path`` by ``algo`` (PPO, A2C or DQN).

    Nothing in the zip is unpickled (see the module docstring); a zip whose policy cannot be
    rebuilt from its tensors and plain JSON raises
    :class:`~moc_envs.errors.CorruptWeightsError` naming what is missing or not understood.
    """
    path = Path(path)
    family = SUPPORTED_ALGOS.get(str(algo).upper())
    if family is None:
        raise ValueError(
            f"Unknown or unsupported SB3 algorithm '{algo}'; expected one of "
            f"{', '.join(SUPPORTED_ALGOS)} (their policies load without unpickling)"
        )
    data, blob = _read_zip(path)
    module = _entry(data, "policy_class", path).get("__module__")
    if module != _POLICY_MODULES[family]:
        raise _bad(
            path,
            f"its policy class comes from {module!r}; {algo.upper()} policies that load without "
            f"unpickling come from {_POLICY_MODULES[family]!r} (MlpPolicy or CnnPolicy)",
        )
    n_actions = _action_count(data, path)
    obs_space = _observation_space(data, path)
    state = _load_state_dict(path, blob)
    policy = _build(family, state, _policy_kwargs(data, path), obs_space, n_actions, path)
    epsilon = 0.0
    if family == "dqn":
        epsilon = data.get("exploration_rate", 0.0)
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
            raise _bad(path, f"exploration_rate must be a number, got {epsilon!r}")
        if not 0.0 <= epsilon <= 1.0:
            raise _bad(path, f"exploration_rate must be in [0, 1], got {epsilon!r}")
    return SB3Model(policy, obs_space, n_actions, family, float(epsilon))  # type: ignore[arg-type]
