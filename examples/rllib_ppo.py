"""PPO on MOC object observations with Ray RLlib: several env runners, each with its own detector.

    pip install -e ".[rllib]"
    python -m examples.rllib_ppo --game Pong --env-runners 2 --envs-per-runner 4 --iterations 50

``MOC/<Game>-v0`` is registered with RLlib under the same name (:func:`register`). Every env
runner is a Ray actor (a process, on any node of the cluster) that builds its own
``moc_envs.make_vec`` vector env of ``--envs-per-runner`` games with ``obs_mode="flat"`` (the
1-D Box of every slot's features), so each runner holds one detector and detects its games'
frames in one batched call; the learner trains one MLP policy on what all runners sampled.
``--detector space`` (default) is the learned detector, ``ram`` the RAM oracle (no torch in
the env). On a GPU machine ``--gpus-per-runner 0.25`` gives each runner a quarter of a GPU
(Ray sets its ``CUDA_VISIBLE_DEVICES``; the detector's ``device="auto"`` then picks it) and
``--learner-gpus 1`` puts the learner on one. ``--address auto`` joins a running Ray cluster
(``ray start --head`` / ``ray start --address=...``) instead of starting a local Ray; every
node needs the package installed (``pip install "moc-envs[rllib]"``), this module is shipped
to the runners by value.

Written to ``--out``: ``tb/`` (TensorBoard: ``charts/episode_return_mean``,
``charts/env_steps_per_sec``, ``loss/...`` against sampled env steps) and ``checkpoint.safetensors``
after every ``--checkpoint-every`` iterations (atomically): the policy's weights and the
optimiser's state as arrays, the rest as JSON in the file's metadata, so loading it runs no
code (RLlib's own checkpoints are pickles). ``--resume`` continues from it. ``train.lock`` is
held while it runs, so a second run into the same ``--out`` refuses (as the trainers do).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Args",
    "CHECKPOINT",
    "RESUME_KEYS",
    "make_env",
    "register",
    "build_config",
    "start_ray",
    "save_state",
    "load_state",
    "fit",
    "train",
    "main",
]

CHECKPOINT = "checkpoint.safetensors"
RESUME_KEYS = ("game", "detector", "hidden")
"""Arguments a resumed run must share with its checkpoint (they shape the policy)."""


@dataclass
class Args:
    """Command-line arguments of an RLlib PPO run."""

    game: str = field(default="Pong", metadata={"help": "game name (MOC/<game>-v0)"})
    detector: str = field(
        default="space", metadata={"help": "space: the learned detector; ram: the RAM oracle"}
    )
    out: str = field(
        default="runs/rllib_ppo", metadata={"help": "run folder (TensorBoard, checkpoint)"}
    )
    iterations: int = field(
        default=20, metadata={"help": "PPO training iterations (algo.train() calls)"}
    )
    env_runners: int = field(
        default=2, metadata={"help": "env runner actors (processes), each with its own detector"}
    )
    envs_per_runner: int = field(
        default=4, metadata={"help": "games per runner, detected in one batched call"}
    )
    gpus_per_runner: float = field(
        default=0.0,
        metadata={"help": "GPU share of each runner (e.g. 0.25); its detector runs there"},
    )
    learner_gpus: float = field(
        default=0.0,
        metadata={
            "help": "GPU of the learner, which runs in this process (0: the CPU; RLlib trains on one GPU for any value > 0)"
        },
    )
    device: str = field(
        default="auto", metadata={"help": "the detector's device in each runner: auto | cpu | cuda"}
    )
    threads: int = field(
        default=1,
        metadata={"help": "torch CPU threads of the learner and of each runner's detector"},
    )
    train_batch: int = field(
        default=4000, metadata={"help": "env steps per iteration (train_batch_size_per_learner)"}
    )
    minibatch: int = field(default=500, metadata={"help": "SGD minibatch size"})
    epochs: int = field(default=4, metadata={"help": "passes over each train batch"})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    hidden: str = field(
        default="64,64", metadata={"help": "MLP hidden layer sizes, comma-separated"}
    )
    seed: int = field(
        default=0, metadata={"help": "random seed (RLlib seeds every runner's envs from it)"}
    )
    address: str = field(
        default="",
        metadata={
            "help": "Ray cluster to join ('auto', 'ray://host:10001'); empty: start a local Ray"
        },
    )
    num_cpus: int = field(
        default=0,
        metadata={
            "help": "logical CPUs of a local Ray (0: the machine's, at least one per runner)"
        },
    )
    checkpoint_every: int = field(
        default=1, metadata={"help": "write the checkpoint every this many iterations"}
    )
    resume: bool = field(
        default=False, metadata={"help": "continue from <out>/checkpoint.safetensors"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def hidden_sizes(self) -> list[int]:
        """``hidden`` as a list of positive ints; ValueError when malformed."""
        try:
            sizes = [int(p) for p in self.hidden.split(",")]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise ValueError(
                f"--hidden must be positive ints separated by commas, got {self.hidden!r}"
            )
        return sizes


def _parse(argv: Sequence[str] | None) -> Args:
    p = argparse.ArgumentParser(
        prog="python -m examples.rllib_ppo",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    kinds = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata["help"]
        if f.type == "bool":
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_
            )
        else:
            p.add_argument(flag, type=kinds[str(f.type)], default=f.default, help=help_)
    args = Args(**vars(p.parse_args(argv)))
    checks = [
        (
            args.detector in ("space", "ram"),
            f"--detector must be space or ram, got {args.detector!r}",
        ),
        (args.iterations >= 1, f"--iterations must be >= 1, got {args.iterations}"),
        (args.env_runners >= 1, f"--env-runners must be >= 1, got {args.env_runners}"),
        (args.envs_per_runner >= 1, f"--envs-per-runner must be >= 1, got {args.envs_per_runner}"),
        (args.gpus_per_runner >= 0, f"--gpus-per-runner must be >= 0, got {args.gpus_per_runner}"),
        (args.learner_gpus >= 0, f"--learner-gpus must be >= 0, got {args.learner_gpus}"),
        (args.threads >= 1, f"--threads must be >= 1, got {args.threads}"),
        (args.minibatch >= 1, f"--minibatch must be >= 1, got {args.minibatch}"),
        (
            args.train_batch >= args.minibatch,
            f"--train-batch ({args.train_batch}) must be >= --minibatch ({args.minibatch})",
        ),
        (
            args.checkpoint_every >= 1,
            f"--checkpoint-every must be >= 1, got {args.checkpoint_every}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            p.error(message)
    try:
        args.hidden_sizes()
        from moc_envs.games import get_game

        get_game(args.game)
    except (ValueError, KeyError) as err:
        p.error(str(err))
    return args


# ---------------------------------------------------------------------------- the env
def make_env(config: dict[str, Any]) -> Any:
    """RLlib's env creator: one MOC env, or a MOC vector env when RLlib asks for ``num_envs``.

    ``config`` is RLlib's ``env_config`` (an EnvContext): ``game`` and the MOC keywords
    (``detector``, ``device``, ``threads``, ...). It runs inside each env runner, so every
    runner builds its own detector. The observation is always ``obs_mode="flat"``.
    """
    import gymnasium as gym

    import moc_envs

    kwargs = {k: v for k, v in dict(config).items() if k not in ("game", "num_envs")}
    env_id = f"MOC/{config['game']}-v0"
    if "num_envs" in config:  # gym_env_vectorize_mode="vector_entry_point": one batched detector
        return moc_envs.make_vec(env_id, int(config["num_envs"]), obs_mode="flat", **kwargs)
    return gym.make(env_id, obs_mode="flat", **kwargs)


def register(game: str) -> str:
    """Register ``MOC/<game>-v0`` with RLlib (:func:`make_env`); returns the name."""
    from ray.tune.registry import register_env

    name = f"MOC/{game}-v0"
    register_env(name, make_env)
    return name


def build_config(args: Args) -> Any:
    """The PPOConfig of a run (RLlib's new API stack)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    env_config = {"game": args.game, "detector": args.detector}
    if args.detector == "space":  # the RAM oracle runs no torch and takes neither
        env_config |= {"device": args.device, "threads": args.threads}
    steps_per_sample = args.env_runners * args.envs_per_runner
    return (
        PPOConfig()
        .environment(register(args.game), env_config=env_config)
        .env_runners(
            num_env_runners=args.env_runners,
            num_envs_per_env_runner=args.envs_per_runner,
            gym_env_vectorize_mode="vector_entry_point",  # MocVectorEnv: one detect per step
            num_cpus_per_env_runner=1,
            num_gpus_per_env_runner=args.gpus_per_runner,
            rollout_fragment_length=max(1, args.train_batch // steps_per_sample),
        )
        .learners(num_learners=0, num_gpus_per_learner=args.learner_gpus)
        .training(
            train_batch_size_per_learner=args.train_batch,
            minibatch_size=args.minibatch,
            num_epochs=args.epochs,
            lr=args.lr,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=args.hidden_sizes()))
        .debugging(seed=args.seed)
    )


# ---------------------------------------------------------------------------- checkpoints
def _split(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON skeleton of ``obj`` with every array moved into ``arrays`` (named by position).

    Containers are tagged (``d``: dict with its keys' types kept, ``l``: list, ``t``: tuple,
    ``a``: an array's name) so that optimiser states (int keys, tuple betas) come back as they
    were.
    """
    if hasattr(obj, "detach"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        name = str(len(arrays))
        arrays[name] = np.ascontiguousarray(obj)
        return {"a": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {"d": [[k, _split(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return {"t" if isinstance(obj, tuple) else "l": [_split(v, arrays) for v in obj]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _join(skeleton: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`_split`."""
    if not isinstance(skeleton, dict):
        return skeleton
    (tag, value), *_ = skeleton.items()
    if tag == "a":
        return arrays[value]
    if tag == "d":
        return {k: _join(v, arrays) for k, v in value}
    items = [_join(v, arrays) for v in value]
    return tuple(items) if tag == "t" else items


def save_state(algo: Any, path: Path, progress: dict[str, Any]) -> None:
    """Write the learner's policy weights and optimiser state plus ``progress`` to ``path``.

    One safetensors file, written atomically: arrays as tensors, everything else as JSON in
    its metadata.
    """
    from safetensors.numpy import save_file

    from moc_envs.weights.atomic import atomic_path

    state = algo.learner_group.get_state(components=["learner/rl_module", "learner/optimizer"])
    arrays: dict[str, np.ndarray] = {}
    skeleton = _split(state, arrays)
    metadata = {"state": json.dumps(skeleton), "progress": json.dumps(progress)}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)


def load_state(algo: Any, path: Path, args: Args) -> dict[str, Any]:
    """Load a :func:`save_state` checkpoint into ``algo`` (learner and every runner); returns
    its progress. Raises ValueError when it was written for another game, detector or policy."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ValueError(f"no checkpoint to resume from: {path} does not exist")
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
    if not {"state", "progress"} <= set(metadata):
        raise ValueError(
            f"{path} is not a checkpoint of examples.rllib_ppo (its metadata lacks state/progress)"
        )
    progress = json.loads(metadata["progress"])
    diff = [k for k in RESUME_KEYS if progress.get("args", {}).get(k) != getattr(args, k)]
    if diff:
        detail = "; ".join(
            f"--{k}: checkpoint {progress['args'].get(k)!r} vs now {getattr(args, k)!r}"
            for k in diff
        )
        raise ValueError(f"{path} was written for another run ({detail})")
    state = _join(json.loads(metadata["state"]), load_file(str(path)))
    # The learner and the runners skip weights whose sequence number is not above their own:
    # number the loaded ones next, so that they replace what an algorithm that has already
    # trained holds, and reach every runner.
    skip = ["learner/rl_module", "learner/optimizer", "learner/metrics_logger"]
    current = algo.learner_group.get_state(not_components=skip)["learner"].get("weights_seq_no", 0)
    state["learner"]["weights_seq_no"] = int(current) + 1
    algo.learner_group.set_state(state)
    # timeout_seconds=None waits until every runner holds the weights (RLlib's default, 0.0,
    # returns at once, so a busy machine could still sample with the old ones).
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True, timeout_seconds=None
    )
    return progress


# ---------------------------------------------------------------------------- training
def start_ray(args: Args) -> None:
    """``ray.init``: join ``args.address``, or start a local Ray with ``args.num_cpus`` CPUs."""
    import ray

    # The runners unpickle make_env: ship this module by value, so that a cluster's nodes need
    # the package but not this checkout (run as a script, it is __main__, shipped by value anyway).
    if __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        cpus = args.num_cpus or max(os.cpu_count() or 1, args.env_runners)
        ray.init(num_cpus=max(cpus, args.env_runners), include_dashboard=False, log_to_driver=False)


def _scalars(result: dict[str, Any]) -> dict[str, float]:
    """The figures of one ``algo.train()`` result that TensorBoard and the summary show."""
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        EPISODE_LEN_MEAN,
        EPISODE_RETURN_MEAN,
        LEARNER_RESULTS,
        NUM_ENV_STEPS_SAMPLED,
    )

    runners = result.get(ENV_RUNNER_RESULTS, {})
    out = {"env_steps": float(runners.get(NUM_ENV_STEPS_SAMPLED, 0))}
    for key, name in (
        (EPISODE_RETURN_MEAN, "episode_return_mean"),
        (EPISODE_LEN_MEAN, "episode_len_mean"),
    ):
        value = runners.get(key)
        if value is not None and np.isfinite(value):
            out[name] = float(value)
    policy = result.get(LEARNER_RESULTS, {}).get("default_policy", {})
    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss"):
        if key in policy:
            out[f"loss/{key}"] = float(policy[key])
    return out


def fit(algo: Any, args: Args) -> dict[str, Any]:
    """Train ``algo`` (built from ``build_config(args)``) to ``args.iterations``, resuming from
    ``<out>/checkpoint.safetensors`` with ``args.resume``; TensorBoard and checkpoints in
    ``args.out``. Returns a summary (iterations, env steps, last mean return, minutes)."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    out = Path(args.out)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not args.resume:
        raise ValueError(f"{ckpt} exists; pass --resume to continue it or choose another --out")
    progress: dict[str, Any] = {"iteration": 0, "env_steps": 0}
    if args.resume:
        progress = load_state(algo, ckpt, args)
    progress["args"] = dataclasses.asdict(args)
    out.mkdir(parents=True, exist_ok=True)
    # On resume, events logged after the checkpoint by a killed run are hidden (purge_step).
    writer = SummaryWriter(
        str(out / "tb"), purge_step=progress["env_steps"] if args.resume else None
    )
    last: dict[str, float] = {}
    t_start = time.time()
    bar = tqdm(
        total=args.iterations,
        initial=progress["iteration"],
        disable=not args.progress,
        desc=f"PPO {args.game}",
    )
    try:
        while progress["iteration"] < args.iterations:
            t0 = time.time()
            last = _scalars(algo.train())
            progress["iteration"] += 1
            progress["env_steps"] += int(last["env_steps"])
            step = progress["env_steps"]
            writer.add_scalar(
                "charts/env_steps_per_sec", last["env_steps"] / max(time.time() - t0, 1e-9), step
            )
            for name, value in last.items():
                if name != "env_steps":
                    writer.add_scalar(name if "/" in name else f"charts/{name}", value, step)
            if (
                progress["iteration"] % args.checkpoint_every == 0
                or progress["iteration"] == args.iterations
            ):
                save_state(algo, ckpt, progress)
            bar.update(1)
            bar.set_postfix(steps=step, ret=f"{last.get('episode_return_mean', float('nan')):.2f}")
    finally:
        bar.close()
        writer.close()
    return {
        "iterations": progress["iteration"],
        "env_steps": progress["env_steps"],
        "episode_return_mean": last.get("episode_return_mean"),
        "minutes": (time.time() - t_start) / 60,
    }


def train(args: Args) -> dict[str, Any]:
    """Start Ray (or join ``args.address``), build the PPO algorithm, :func:`fit` it, stop.

    Holds ``<out>/train.lock`` (:class:`trainers.run_lock.RunLock`) throughout, so a second
    run into the same ``--out`` refuses at once instead of interleaving checkpoints.
    """
    import ray

    from moc_envs.threads import set_torch_threads
    from trainers.run_lock import RunLock

    with RunLock(args.out):  # before Ray's start-up: a refusal costs nothing
        if (Path(args.out) / CHECKPOINT).exists() and not args.resume:
            raise ValueError(
                f"{Path(args.out) / CHECKPOINT} exists; pass --resume to continue it or choose "
                "another --out"
            )
        set_torch_threads(args.threads)
        start_ray(args)
        try:
            algo = build_config(args).build_algo()
            try:
                return fit(algo, args)
            finally:
                algo.stop()
        finally:
            ray.shutdown()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point."""
    summary = train(_parse(argv))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    from moc_envs.errors import MocEnvsError

    try:
        main()
    except (ValueError, MocEnvsError) as err:  # a bad argument, or --out locked by another run
        sys.exit(f"error: {err}")
