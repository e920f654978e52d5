"""Stable-Baselines3 adapter for the batched vector env.

SB3 trains on its own ``VecEnv`` interface, not on Gymnasium's ``VectorEnv``.
:class:`SB3VecEnv` presents a :class:`~moc_envs.envs.vector.MocVectorEnv` (built with
``autoreset_mode="SameStep"``, the reset semantics SB3 expects) as one, so that
every rollout step detects all N frames in one batched call, or a
:class:`~moc_envs.envs.parallel.MocParallelVectorEnv` (``workers=2``: one batch per process)::

    from moc_envs import make_vec
    from moc_envs.envs.sb3 import SB3VecEnv
    venv = SB3VecEnv(make_vec("MOC/Pong-v0", 8, workers=2, autoreset_mode="SameStep"))
    PPO("MlpPolicy", venv).learn(100_000)

Episode statistics come in the info of the step that ends an episode, as SB3's ``Monitor``
writes them (``info["episode"] = {"r": return, "l": length, "t": seconds}``), so
``rollout/ep_rew_mean`` and ``ep_len_mean`` are logged without a wrapper; ``VecMonitor`` on top
replaces them with its own (the same figures), so nothing is counted twice.

Importing this module imports stable-baselines3 (and torch); ``import moc_envs`` does not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn

from moc_envs.envs.parallel import MocParallelVectorEnv
from moc_envs.envs.vector import MocVectorEnv

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over a SAME_STEP :class:`MocVectorEnv` (batched detection per step).

    The info of a step that ends an env's episode holds ``"episode"``: its return ``r``, length
    ``l`` (steps) and ``t``, seconds since this adapter was made (SB3 ``Monitor``'s layout,
    which SB3 reads for ``rollout/ep_rew_mean``).
    """

    def __init__(self, venv: MocVectorEnv | MocParallelVectorEnv) -> None:
        if not isinstance(venv, MocVectorEnv | MocParallelVectorEnv):
            raise TypeError(
                f"SB3VecEnv wraps a MocVectorEnv or MocParallelVectorEnv (moc_envs.make_vec), got {type(venv).__name__}"
            )
        if venv.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                "SB3VecEnv needs autoreset_mode='SameStep' (SB3 resets finished envs in the "
                f"same step), got {venv.autoreset_mode.name}; "
                "use make_vec(..., autoreset_mode='SameStep')"
            )
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._t_start = time.time()
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self) -> VecEnvObs:
        """Reset all envs with the seeds/options set through ``seed()``/``set_options()``."""
        seeds = [s if s is None else int(s) for s in self._seeds]
        options = self._options[0] if self._options and self._options[0] else None
        obs, _ = self.venv.reset(seed=seeds, options=options)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self.reset_infos = [dict(info) for info in self.venv.env_infos]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions; the step happens in :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step all envs; finished envs carry ``terminal_observation`` in their info."""
        if self._actions is None:
            raise RuntimeError("step_wait() called before step_async()")
        obs, rewards, terms, truncs, _ = self.venv.step(self._actions)
        self._actions = None
        self._returns += rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = []
        for i, raw in enumerate(self.venv.env_infos):
            info = dict(raw)
            if "final_obs" in info:
                info["terminal_observation"] = info.pop("final_obs")
                info.pop("final_info", None)
            info["TimeLimit.truncated"] = bool(truncs[i] and not terms[i])
            if terms[i] or truncs[i]:
                info["episode"] = {
                    "r": round(float(self._returns[i]), 6),
                    "l": int(self._lengths[i]),
                    "t": round(time.time() - self._t_start, 6),
                }
                self._returns[i] = 0.0
                self._lengths[i] = 0
            infos.append(info)
        dones = terms | truncs
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        """Close the vector env."""
        self.venv.close()

    def _targets(self, indices: int | Sequence[int] | None) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: int | Sequence[int] | None = None) -> list[Any]:
        """An attribute of each inner ALE env (``render_mode``: the vector env's)."""
        if attr_name == "render_mode":
            return [None for _ in self._targets(indices)]
        return self.venv.get_env_attr(attr_name, self._targets(indices))

    def set_attr(
        self, attr_name: str, value: Any, indices: int | Sequence[int] | None = None
    ) -> None:
        """Set an attribute on each inner ALE env."""
        self.venv.set_env_attr(attr_name, value, self._targets(indices))

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: int | Sequence[int] | None = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a method of each inner ALE env."""
        return self.venv.call_env_method(method_name, self._targets(indices), *method_args, **method_kwargs)

    def env_is_wrapped(
        self, wrapper_class: type, indices: int | Sequence[int] | None = None
    ) -> list[bool]:
        """Whether each inner env is wrapped with ``wrapper_class`` (checked through its wrapper chain)."""
        return self.venv.env_is_wrapped(wrapper_class, self._targets(indices))
