"""Registers ``MOC/<Game>-v0`` and ``MOC/<Game>-flat-v0`` for every game in the registry.

Gymnasium 1.x loads no plugins, so ``import moc_envs`` (or the
``"moc_envs:MOC/Pong-v0"`` id form, which imports the module) runs
:func:`register_envs`. Each id builds the game's ALE v5 env and wraps it in
:class:`~moc_envs.envs.wrapper.ObjectCentricWrapper` through :func:`make_env`. The ``-flat`` ids
(named after ALE's ``ALE/Pong-ram-v5``) differ only in their default ``obs_mode="flat"``: a
1-D observation for clients that call ``gym.make(env_id)`` without keywords and size a network
by ``prod(observation_space.shape)`` (CleanRL's ``ppo.py``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import gymnasium as gym

from moc_envs.device import DEFAULT_RUNTIME, Runtime, check_runtime, resolve_device
from moc_envs.envs.arguments import (
    ale_flag_keywords,
    ale_keywords,
    check_distractors,
    check_flag,
    check_keywords,
    check_max_episode_steps,
    check_ram_device,
    check_tracking,
)
from moc_envs.games import GAMES, GameSpec, get_game
from moc_envs.perception.detection import Detector
from moc_envs.perception.detectors import DetectorName
from moc_envs.perception.distractors import DistractorKind
from moc_envs.perception.observation import check_obs_mode
from moc_envs.threads import check_threads
from moc_envs.weights.search import require_weights

__all__ = [
    "NAMESPACE",
    "FLAT",
    "DEFAULT_KWARGS",
    "env_id",
    "game_of_id",
    "is_flat_id",
    "make_ale_env",
    "check_env_arguments",
    "make_env",
    "make_env_keywords",
    "register_envs",
]

NAMESPACE = "MOC"
VERSION = 0
FLAT = "-flat"
"""Suffix of the game name in the flat-observation ids, ``MOC/Pong-flat-v0``."""

DEFAULT_KWARGS: dict[str, Any] = {
    # The learned detector is what the package is for; "ram" is the oracle.
    "detector": "space",
    # CUDA when torch sees a GPU, else CPU (moc_envs.device.resolve_device).
    "device": "auto",
    # Objects only: the frame is opt-in because it dwarfs the object array.
    "obs_mode": "objects",
    # RAM ground truth costs a dict per step; opt-in.
    "ram_labels": False,
    # weights=None (the search path of moc_envs.weights.search), allow_unclassified=False, the
    # tracker's max_distance / max_age and distractors=None (clean frames) / distractor_seed=None
    # keep make_env's own defaults and are not listed here.
    # ALE arguments (frameskip=4, repeat_action_probability=0.25,
    # full_action_space=False, max_num_frames_per_episode=108000) are left to
    # the ALE v5 registration and pass through unchanged when given.
}


def env_id(game: str, flat: bool = False) -> str:
    """The registered id of a game, e.g. ``"MOC/Pong-v0"`` (``flat``: ``"MOC/Pong-flat-v0"``)."""
    return f"{NAMESPACE}/{get_game(game).name}{FLAT if flat else ''}-v{VERSION}"


def _split_id(env_id_: str) -> tuple[str, bool]:
    name = env_id_.split(":")[-1]
    if name.startswith(f"{NAMESPACE}/"):
        name = name[len(NAMESPACE) + 1 :]
    suffix = f"-v{VERSION}"
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    flat = name.lower().endswith(FLAT)
    return (name[: -len(FLAT)] if flat else name), flat


def game_of_id(env_id_: str) -> GameSpec:
    """The game of a ``MOC/<Game>-v0`` or ``MOC/<Game>-flat-v0`` id
    (``"moc_envs:MOC/Pong-v0"`` and bare names work too)."""
    return get_game(_split_id(env_id_)[0])


def is_flat_id(env_id_: str) -> bool:
    """Whether an id names the flat-observation variant (``MOC/Pong-flat-v0``)."""
    return _split_id(env_id_)[1]


def make_ale_env(
    spec: GameSpec,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    **ale_kwargs: Any,
) -> gym.Env:
    """The game's plain ALE v5 env, as every MOC env (single or vector) and the dataset builder run it.

    For a ``flicker`` game: ALE stepped one emulator frame at a time under
    :class:`~moc_envs.perception.frames.MaxOfLastTwoFrames` (``frameskip`` frames per step, frame = the
    maximum of the last two); read frames through :func:`moc_envs.perception.frames.frame_source`.
    ``max_episode_steps`` (the vector envs' counterpart of ``gym.make``'s keyword) truncates an
    episode after that many steps, as Gymnasium's ``TimeLimit`` does.
    """
    import ale_py

    gym.register_envs(ale_py)
    check_max_episode_steps(max_episode_steps)
    render = "rgb_array" if render_mode is not None else None
    env: gym.Env
    if not spec.flicker:
        env = gym.make(spec.ale_id, render_mode=render, disable_env_checker=True, **ale_kwargs)
    else:
        from moc_envs.perception.frames import MaxOfLastTwoFrames

        kwargs = dict(ale_kwargs)
        frameskip = kwargs.pop("frameskip", 4)  # ALE v5's default
        env = gym.make(
            spec.ale_id, render_mode=render, disable_env_checker=True, frameskip=1, **kwargs
        )
        env = MaxOfLastTwoFrames(env, frameskip)
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, int(max_episode_steps))
    return env


def make_env_keywords() -> frozenset[str]:
    """Every keyword ``gym.make("MOC/<Game>-v0", ...)`` accepts: make_env's own plus ALE's."""
    own = {
        name
        for name, p in inspect.signature(make_env).parameters.items()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    return frozenset(own | ale_keywords())


def check_env_arguments(
    spec: GameSpec,
    detector: object,
    device: str,
    obs_mode: str,
    ram_labels: object,
    allow_unclassified: object,
    threads: object,
    weights: str | os.PathLike[str] | None,
    ale_kwargs: dict[str, Any],
    distractors: object = None,
    distractor_seed: object = None,
    runtime: object = DEFAULT_RUNTIME,
) -> None:
    """The checks every MOC env (single or vector) runs before it starts an emulator.

    Raises with expected vs got for a bad obs_mode, flag, thread count, distractor kind or seed
    or RAM-oracle device, and
    MissingWeightsError / DeviceUnavailableError for the learned detector's weights and device.
    A ``max_episode_steps`` among ``ale_kwargs`` (the vector envs take it there) is checked too.
    """
    check_obs_mode(obs_mode)
    check_flag("ram_labels", ram_labels)
    check_flag("allow_unclassified", allow_unclassified)
    for name in ale_flag_keywords() & set(ale_kwargs):
        check_flag(name, ale_kwargs[name])
    check_max_episode_steps(ale_kwargs.get("max_episode_steps"))
    check_distractors(distractors, distractor_seed)
    check_ram_device(detector, device)
    check_threads(threads)
    check_runtime(runtime)
    if isinstance(detector, str) and detector == "space":
        # Fail on missing weights or a missing GPU before starting the emulator(s).
        require_weights(spec.name, weights)
        resolve_device(device)


def make_env(
    game: str,
    detector: DetectorName | Detector = "space",
    device: str = "auto",
    obs_mode: str = "objects",
    ram_labels: bool = False,
    render_mode: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    allow_unclassified: bool = False,
    max_distance: float = 40.0,
    max_age: int = 30,
    coast: int = 0,
    threads: int | None = None,
    distractors: DistractorKind | None = None,
    distractor_seed: int | None = None,
    runtime: Runtime = DEFAULT_RUNTIME,
    **ale_kwargs: Any,
) -> gym.Env:
    """Entry point of the ``MOC/<Game>-v0`` ids: the ALE v5 env inside ObjectCentricWrapper.

    ``weights`` (a game folder or a root holding ``<Game>/``) and ``allow_unclassified``
    go to the learned detector (:func:`moc_envs.perception.detectors.make_detector`);
    ``max_distance``, ``max_age`` and ``coast`` (steps a missed object stays in the observation
    at its predicted box) to the slot tracker; ``threads`` (torch CPU threads,
    None: one) to the learned detector. ``distractors`` (``"horizontal"``, ``"vertical"``,
    ``"both"``; None: off) draws PermaKey's moving bars on the frames the detector and
    ``render()`` see, ``distractor_seed`` seeding them (:mod:`moc_envs.perception.distractors`).
    ``runtime`` (``"onnxruntime"``, the default, ``"torchscript"``, ``"eager"``)
    runs the learned detector's image encoder on the CPU (:mod:`moc_envs.model.runtime`).
    ``ale_kwargs`` (``frameskip``,
    ``repeat_action_probability``, ``mode``, ``difficulty``, ``full_action_space``, ...)
    go to ``gym.make("ALE/<Game>-v5")``; any other keyword is refused with the nearest
    valid one. Arguments are checked before the emulator starts. ``render_mode="human"``
    opens its window at the first reset (see :class:`~moc_envs.envs.wrapper.ObjectCentricWrapper`).
    """
    from moc_envs.envs.wrapper import ObjectCentricWrapper

    spec = get_game(game)
    check_keywords(env_id(spec.name), ale_kwargs, make_env_keywords())
    check_env_arguments(
        spec, detector, device, obs_mode, ram_labels, allow_unclassified, threads, weights, ale_kwargs,
        distractors, distractor_seed, runtime,
    )  # fmt: skip
    check_tracking(max_distance, max_age, coast)
    inner = make_ale_env(spec, render_mode, **ale_kwargs)
    try:
        return ObjectCentricWrapper(
            inner,
            detector,
            game=spec,
            obs_mode=obs_mode,
            ram_labels=ram_labels,
            device=device,
            render_mode=render_mode,
            max_distance=max_distance,
            max_age=max_age,
            coast=coast,
            weights=weights,
            allow_unclassified=allow_unclassified,
            threads=threads,
            distractors=distractors,
            distractor_seed=distractor_seed,
            runtime=runtime,
        )
    except Exception:
        inner.close()
        raise


def register_envs() -> None:
    """Register ``MOC/<Game>-v0`` and ``MOC/<Game>-flat-v0`` for every game (idempotent)."""
    for name in GAMES:
        for flat in (False, True):
            gid = env_id(name, flat=flat)
            if gid in gym.registry:
                continue
            kwargs = {"game": name, **DEFAULT_KWARGS}
            if flat:
                # gym.make(id) with no keywords gives a 1-D Box (n_slots * 7,): what
                # classic-control trainers (CleanRL's ppo.py) size their first layer by.
                kwargs["obs_mode"] = "flat"
            gym.register(
                id=gid,
                entry_point="moc_envs.envs.registration:make_env",
                # gymnasium.make_vec(id, num_envs) builds the batched MocVectorEnv (one detect
                # call per step for all envs; workers=N: MocParallelVectorEnv), not a
                # SyncVectorEnv of single envs.
                vector_entry_point="moc_envs.envs.make:vector_entry",
                kwargs=kwargs,
            )
