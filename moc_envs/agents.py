"""Trained agents that play from object observations: the shipped format and its loader.

``moc_envs.agents.load("Pong")`` returns a :class:`Policy`: a callable from the flat object
observation (``obs_mode="flat"``, or the default ``(n_slots, 7)`` array, which it flattens) to
the action of the deterministic policy, NumPy in and out. It plays any ``MOC/<Game>-v0`` env of
its game, whichever detector the env uses::

    import gymnasium as gym
    import moc_envs.agents

    policy = moc_envs.agents.load("Pong")
    env = gym.make("MOC/Pong-v0")
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(policy(obs))

An agent folder is ``<root>/<Game>/agent/`` under the weights roots of :mod:`moc_envs.weights.search`
(``$MOC_ENVS_WEIGHTS`` first, then the bundled weights; the first root that holds
``<Game>/agent/`` provides it). It holds:

- ``policy.safetensors``: the policy MLP, ``hidden.<i>.weight`` / ``hidden.<i>.bias`` per hidden
  layer and ``action.weight`` / ``action.bias`` (the logits), in torch's ``Linear`` layout
  (``(out, in)``);
- ``agent.json``: the format tag, the game, the detector the agent was trained on, the
  architecture (layer sizes, activation), the observation normalisation (running mean and
  variance, floor of the standard deviation, clip), the training budget (frames, whether the
  run was partial) and the evaluation of :mod:`trainers.agents.evaluate`;
- ``manifest.json``: every file's SHA-256, checked before anything is read
  (:func:`moc_envs.weights.manifest.verify_folder`).

Nothing is unpickled: the loader reads safetensors and JSON, and the forward pass is NumPy
(no torch import). :mod:`trainers.agents.train` trains agents and writes this folder through
:func:`save_agent`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from moc_envs.agent_features import FEATURE_SETS, apply_features, feature_count, layout_for
from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.games import get_game

__all__ = [
    "AGENT_DIR",
    "AGENT_FORMAT",
    "POLICY_FILE",
    "AGENT_FILE",
    "ACTIVATIONS",
    "ObsNormalisation",
    "Policy",
    "normalise_observation",
    "agent_dir",
    "find_agent",
    "game_actions",
    "load",
    "load_folder",
    "save_agent",
]

AGENT_DIR = "agent"
"""Sub-folder of a game's weights folder that holds its agent."""

AGENT_FORMAT = "moc_envs.agent/1"
"""Format tag of ``agent.json`` and of the safetensors metadata."""

POLICY_FILE = "policy.safetensors"
AGENT_FILE = "agent.json"

Activation = Literal["tanh", "relu"]
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu")
"""Hidden-layer activations the loader implements."""


@dataclass(frozen=True)
class ObsNormalisation:
    """Per-feature standardisation of the observation, as the agent saw it in training.

    ``(obs - mean) / max(sqrt(var + epsilon), min_std)``, clipped to ``[-clip, clip]``. The floor
    ``min_std`` keeps features that never varied in training (a box width that the RAM oracle
    reports as a constant) from turning a one-pixel wobble of another detector into +-clip.
    """

    mean: np.ndarray
    var: np.ndarray
    epsilon: float = 1e-8
    min_std: float = 1e-2
    clip: float = 10.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (lists of floats)."""
        return {
            "mean": [float(v) for v in self.mean],
            "var": [float(v) for v in self.var],
            "epsilon": self.epsilon,
            "min_std": self.min_std,
            "clip": self.clip,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n_features: int, source: str = "agent.json") -> ObsNormalisation:
        """Parse :meth:`to_json`'s dict; CorruptWeightsError naming ``source`` when malformed."""
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            var = np.asarray(data["var"], dtype=np.float64)
            norm = cls(mean, var, float(data["epsilon"]), float(data["min_std"]), float(data["clip"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptWeightsError(
                f"{source}: observation normalisation must give mean, var (lists of {n_features} "
                f"numbers), epsilon, min_std and clip ({err!r})"
            ) from err
        if mean.shape != (n_features,) or var.shape != (n_features,):
            raise CorruptWeightsError(
                f"{source}: normalisation mean and var must hold {n_features} values each, got "
                f"{mean.shape} and {var.shape}"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
            raise CorruptWeightsError(f"{source}: normalisation mean / var must be finite, var >= 0")
        # Infinite min_std or epsilon would divide every feature to 0: a constant action.
        scalars = (norm.clip, norm.min_std, norm.epsilon)
        if not (all(np.isfinite(scalars)) and norm.clip > 0 and norm.min_std >= 0 and norm.epsilon >= 0):
            raise CorruptWeightsError(
                f"{source}: clip must be a finite number > 0 and min_std, epsilon finite numbers "
                f">= 0, got clip {norm.clip}, min_std {norm.min_std}, epsilon {norm.epsilon}"
            )
        return norm


def normalise_observation(obs: np.ndarray, norm: ObsNormalisation) -> np.ndarray:
    """``obs`` (..., F) standardised as in training (see :class:`ObsNormalisation`), float32."""
    std = np.maximum(np.sqrt(norm.var + norm.epsilon), norm.min_std)
    out = (np.asarray(obs, dtype=np.float64) - norm.mean) / std
    return np.clip(out, -norm.clip, norm.clip).astype(np.float32)


def _activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "tanh":
        return np.tanh(x)
    return np.maximum(x, 0.0)


class Policy:
    """A deterministic policy over flat object observations: ``policy(obs) -> action``.

    ``obs``: one observation, ``(F,)`` flat or the ``(n_slots, 7)`` objects array, or a batch of
    either (``(N, F)``, ``(N, n_slots, 7)``). Returns an ``int`` for one observation and an
    ``(N,)`` int64 array for a batch: the argmax of the logits (SB3's ``deterministic=True``).
    An agent trained on ``features="relative"`` or ``"relative_screen"`` (agent.json's ``features``) takes the env's
    observation all the same and rewrites it first (:mod:`moc_envs.agent_features`).
    """

    def __init__(
        self,
        hidden: Sequence[tuple[np.ndarray, np.ndarray]],
        action: tuple[np.ndarray, np.ndarray],
        normalisation: ObsNormalisation,
        activation: Activation = "tanh",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Weights as ``(weight (out, in), bias (out,))`` pairs; ``info``: the agent.json dict."""
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        self.hidden = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in hidden]
        self.action = (np.asarray(action[0], np.float32), np.asarray(action[1], np.float32))
        self.normalisation = normalisation
        self.activation: Activation = activation
        self.info: dict[str, Any] = dict(info or {})
        layers = [*self.hidden, self.action]
        n_in = layers[0][0].shape[1]
        for i, (w, b) in enumerate(layers):
            if w.ndim != 2 or w.shape[1] != n_in or b.shape != (w.shape[0],):
                raise ValueError(
                    f"layer {i}: expected a weight of shape (out, {n_in}) and a bias of shape "
                    f"(out,), got {w.shape} and {b.shape}"
                )
            n_in = w.shape[0]
        self.n_features = int(layers[0][0].shape[1])
        self.n_actions = int(self.action[0].shape[0])
        self.features = str(self.info.get("features", "slots"))
        self._layout = layout_for(self.features, str(self.info.get("game")))  # refuses an unknown set
        # Entries of the env observation the policy takes (the network's input is what the
        # features make of it).
        self.n_inputs = self.n_features if self._layout is None else self._layout.n_slots * 7
        if self._layout is not None and self.n_features != feature_count(self.features, self._layout.n_slots):
            raise ValueError(
                f"{self.features} features of {self._layout.game} make {feature_count(self.features, self._layout.n_slots)} "
                f"inputs, the network takes {self.n_features}"
            )
        if normalisation.mean.shape != (self.n_features,):
            raise ValueError(
                f"normalisation for {normalisation.mean.shape[0]} features, the network takes {self.n_features}"
            )

    @property
    def game(self) -> str | None:
        """The game the agent was trained on (from agent.json)."""
        return self.info.get("game")

    @property
    def detector(self) -> str | None:
        """The detector whose objects the agent was trained on: ``"space"`` or ``"ram"``."""
        return self.info.get("detector")

    def _batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        """The network's inputs (N, n_features) of ``obs``, and whether it was one observation."""
        x = np.asarray(obs, dtype=np.float32)
        f = self.n_inputs
        if x.ndim >= 1 and x.shape[-1] == f and x.ndim <= 2:
            batch, single = x.reshape(-1, f), x.ndim == 1
        elif x.ndim in (2, 3) and x.shape[-1] * x.shape[-2] == f:  # the (n_slots, 7) objects array
            batch, single = x.reshape(-1, f), x.ndim == 2
        else:
            raise ValueError(
                f"observation must be ({f},) flat, a (n_slots, 7) objects array with {f} entries, or a "
                f"batch of either, got shape {x.shape}"
            )
        return apply_features(batch, self.features, self._layout), single

    def _logits(self, x: np.ndarray) -> np.ndarray:
        h = normalise_observation(x, self.normalisation)
        for w, b in self.hidden:
            h = _activate(h @ w.T + b, self.activation)
        return h @ self.action[0].T + self.action[1]

    def logits(self, obs: Any) -> np.ndarray:
        """The action logits ``(N, n_actions)`` of a batch (or ``(n_actions,)`` of one observation)."""
        x, single = self._batch(obs)
        out = self._logits(x)
        return out[0] if single else out

    def __call__(self, obs: Any) -> int | np.ndarray:
        """The deterministic action(s) for ``obs``."""
        x, single = self._batch(obs)
        actions = np.argmax(self._logits(x), axis=-1).astype(np.int64)
        return int(actions[0]) if single else actions

    def __repr__(self) -> str:
        sizes = [self.n_features, *(w.shape[0] for w, _ in self.hidden), self.n_actions]
        return (
            f"Policy(game={self.game!r}, detector={self.detector!r}, layers={sizes}, "
            f"activation={self.activation!r})"
        )


# ---------------------------------------------------------------------------- folders
def agent_dir(game: str) -> Path | None:
    """The ``<root>/<Game>/agent`` folder of the first weights root that has one, else None."""
    from moc_envs.weights.search import weights_search_path

    name = get_game(game).name
    for root, _ in weights_search_path():
        if (root / name / AGENT_DIR).is_dir():
            return root / name / AGENT_DIR
    return None


def find_agent(game: str, weights: str | os.PathLike[str] | None = None) -> Path:
    """The agent folder of ``game`` (``weights``: an agent folder or a root), or MissingWeightsError."""
    from moc_envs.weights.search import check_weights_argument

    name = get_game(game).name
    path = check_weights_argument(weights)  # TypeError / ValueError for a non-path or ''
    if weights is not None and path is not None:
        for candidate in (path, path / AGENT_DIR, path / name / AGENT_DIR):
            # lexists: a FIFO or link in its place is refused by the load, naming what it is.
            if os.path.lexists(candidate / AGENT_FILE):
                return candidate
        raise MissingWeightsError(
            f"weights={str(weights)!r} holds no agent: expected {AGENT_FILE} in it, in "
            f"{path / AGENT_DIR} or in {path / name / AGENT_DIR}"
        )
    folder = agent_dir(name)
    if folder is None:
        from moc_envs.weights.search import weights_search_path

        searched = ", ".join(str(root / name / AGENT_DIR) for root, _ in weights_search_path())
        raise MissingWeightsError(
            f"No trained agent for {name}: none of {searched} exists. Train and export one with:\n"
            f"  moc-envs agent --game {name} --detector space --out runs/agents/{name.lower()}_space\n"
            f"  moc-envs agent-eval --run runs/agents/{name.lower()}_space --export "
            f"<root>/{name}/{AGENT_DIR}\n"
            "then set MOC_ENVS_WEIGHTS=<root> (or pass weights=<root>)"
        )
    return folder


@functools.cache
def game_actions(game: str) -> int:
    """How many actions ``MOC/<Game>-v0`` takes: the size of the game's minimal ALE action set.

    Read from the ROM (ALE's ``getMinimalActionSet``), which is what the envs play unless made
    with ``full_action_space=True``.
    """
    import ale_py
    import gymnasium as gym
    from ale_py import ALEInterface, LoggerMode, roms

    gym.register_envs(ale_py)
    rom = gym.spec(get_game(game).ale_id).kwargs["game"]
    ALEInterface.setLoggerMode(LoggerMode.Error)  # no banner for a look-up
    ale = ALEInterface()
    ale.loadROM(roms.get_rom_path(rom))
    return len(ale.getMinimalActionSet())


def _check_tensor(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], source: Path) -> np.ndarray:
    if name not in tensors:
        raise CorruptWeightsError(f"{source} has no tensor {name!r}; it holds {sorted(tensors)}")
    t = tensors[name]
    if t.shape != shape:
        raise CorruptWeightsError(f"{source}: tensor {name!r} must have shape {shape}, got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise CorruptWeightsError(f"{source}: tensor {name!r} holds NaN or inf")
    return t


def load_folder(folder: str | os.PathLike[str], game: str | None = None) -> Policy:
    """The :class:`Policy` of one agent folder, after its manifest check.

    Raises MissingWeightsError when the folder does not exist and CorruptWeightsError when the
    manifest, a file's hash, the format, the game (agent.json's or the policy file's tag), the
    action count (the game's, see :func:`game_actions`), a tensor's shape, an extra tensor or a
    normalisation value (non-finite, out of range) is not what it should be.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_safetensors

    from moc_envs.weights.manifest import safetensors_metadata, verify_folder

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingWeightsError(f"agent folder {folder} does not exist")
    name = get_game(game).name if game is not None else None
    verified = verify_folder(folder, name)
    source = folder / AGENT_FILE
    info = verified.read_json(AGENT_FILE)
    if not isinstance(info, dict) or info.get("format") != AGENT_FORMAT:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise CorruptWeightsError(f"{source} has format {got!r}, expected {AGENT_FORMAT!r}")
    if name is not None and info.get("game") != name:
        raise CorruptWeightsError(f"{source} is an agent for {info.get('game')!r}, not {name!r}")
    try:
        agent_game = get_game(info.get("game")).name  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise CorruptWeightsError(f"{source}: 'game' must name a supported game ({err})") from err
    if info["game"] != agent_game:
        raise CorruptWeightsError(f"{source}: 'game' must be spelled {agent_game!r}, got {info['game']!r}")
    arch = info.get("architecture")
    try:
        n_in = int(arch["input"])
        sizes = [int(s) for s in arch["hidden"]]
        n_actions = int(arch["actions"])
        activation = str(arch["activation"])
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptWeightsError(
            f"{source}: 'architecture' must give input, hidden (a list of layer sizes), actions and "
            f"activation, got {arch!r}"
        ) from err
    if activation not in ACTIVATIONS:
        raise CorruptWeightsError(f"{source}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if min([n_in, n_actions, *sizes]) < 1:
        raise CorruptWeightsError(f"{source}: layer sizes must be >= 1, got {[n_in, *sizes, n_actions]}")
    if n_actions != game_actions(agent_game):
        # An argmax over more logits than the env has actions returns actions the env refuses.
        raise CorruptWeightsError(
            f"{source}: the policy has {n_actions} actions, {agent_game} has {game_actions(agent_game)} "
            f"(its minimal ALE action set, as MOC/{agent_game}-v0 plays it)"
        )
    features = info.get("features", "slots")
    if features not in FEATURE_SETS:
        raise CorruptWeightsError(f"{source}: features must be one of {', '.join(FEATURE_SETS)}, got {features!r}")
    want = feature_count(features, get_game(agent_game).n_slots)
    if n_in != want:
        # A policy for another game's (or another feature set's) observation never plays this one.
        raise CorruptWeightsError(
            f"{source}: {features} features of {agent_game} make {want} inputs, the architecture says {n_in}"
        )
    norm = ObsNormalisation.from_json(info.get("normalisation") or {}, n_in, str(source))

    weights_path = folder / POLICY_FILE
    data = verified.read_bytes(POLICY_FILE)
    meta = safetensors_metadata(data, weights_path)
    if meta.get("format") != AGENT_FORMAT:
        raise CorruptWeightsError(f"{weights_path} has format {meta.get('format')!r}, expected {AGENT_FORMAT!r}")
    if meta.get("game") != agent_game:
        # A policy copied in from another game's agent folder next to this game's agent.json.
        raise CorruptWeightsError(
            f"{weights_path} is tagged game {meta.get('game')!r}, expected {agent_game!r} (as "
            f"{AGENT_FILE} says): a policy from another game's agent"
        )
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError) as err:
        raise CorruptWeightsError(f"{weights_path} is not a readable safetensors file: {err}") from err
    hidden = []
    prev = n_in
    for i, size in enumerate(sizes):
        w = _check_tensor(tensors, f"hidden.{i}.weight", (size, prev), weights_path)
        b = _check_tensor(tensors, f"hidden.{i}.bias", (size,), weights_path)
        hidden.append((w, b))
        prev = size
    action = (
        _check_tensor(tensors, "action.weight", (n_actions, prev), weights_path),
        _check_tensor(tensors, "action.bias", (n_actions,), weights_path),
    )
    names = {f"hidden.{i}.{part}" for i in range(len(sizes)) for part in ("weight", "bias")}
    extra = sorted(set(tensors) - names - {"action.weight", "action.bias"})
    if extra:
        raise CorruptWeightsError(
            f"{weights_path} holds tensors that {AGENT_FILE}'s architecture has no place for: {extra[:5]}"
            f"{'...' if len(extra) > 5 else ''} (expected exactly {sorted(names | {'action.weight', 'action.bias'})})"
        )
    return Policy(hidden, action, norm, activation, info)  # type: ignore[arg-type]


def load(game: str, weights: str | os.PathLike[str] | None = None) -> Policy:
    """The trained agent of ``game`` as a deterministic :class:`Policy` (NumPy in, NumPy out).

    ``weights``: an agent folder or a weights root holding ``<Game>/agent``; by default the
    first root of the weights search path (``$MOC_ENVS_WEIGHTS``, then the bundled weights)
    that holds one. Raises MissingWeightsError when there is none (with the commands that make
    one) and CorruptWeightsError when its files fail the manifest or format checks.
    """
    name = get_game(game).name
    return load_folder(find_agent(name, weights), name)


def save_agent(
    folder: str | os.PathLike[str],
    game: str,
    hidden: Sequence[tuple[np.ndarray, np.ndarray]],
    action: tuple[np.ndarray, np.ndarray],
    normalisation: ObsNormalisation,
    activation: Activation,
    info: Mapping[str, Any],
) -> Path:
    """Write an agent folder (policy.safetensors, agent.json, manifest.json) atomically; return it.

    ``info``: what agent.json records besides the format, the game, the architecture and the
    normalisation (detector, training budget, evaluation, ...). The policy is built once from
    the arrays first, so that a folder that :func:`load_folder` would refuse is never written.
    """
    from safetensors.numpy import save as save_safetensors

    from moc_envs.weights.atomic import atomic_path, atomic_write_text
    from moc_envs.weights.manifest import write_manifest

    name = get_game(game).name
    policy = Policy(hidden, action, normalisation, activation, {**info, "game": name})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(policy.hidden):
        tensors[f"hidden.{i}.weight"] = np.ascontiguousarray(w)
        tensors[f"hidden.{i}.bias"] = np.ascontiguousarray(b)
    tensors["action.weight"] = np.ascontiguousarray(policy.action[0])
    tensors["action.bias"] = np.ascontiguousarray(policy.action[1])
    blob = save_safetensors(tensors, metadata={"format": AGENT_FORMAT, "game": name})
    with atomic_path(folder / POLICY_FILE) as tmp:
        tmp.write_bytes(blob)
    record = {
        "format": AGENT_FORMAT,
        "game": name,
        **{k: v for k, v in info.items() if k not in ("format", "game", "architecture", "normalisation")},
        "architecture": {
            "input": policy.n_features,
            "hidden": [int(w.shape[0]) for w, _ in policy.hidden],
            "actions": policy.n_actions,
            "activation": activation,
        },
        "normalisation": normalisation.to_json(),
    }
    atomic_write_text(folder / AGENT_FILE, json.dumps(record, indent=2) + "\n")
    write_manifest(folder, name, written=[POLICY_FILE, AGENT_FILE])
    return folder
