"""Train a PPO agent on MOC object observations (SB3, CleanRL-style, read top to bottom).

    moc-envs agent --game Pong --detector space|ram --out runs/agents/pong_space
        [--frames 10_000_000] [--envs 8] [--workers 2] [--threads 1] [--resume] [--seed 0]
        [--features slots|relative|relative_screen]

Stable-Baselines3 PPO with ``MlpPolicy`` on the flat object observation of ``MOC/<Game>-v0``
(``obs_mode="flat"``), N envs through :func:`moc_envs.make_vec` (``workers`` processes) and
:class:`moc_envs.envs.sb3.SB3VecEnv`. ``--features relative`` rewrites it as seen from the player
(:mod:`moc_envs.agent_features`). The observation is standardised by :class:`ObsNormaliser`
(running mean / variance per feature, as SB3's ``VecNormalize`` but with its statistics stored
in our own JSON). Hyperparameters: :data:`PPO_DEFAULTS`, each with the reason for its value.

Output folder:

- ``tb/``: TensorBoard (SB3's ``rollout/``, ``train/``, ``time/`` and ours under ``charts/``:
  every episode's return and length, steps/s);
- ``checkpoint.json`` + ``checkpoint-<steps>.pt`` every ``--checkpoint-every`` env steps and at
  the end: the policy's and the optimiser's ``state_dict`` (``torch.save``, loaded with
  ``weights_only=True``: no pickled objects) and, in the JSON, the counters, the
  hyperparameters, the observation statistics, the SHA-256 of the ``.pt`` file and every
  finished episode (step, return, length), the run's learning curve. The ``.pt`` is written
  first, then the JSON that names it replaces the previous one (both atomically): a run killed
  at any moment resumes from a consistent pair;
- ``train.lock`` while it runs (:class:`trainers.run_lock.RunLock`).

``--resume`` continues from ``checkpoint.json`` (weights, optimiser, normalisation,
``num_timesteps``, so the learning-rate schedule continues where it was); with no checkpoint
yet it starts afresh, so the same command starts and resumes a long run. Evaluate and ship an
agent with :mod:`trainers.agents.evaluate`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.agent_features import FEATURE_SETS, feature_set_names, layout_for
from moc_envs.errors import CorruptWeightsError, MocEnvsError
from moc_envs.games import game_names, get_game
from moc_envs.perception.distractors import DISTRACTOR_KINDS
from moc_envs.weights.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from moc_envs.weights.manifest import sha256_file
from moc_envs.weights.safe_read import torch_load_error_text
from trainers.agents.normaliser import NORM_DEFAULTS, ObsNormaliser

__all__ = [
    "FRAMESKIP",
    "CHECKPOINT_JSON",
    "CHECKPOINT_FORMAT",
    "PPO_DEFAULTS",
    "NORM_DEFAULTS",
    "Args",
    "AgentTrainError",
    "ObsNormaliser",
    "read_checkpoint",
    "load_checkpoint",
    "policy_from_checkpoint",
    "train",
    "main",
]

FRAMESKIP = 4
"""Emulator frames per env step: ALE v5's frameskip, which MOC/<Game>-v0 keeps."""

CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_FORMAT = "moc_envs.agent_checkpoint/1"

PPO_DEFAULTS: dict[str, Any] = {
    # CleanRL's ppo_atari.py values, except where an object vector differs from 4 stacked
    # 84x84 frames (marked). Pong from pixels reaches ~20 within 10M frames with them.
    "n_steps": 128,  # rollout length per env: 8 envs x 128 = 1024 steps per update
    "n_minibatches": 4,  # minibatch = rollout / 4 (256 with 8 envs)
    # Marked: 8 epochs and lr 7.5e-4 (CleanRL: 4, 2.5e-4). A small MLP on 21 features takes
    # bigger, more frequent steps than a CNN on pixels: on the RAM oracle, 10M frames with these
    # reached +11.0 in 30 deterministic games (all played to 21) against +9.8 with CleanRL's, 29 of
    # them cut at 10,000 steps (runs/agents/pong_ram_lr7.5e-4_ep8 vs pong_ram, benchmarks.agents).
    "n_epochs": 8,  # passes over each rollout
    "learning_rate": 7.5e-4,  # Adam, annealed linearly to 0 over the whole --frames budget
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.1,  # CleanRL's Atari clip (its MuJoCo runs use 0.2)
    "ent_coef": 0.01,  # keeps the 6 Pong actions explored until the ball is tracked
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    # Objects, not pixels: a 21-feature vector needs no CNN. Two hidden layers of 64 with tanh,
    # separate policy and value networks, orthogonal initialisation: the MLP of CleanRL's
    # ppo.py and SB3's MlpPolicy for low-dimensional states.
    "hidden": [64, 64],
    "activation": "tanh",
}
"""PPO hyperparameters of :func:`train` (``--n-steps`` etc. override some of them)."""


class AgentTrainError(MocEnvsError, ValueError):
    """A training run that cannot start or continue as asked."""


@dataclass
class Args:
    """Command-line arguments of an agent training run."""

    game: str = field(metadata={"help": f"game, one of: {', '.join(game_names())}"})
    out: str = field(metadata={"help": "run folder (checkpoints, TensorBoard logs)"})
    detector: str = field(default="space", metadata={"help": "space (learned detector) or ram (RAM oracle)"})
    frames: int = field(default=10_000_000, metadata={"help": f"emulator frames to train on ({FRAMESKIP} per env step)"})
    envs: int = field(default=8, metadata={"help": "parallel envs"})
    workers: int = field(default=2, metadata={"help": "processes the envs are split over (one per core)"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads per process (PPO and the detector)"})
    resume: bool = field(default=False, metadata={"help": "continue from <out>/checkpoint.json (a fresh start when there is none)"})
    seed: int = field(default=0, metadata={"help": "random seed (envs, PPO)"})
    until_frames: int | None = field(default=None, metadata={"help": "stop this session (with a checkpoint) once this many frames are done, None: at --frames; the schedule runs over --frames either way"})
    checkpoint_every: int = field(default=100_000, metadata={"help": "env steps between checkpoints"})
    n_steps: int = field(default=PPO_DEFAULTS["n_steps"], metadata={"help": "rollout length per env"})
    learning_rate: float = field(default=PPO_DEFAULTS["learning_rate"], metadata={"help": "initial Adam learning rate (annealed linearly to 0 over --frames)"})
    n_epochs: int = field(default=PPO_DEFAULTS["n_epochs"], metadata={"help": "passes over each rollout"})
    gamma: float = field(default=PPO_DEFAULTS["gamma"], metadata={"help": "discount factor, in (0, 1]"})
    ent_coef: float = field(default=PPO_DEFAULTS["ent_coef"], metadata={"help": "entropy bonus weight, >= 0"})
    hidden: str = field(default=",".join(map(str, PPO_DEFAULTS["hidden"])), metadata={"help": "hidden layer sizes of the policy and value MLPs, comma-separated"})
    device: str = field(default="auto", metadata={"help": "torch device of the learned detector (PPO's small MLP runs on the CPU)"})
    features: str = field(default="slots", metadata={"help": "what the policy reads: slots (the env's flat observation), relative (the player, then every object as seen from it, each category's nearest first) or relative_screen (the same, each category in screen order): moc_envs.agent_features"})
    distractors: str | None = field(default=None, metadata={"help": "train on Noisy Atari: PermaKey's moving bars (horizontal, vertical or both) on every frame the detector sees, env i's bars seeded from --seed + i; None: clean frames"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar"})


def _parse(argv: Sequence[str] | None) -> Args:
    p = argparse.ArgumentParser(
        prog="moc-envs agent",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        elif f.default is dataclasses.MISSING:
            p.add_argument(flag, required=True, default=argparse.SUPPRESS, help=f.metadata["help"])
        elif f.name == "detector":
            p.add_argument(flag, choices=("space", "ram"), default=f.default, help=f.metadata["help"])
        elif f.name == "features":
            p.add_argument(flag, choices=FEATURE_SETS, default=f.default, help=f.metadata["help"])
        elif f.name == "distractors":
            p.add_argument(flag, choices=DISTRACTOR_KINDS, default=f.default, help=f.metadata["help"])
        else:
            kind = {"int": _int, "int | None": _int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    args = Args(**vars(p.parse_args(argv)))
    try:
        _check_args(args)
    except AgentTrainError as err:
        p.error(str(err))
    return args


def _int(text: str) -> int:
    """An int that may be written with underscores (``10_000_000``)."""
    return int(text.replace("_", ""))


def _check_args(args: Args) -> None:
    if args.detector not in ("space", "ram"):
        raise AgentTrainError(f"--detector must be 'space' or 'ram', got {args.detector!r}")
    if args.features not in FEATURE_SETS:
        raise AgentTrainError(f"--features must be one of {', '.join(FEATURE_SETS)}, got {args.features!r}")
    if args.features != "slots":
        try:
            layout_for(args.features, args.game)
        except ValueError as err:
            raise AgentTrainError(str(err)) from err
    if not args.learning_rate > 0:
        raise AgentTrainError(f"--learning-rate must be > 0, got {args.learning_rate}")
    for name in ("envs", "workers", "threads", "checkpoint_every", "n_steps", "n_epochs"):
        if getattr(args, name) < 1:
            raise AgentTrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers > args.envs:
        raise AgentTrainError(f"--workers ({args.workers}) cannot exceed --envs ({args.envs})")
    if not 0.0 < args.gamma <= 1.0:
        raise AgentTrainError(f"--gamma must be in (0, 1], got {args.gamma}")
    if not args.ent_coef >= 0.0:
        raise AgentTrainError(f"--ent-coef must be >= 0, got {args.ent_coef}")
    _hidden_sizes(args.hidden)
    if args.until_frames is not None and args.until_frames < 0:
        raise AgentTrainError(f"--until-frames must be >= 0, got {args.until_frames}")
    if args.frames < FRAMESKIP:
        raise AgentTrainError(f"--frames must be >= {FRAMESKIP} (one env step), got {args.frames}")
    if (args.n_steps * args.envs) % PPO_DEFAULTS["n_minibatches"]:
        raise AgentTrainError(
            f"--n-steps x --envs ({args.n_steps} x {args.envs}) must split into "
            f"{PPO_DEFAULTS['n_minibatches']} minibatches"
        )


# ---------------------------------------------------------------------------- environment
def make_env(
    game: str, detector: str, envs: int, workers: int, threads: int, seed: int, device: str = "auto",
    distractors: str | None = None, features: str = "slots",
) -> Any:
    """The SB3 vector env an agent trains on: flat objects, VecMonitor, :func:`ObsNormaliser`
    (reading ``features``); ``distractors``: PermaKey's bars on the frames
    (:mod:`moc_envs.perception.distractors`), seeded from ``seed``."""
    from stable_baselines3.common.vec_env import VecMonitor

    from moc_envs.envs.make import make_vec
    from moc_envs.envs.sb3 import SB3VecEnv

    extra: dict[str, Any] = {"device": device} if detector == "space" else {}
    if distractors is not None:
        extra.update(distractors=distractors, distractor_seed=seed)
    venv = make_vec(
        f"MOC/{get_game(game).name}-v0", envs, detector=detector, workers=workers, threads=threads,
        autoreset_mode="SameStep", obs_mode="flat", **extra,
    )  # fmt: skip
    sb3 = SB3VecEnv(venv)
    sb3.seed(seed)
    # Monitor below the normaliser: episode returns are the game's own rewards.
    return ObsNormaliser(VecMonitor(sb3), layout=layout_for(features, game), features=features)


# ---------------------------------------------------------------------------- checkpoints
def read_checkpoint(out: str | Path) -> dict[str, Any] | None:
    """The parsed ``checkpoint.json`` of a run folder; None when the run has none yet."""
    path = Path(out) / CHECKPOINT_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptWeightsError(f"{path} is not valid JSON ({err}); start over with a fresh --out") from err
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CorruptWeightsError(f"{path} has format {got!r}, expected {CHECKPOINT_FORMAT!r}")
    return record


def load_checkpoint(out: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(record, tensors)`` of a run's last checkpoint, the ``.pt`` file checked against its hash.

    ``tensors``: ``{"policy": state_dict, "optimizer": state_dict}`` loaded with
    ``weights_only=True``. Raises CorruptWeightsError when there is no checkpoint or it does not
    match its record.
    """
    import torch

    out = Path(out)
    record = read_checkpoint(out)
    if record is None:
        raise CorruptWeightsError(f"{out} has no {CHECKPOINT_JSON}: not an agent run, or one that never checkpointed")
    name = record.get("policy_file")
    if not isinstance(name, str) or "/" in name or not name.endswith(".pt"):
        raise CorruptWeightsError(f"{out / CHECKPOINT_JSON}: 'policy_file' must name a .pt file in the run, got {name!r}")
    path = out / name
    if not path.is_file():
        raise CorruptWeightsError(f"{path}, named by {out / CHECKPOINT_JSON}, is missing")
    digest = sha256_file(path)
    if digest != record.get("policy_sha256"):
        raise CorruptWeightsError(
            f"{path} does not match {out / CHECKPOINT_JSON}: expected SHA-256 {record.get('policy_sha256')}, "
            f"got {digest}; refusing to load it"
        )
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        # Without torch's advice to retry with weights_only=False, which would run the file's code.
        raise CorruptWeightsError(f"{path} is not a readable checkpoint: {torch_load_error_text(err)}") from err
    if not isinstance(tensors, dict) or not {"policy", "optimizer"} <= set(tensors):
        raise CorruptWeightsError(f"{path} must hold 'policy' and 'optimizer' state dicts")
    return record, tensors


def _policy_layers(state: dict[str, Any], n_hidden: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The actor's layers of an SB3 ``ActorCriticPolicy`` state dict, as NumPy arrays."""
    hidden = []
    # SB3 builds policy_net as Linear, act, Linear, act, ...: Linear i sits at index 2 i.
    for i in range(n_hidden):
        key = f"mlp_extractor.policy_net.{2 * i}"
        hidden.append((state[f"{key}.weight"].numpy(), state[f"{key}.bias"].numpy()))
    return hidden, (state["action_net.weight"].numpy(), state["action_net.bias"].numpy())


def policy_from_checkpoint(out: str | Path) -> Any:
    """The deterministic :class:`moc_envs.agents.Policy` of a run's last checkpoint."""
    from moc_envs.agents import ObsNormalisation, Policy

    record, tensors = load_checkpoint(out)
    hp = record["hyperparameters"]
    hidden, action = _policy_layers(tensors["policy"], len(hp["hidden"]))
    n = hidden[0][0].shape[1] if hidden else action[0].shape[1]
    norm = ObsNormalisation.from_json(record["normalisation"], n, str(Path(out) / CHECKPOINT_JSON))
    info = _agent_info(record)
    try:
        return Policy(hidden, action, norm, hp["activation"], info)
    except ValueError as err:
        raise CorruptWeightsError(f"{Path(out) / CHECKPOINT_JSON}: {err}") from err


def _agent_info(record: dict[str, Any]) -> dict[str, Any]:
    """What an exported agent.json records of its run (see :func:`moc_envs.agents.save_agent`)."""
    frames, target = int(record["frames"]), int(record["target_frames"])
    partial = frames < target
    return {
        "game": record["game"],
        "detector": record["detector"],
        "distractors": record.get("distractors"),
        "env_id": record["env_id"],
        "obs_mode": "flat",
        "features": record.get("features", "slots"),
        "feature_names": record["feature_names"],
        "frames": frames,
        "env_steps": int(record["num_timesteps"]),
        "target_frames": target,
        "partial": partial,
        "status": (f"partial, {frames:,} frames of the {target:,} planned" if partial
                   else f"complete, {frames:,} frames"),
        "algorithm": "PPO (stable-baselines3), MlpPolicy, deterministic (argmax) at play time",
        "hyperparameters": record["hyperparameters"],
        "seed": record["seed"],
    }


def _save_checkpoint(out: Path, model: Any, env: Any, record: dict[str, Any]) -> None:
    import torch

    steps = int(model.num_timesteps)
    name = f"checkpoint-{steps:012d}.pt"
    with atomic_path(out / name) as tmp:
        torch.save({"policy": model.policy.state_dict(), "optimizer": model.policy.optimizer.state_dict()}, tmp)
    record.update(
        num_timesteps=steps,
        frames=steps * FRAMESKIP,
        n_updates=int(model._n_updates),
        policy_file=name,
        policy_sha256=sha256_file(out / name),
        normalisation={**env.normalisation.to_json(), "count": float(env.rms.count)},
        saved=time.strftime("%Y-%m-%d %H:%M:%S %z"),
    )
    # The JSON names the .pt: replacing it is the moment the new checkpoint takes effect.
    atomic_write_text(out / CHECKPOINT_JSON, json.dumps(record) + "\n")
    for old in out.glob("checkpoint-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- training
def _TensorBoardFormat(writer: Any) -> Any:  # noqa: N802 - a class to its users
    """SB3's TensorBoard output format around a SummaryWriter we opened (with its purge_step)."""
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    class _Format(TensorBoardOutputFormat):
        def __init__(self) -> None:  # SB3's would open a second writer in the same folder
            self.writer = writer
            self._is_closed = False

    return _Format()


def _linear_schedule(initial: float) -> Callable[[float], float]:
    """SB3 schedule: ``progress_remaining`` (1 -> 0 over the whole budget) times ``initial``."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def _hidden_sizes(text: str) -> list[int]:
    """``--hidden`` as layer sizes: ``"64,64"`` -> ``[64, 64]``; AgentTrainError if not positive ints."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise AgentTrainError(f"--hidden must be comma-separated positive layer sizes such as 64,64, got {text!r}")
    return sizes


def _hyperparameters(args: Args) -> dict[str, Any]:
    return {**PPO_DEFAULTS, "n_steps": args.n_steps, "learning_rate": args.learning_rate,
            "n_epochs": args.n_epochs, "gamma": args.gamma, "ent_coef": args.ent_coef,
            "hidden": _hidden_sizes(args.hidden), "n_envs": args.envs}


def _new_record(args: Args, hp: dict[str, Any]) -> dict[str, Any]:
    from moc_envs.perception.observation import feature_names

    spec = get_game(args.game)
    return {
        "format": CHECKPOINT_FORMAT,
        "game": spec.name,
        "detector": args.detector,
        "distractors": args.distractors,
        "env_id": f"MOC/{spec.name}-v0",
        "features": args.features,
        "feature_names": feature_set_names(feature_names(spec), args.features, layout_for(args.features, spec)),
        "target_frames": args.frames,
        "seed": args.seed,
        "hyperparameters": hp,
        "norm_settings": NORM_DEFAULTS,
        "num_timesteps": 0,
        "frames": 0,
        "wall_seconds": 0.0,
        "episodes": [],  # [env step at the end, return, length in env steps]
        "speed": [],  # [env step, env steps/s since the previous checkpoint]
        "sessions": [],
    }


def _check_resume(record: dict[str, Any], args: Args, hp: dict[str, Any], out: Path) -> None:
    spec = get_game(args.game)
    for key, want in (("game", spec.name), ("detector", args.detector), ("distractors", args.distractors),
                      ("features", args.features)):
        # Runs from before --features read the slots.
        if record.get(key, "slots" if key == "features" else None) != want:
            raise AgentTrainError(
                f"{out} holds a run of {key} {record.get(key)!r}, not {want!r}: resume with the "
                f"same --{key}, or choose another --out"
            )
    saved = record.get("hyperparameters", {})
    if saved != hp:
        diff = {k: (saved.get(k), hp.get(k)) for k in set(saved) | set(hp) if saved.get(k) != hp.get(k)}
        raise AgentTrainError(
            f"{out} was trained with other PPO settings (saved vs asked: {diff}); resume with the "
            "same --envs / --n-steps / --learning-rate / --n-epochs / --gamma / --ent-coef / --hidden, or "
            "choose another --out"
        )


def train(args: Args) -> dict[str, Any]:
    """Train (or resume) one agent as :class:`Args` says; returns the final checkpoint record."""
    from trainers.run_lock import RunLock

    _check_args(args)
    out = Path(args.out)
    with RunLock(out):
        remove_stale_temporaries(out)
        return _train_locked(args, out)


def _train_locked(args: Args, out: Path) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from moc_envs.threads import set_torch_threads

    set_torch_threads(args.threads)
    hp = _hyperparameters(args)
    record = read_checkpoint(out)
    if record is not None and not args.resume:
        raise AgentTrainError(
            f"{out} already holds a checkpoint at {record.get('num_timesteps', 0):,} env steps: pass "
            "--resume to continue it, or choose another --out"
        )
    tensors = None
    if record is not None:
        _check_resume(record, args, hp, out)
        record, tensors = load_checkpoint(out)
        if record["target_frames"] != args.frames:
            print(
                f"[agent] --frames {args.frames:,} differs from the run's {record['target_frames']:,}: "
                "the learning-rate schedule is stretched to the new budget from here on",
                file=sys.stderr,
            )
            record["target_frames"] = args.frames
    else:
        if args.resume:
            print(f"[agent] no checkpoint in {out} yet: starting afresh", file=sys.stderr)
        record = _new_record(args, hp)
    start = int(record["num_timesteps"])
    total = args.frames // FRAMESKIP
    until = total if args.until_frames is None else min(total, args.until_frames // FRAMESKIP)
    # A resumed run sees other env seeds than the first session (same seed, other episodes).
    seed = args.seed + start
    record["sessions"].append({"start_step": start, "seed": seed, "argv": sys.argv[1:],
                               "started": time.strftime("%Y-%m-%d %H:%M:%S %z")})

    env = make_env(args.game, args.detector, args.envs, args.workers, args.threads, seed, args.device, args.distractors,
                   args.features)
    try:
        if tensors is not None:
            norm = record["normalisation"]
            env.rms.mean = np.asarray(norm["mean"], np.float64)
            env.rms.var = np.asarray(norm["var"], np.float64)
            env.rms.count = float(norm["count"])
        rollout = hp["n_steps"] * hp["n_envs"]
        model = PPO(
            "MlpPolicy", env, device="cpu", seed=seed, verbose=0,
            n_steps=hp["n_steps"], batch_size=rollout // hp["n_minibatches"], n_epochs=hp["n_epochs"],
            learning_rate=_linear_schedule(hp["learning_rate"]), gamma=hp["gamma"],
            gae_lambda=hp["gae_lambda"], clip_range=hp["clip_range"], ent_coef=hp["ent_coef"],
            vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"], normalize_advantage=True,
            policy_kwargs={
                "net_arch": {"pi": list(hp["hidden"]), "vf": list(hp["hidden"])},
                "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[hp["activation"]],
                "ortho_init": True,
            },
        )  # fmt: skip
        if tensors is not None:
            model.policy.load_state_dict(tensors["policy"])
            model.policy.optimizer.load_state_dict(tensors["optimizer"])
            model.num_timesteps = start
            model._n_updates = int(record["n_updates"])
        # Our own writer under SB3's logger: purge_step drops what a killed session logged after
        # its last checkpoint, so the curves stay one line each when the run resumes from there.
        writer = SummaryWriter(str(out / "tb"), purge_step=start if start else None)
        logger = Logger(str(out / "tb"), [_TensorBoardFormat(writer)])
        model.set_logger(logger)

        bar = tqdm(total=total, initial=min(start, total), desc=f"{record['game']} {args.detector} agent",
                   unit="step", disable=not args.progress, mininterval=30, dynamic_ncols=True)
        clock = {"t": time.perf_counter(), "step": start, "wall": float(record["wall_seconds"])}
        next_due = [start + args.checkpoint_every]
        stopped = [False]

        def checkpoint() -> None:
            now = time.perf_counter()
            steps = int(model.num_timesteps)
            clock_start = clock["step"]
            elapsed = now - clock["t"]
            sps = (steps - clock["step"]) / elapsed if elapsed > 0 else float("nan")
            record["wall_seconds"] = clock["wall"] + elapsed
            clock["wall"], clock["t"], clock["step"] = record["wall_seconds"], now, steps
            if math.isfinite(sps) and steps > clock_start:
                record["speed"].append([steps, round(sps, 1)])
            _save_checkpoint(out, model, env, record)
            recent = [e[1] for e in record["episodes"][-20:]]
            mean = f"{np.mean(recent):+.1f}" if recent else "n/a"
            tqdm.write(
                f"[agent] {record['game']} {args.detector}: {steps:,} env steps ({steps * FRAMESKIP:,} "
                f"frames) of {total:,}, {sps:.0f} steps/s, {len(record['episodes'])} episodes, "
                f"mean return of the last 20: {mean}; checkpoint {out / CHECKPOINT_JSON}",
                file=sys.stderr,
            )
            if math.isfinite(sps):
                writer.add_scalar("charts/steps_per_s", sps, steps)
            while next_due[0] <= steps:
                next_due[0] += args.checkpoint_every

        class Progress(BaseCallback):
            """Episodes into the record and TensorBoard; checkpoints between rollouts."""

            def _on_step(self) -> bool:
                if stopped[0]:
                    return False  # --until-frames: leave learn() before this rollout counts
                steps = int(self.num_timesteps)
                for info in self.locals["infos"]:
                    if "episode" in info:
                        ep = info["episode"]
                        record["episodes"].append([steps, float(ep["r"]), int(ep["l"])])
                        writer.add_scalar("charts/episode_return", float(ep["r"]), steps)
                        writer.add_scalar("charts/episode_length", int(ep["l"]), steps)
                bar.update(min(steps, total) - bar.n)
                return True

            def _on_rollout_start(self) -> None:
                # Between rollouts the weights include every update so far: a consistent
                # point to save (a save mid-rollout would count steps not yet learned from).
                if self.num_timesteps >= until and until < total:
                    checkpoint()
                    stopped[0] = True
                elif self.num_timesteps >= next_due[0]:
                    checkpoint()

        if start < until:
            # The schedule runs over the whole budget (total), whatever this session's stop.
            model.learn(total_timesteps=total - start, callback=Progress(), reset_num_timesteps=False)
        if not stopped[0]:
            checkpoint()
        bar.close()
        logger.close()
    finally:
        env.close()
    return record


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    args = _parse(argv)
    try:
        return train(args)
    except MocEnvsError as err:
        print(f"moc-envs agent: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
