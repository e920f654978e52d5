"""Up-front checks of env arguments: actions, flags, keywords, the RAM oracle's device, the
tracker's gates, episode limits, distractors and reset arguments.

Each check fails with the argument's name, what was expected and what was given, before
the value can reach the emulator, where a bad action surfaces ten frames later as an
IndexError inside ale_py, a string flag is silently truthy, and a misspelled keyword
blames ``AtariEnv.__init__``.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from gymnasium import spaces

from moc_envs.perception.distractors import check_distractors as _check_distractors

__all__ = [
    "ale_keywords",
    "ale_flag_keywords",
    "check_action",
    "check_actions",
    "check_distractors",
    "check_flag",
    "check_keywords",
    "check_max_episode_steps",
    "check_ram_device",
    "check_reset",
    "check_tracking",
]

_RAM_DEVICES = ("auto", "cpu")


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


@lru_cache(maxsize=1)
def _ale_parameters() -> tuple[inspect.Parameter, ...]:
    from ale_py.env import AtariEnv  # ale_py is only loaded once an env is made

    params = inspect.signature(AtariEnv.__init__).parameters.values()
    # ``game`` and ``render_mode`` belong to the MOC env itself, which sets them on the ALE env.
    return tuple(p for p in params if p.name not in ("self", "game", "render_mode"))


def ale_keywords() -> frozenset[str]:
    """Keywords a MOC env passes on to the ALE env (``ale_py.env.AtariEnv`` parameters)."""
    return frozenset(p.name for p in _ale_parameters())


def ale_flag_keywords() -> frozenset[str]:
    """The ALE keywords that are booleans (``full_action_space``, ``continuous``, ...)."""
    return frozenset(p.name for p in _ale_parameters() if p.annotation in ("bool", bool))


def check_flag(name: str, value: object) -> bool:
    """Return ``value`` as a bool if it is one (Python or numpy), else raise TypeError.

    A string such as ``"no"`` is truthy, so accepting it would turn the option on.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}")


def check_keywords(env_name: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise TypeError for the first keyword of ``given`` not in ``allowed``, with a suggestion."""
    choices = sorted(set(allowed))
    for key in given:
        if key in choices:
            continue
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f"Did you mean '{close[0]}'?" if close else f"Valid keywords: {', '.join(choices)}."
        raise TypeError(f"Unknown keyword '{key}' for {env_name}. {hint}")


def check_ram_device(detector: object, device: object) -> None:
    """Refuse a GPU ``device`` for the RAM oracle, which reads RAM on the CPU and has no model."""
    if isinstance(detector, str) and detector == "ram" and device not in _RAM_DEVICES:
        raise ValueError(
            f"detector='ram' reads objects from the emulator RAM on the CPU; device must be "
            f"'auto' or 'cpu', got {device!r}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_tracking(max_distance: object, max_age: object, coast: object = 0) -> None:
    """Refuse tracker arguments that are not numbers of the right kind, before any model loads.

    ``max_distance``: a finite number of pixels > 0 (a string such as ``'40'`` compares with
    nothing and NaN gates every match away); ``max_age``: an int number of steps >= 0 (a float
    count of steps has no meaning); ``coast``: an int in ``0 .. max_age``.
    """
    if isinstance(max_distance, bool | np.bool_) or not isinstance(
        max_distance, int | float | np.integer | np.floating
    ):
        raise TypeError(f"max_distance must be a number of pixels > 0, got {_describe(max_distance)}")
    if not math.isfinite(float(max_distance)) or float(max_distance) <= 0:
        raise ValueError(f"max_distance must be a finite number of pixels > 0, got {max_distance!r}")
    if not _is_int(max_age):
        raise TypeError(f"max_age must be an int number of steps >= 0, got {_describe(max_age)}")
    if int(max_age) < 0:  # type: ignore[call-overload]
        raise ValueError(f"max_age must be an int number of steps >= 0, got {max_age!r}")
    from moc_envs.perception.tracking import check_coast

    check_coast(coast, int(max_age))  # type: ignore[call-overload]


def check_distractors(distractors: object, distractor_seed: object) -> None:
    """Refuse a ``distractors`` other than None, ``"horizontal"``, ``"vertical"`` or ``"both"``,
    and a ``distractor_seed`` other than None or an int >= 0 (see :mod:`moc_envs.perception.distractors`)."""
    _check_distractors(distractors, distractor_seed)


def check_max_episode_steps(max_episode_steps: object) -> None:
    """Refuse a ``max_episode_steps`` that is neither None nor an int >= 1."""
    if max_episode_steps is None:
        return
    if not _is_int(max_episode_steps):
        raise TypeError(
            f"max_episode_steps must be None or an int >= 1, got {_describe(max_episode_steps)}"
        )
    if int(max_episode_steps) < 1:  # type: ignore[call-overload]
        raise ValueError(f"max_episode_steps must be None or an int >= 1, got {max_episode_steps}")


def check_reset(seed: object, options: object) -> int | None:
    """Check a single env's ``reset(seed=, options=)``; return the seed as a Python int or None.

    ``seed``: None or a non-negative int, Python or numpy (ALE itself refuses ``np.int64``,
    which the vector envs accept); ``options``: None or a dict.
    """
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {_describe(options)}")
    if seed is None:
        return None
    if not _is_int(seed):
        raise TypeError(f"seed must be None or a non-negative int, got {_describe(seed)}")
    if int(seed) < 0:  # type: ignore[call-overload]
        raise ValueError(f"seed must be None or a non-negative int, got {seed}")
    return int(seed)  # type: ignore[call-overload]


def _discrete_action(action: Any, space: spaces.Discrete, name: str) -> int:
    if isinstance(action, np.ndarray) and action.ndim == 0:
        action = action[()]
    lo = int(space.start)
    hi = lo + int(space.n)
    if isinstance(action, bool | np.bool_) or not isinstance(action, int | np.integer):
        raise TypeError(
            f"{name} must be an integer in [{lo}, {hi}) for the {space} action space, "
            f"got {_describe(action)}"
        )
    value = int(action)
    if not lo <= value < hi:
        raise ValueError(
            f"{name} must be an integer in [{lo}, {hi}) for the {space} action space, got {value}"
        )
    return value


def check_action(action: Any, space: spaces.Space, name: str = "action") -> Any:
    """Return ``action`` ready for the ALE env, or raise with the space and the value given.

    For a Discrete space (every ALE env but ``continuous=True``) the action must be an
    integer in range: a Python int, a numpy integer scalar or a 0-d integer array; bool,
    float, str and out-of-range values (negative included) are refused. Other spaces must
    contain the action.
    """
    if isinstance(space, spaces.Discrete):
        return _discrete_action(action, space, name)
    if not space.contains(action):
        raise ValueError(f"{name} must lie in the action space {space}, got {_describe(action)}")
    return action


def check_actions(actions: Any, space: spaces.Space, num_envs: int) -> Any:
    """Check one action per env for a vector env; errors name the env index.

    Returns an int64 array (N,) for Discrete spaces, else a list of the N actions.
    """
    if isinstance(actions, np.ndarray) and isinstance(space, spaces.Discrete):
        if actions.shape != (num_envs,):
            raise ValueError(
                f"actions must hold one action per env, shape ({num_envs},), got {actions.shape}"
            )
        if actions.dtype.kind in "iu":
            lo, hi = int(space.start), int(space.start) + int(space.n)
            bad = np.flatnonzero((actions < lo) | (actions >= hi))
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"actions[{i}] (env {i}) must be an integer in [{lo}, {hi}) for the "
                    f"{space} action space, got {int(actions[i])}"
                )
            return actions.astype(np.int64, copy=False)
        # A float, bool or str array: name the first env, as for a list.
    if isinstance(actions, Mapping) or isinstance(actions, str | bytes):
        raise TypeError(
            f"actions must be a sequence of {num_envs} actions (one per env), got "
            f"{_describe(actions)}"
        )
    try:
        items = list(actions)
    except TypeError:
        raise TypeError(
            f"actions must be a sequence of {num_envs} actions (one per env), got "
            f"{_describe(actions)}"
        ) from None
    if len(items) != num_envs:
        raise ValueError(
            f"actions must hold one action per env ({num_envs}), got {len(items)}: "
            f"{_describe(actions)}"
        )
    checked = [check_action(a, space, name=f"actions[{i}] (env {i})") for i, a in enumerate(items)]
    if isinstance(space, spaces.Discrete):
        return np.asarray(checked, dtype=np.int64)
    return checked
