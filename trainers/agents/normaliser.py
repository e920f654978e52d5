"""The observation an agent trains on: features (:mod:`moc_envs.agent_features`), then standardised.

:func:`ObsNormaliser` is an SB3 ``VecEnvWrapper`` that rewrites each flat object observation as
the run's ``features`` say and standardises it with running mean and variance (as SB3's
``VecNormalize``, but with its statistics in our own JSON, which exported policies apply:
:class:`moc_envs.agents.ObsNormalisation`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["NORM_DEFAULTS", "ObsNormaliser"]

NORM_DEFAULTS: dict[str, float] = {
    # Positions lie in [0, 1] and velocities are a few hundredths: without standardisation
    # the MLP learned nothing in 100k steps (benchmarks.agents). Clip 10 and epsilon as in
    # SB3's VecNormalize. Rewards are left alone: Pong's are +-1 already (CleanRL clips
    # Atari rewards to their sign for the same scale).
    "clip": 10.0,
    "epsilon": 1e-8,
    # A feature that never varies in training (the RAM oracle's box sizes) would get a standard
    # deviation of ~0 and map any other detector's one-pixel wobble to +-clip; the floor keeps
    # one pixel (1/160 of the width) at ~0.6.
    "min_std": 1e-2,
}
"""Observation standardisation of :class:`ObsNormaliser` and of exported policies."""


@functools.cache
def _obs_normaliser_class() -> type:
    """:class:`ObsNormaliser`, defined on first use so that SB3 is imported only then."""
    from gymnasium import spaces
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import VecEnvWrapper

    from moc_envs.agent_features import RelativeLayout, apply_features, feature_count
    from moc_envs.agents import ObsNormalisation, normalise_observation

    class _ObsNormaliser(VecEnvWrapper):
        """Features, then standardisation with running statistics (see :data:`NORM_DEFAULTS`)."""

        def __init__(
            self, venv: Any, training: bool = True, layout: RelativeLayout | None = None, features: str | None = None
        ) -> None:
            self.layout = layout
            self.features = features or ("slots" if layout is None else "relative")
            size = int(np.prod(venv.observation_space.shape))
            if layout is not None:
                size = feature_count(self.features, layout.n_slots)
            space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
            super().__init__(venv, observation_space=space)
            self.training = training
            self.rms = RunningMeanStd(shape=(size,))

        @property
        def normalisation(self) -> ObsNormalisation:
            """The statistics as the exported policy applies them."""
            return ObsNormalisation(
                self.rms.mean.copy(), self.rms.var.copy(), NORM_DEFAULTS["epsilon"],
                NORM_DEFAULTS["min_std"], NORM_DEFAULTS["clip"],
            )  # fmt: skip

        def _features(self, obs: np.ndarray) -> np.ndarray:
            return apply_features(obs, self.features, self.layout)

        def _normalise(self, obs: np.ndarray) -> np.ndarray:
            return normalise_observation(obs, self.normalisation)

        def reset(self) -> np.ndarray:
            obs = self._features(self.venv.reset())
            if self.training:
                self.rms.update(obs)
            return self._normalise(obs)

        def step_wait(self) -> Any:
            obs, rewards, dones, infos = self.venv.step_wait()
            obs = self._features(obs)
            if self.training:
                self.rms.update(obs)
            for info in infos:
                # SB3 bootstraps truncated episodes from this one: same scale as the rest.
                if "terminal_observation" in info:
                    last = self._features(info["terminal_observation"][None])
                    info["terminal_observation"] = self._normalise(last)[0]
            return self._normalise(obs), rewards, dones, infos

    return _ObsNormaliser


def ObsNormaliser(venv: Any, training: bool = True, layout: Any = None, features: str | None = None) -> Any:  # noqa: N802 - a class to its users
    """SB3 ``VecEnvWrapper``: flat object observations as ``features`` read them with ``layout``
    (:func:`moc_envs.agent_features.layout_for`; None: the slots as they are), standardised.
    ``features`` None: ``relative`` with a layout, ``slots`` without.

    ``.rms`` holds SB3's ``RunningMeanStd`` (mean, var, count; updated while ``training``),
    ``.normalisation`` the :class:`moc_envs.agents.ObsNormalisation` that exported policies apply.
    """
    return _obs_normaliser_class()(venv, training, layout, features)
