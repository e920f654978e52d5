"""Vector MOC envs: N ALE games stepped in-process, all N frames detected in one batched call.

:func:`make_vec` (``moc_envs.make_vec("MOC/Pong-v0", num_envs=8)``) returns a
:class:`MocVectorEnv`, a Gymnasium 1.x :class:`~gymnasium.vector.VectorEnv`. Each
step it steps the N ALE games (one after the other in this thread, or, with
``emulator="ale-vector"``, on ale-py's C++ threads: :mod:`moc_envs.envs.emulators`), gathers
their frames (and RAMs), calls ``detector.detect`` once for the whole batch (row ``i`` is always env
``i``, which stateful detectors such as the RAM oracle rely on), then hands each
env's detections to that env's own :class:`~moc_envs.perception.observation.ObjectObservationBuilder`
(tracker, observation, labels), the same per-frame code the single-env
:class:`~moc_envs.envs.wrapper.ObjectCentricWrapper` runs.

Autoreset: ``NEXT_STEP`` (Gymnasium's default) or ``SAME_STEP``.

- ``NEXT_STEP``: the step after an env's episode ended resets it (its action is
  ignored, reward 0, both flags False). Exactly one detect call per step.
- ``SAME_STEP``: an env whose episode ends is reset in the same step; the
  returned observation is the new episode's first one and the last one is in
  ``infos["final_obs"]`` (with ``infos["final_info"]``), as Stable-Baselines3
  expects. One detect call per step, plus one more on steps where an episode
  ended (for the reset frames; all N rows when the detector keeps per-row state,
  else only the reset rows).

:class:`moc_envs.envs.sb3.SB3VecEnv` adapts a ``SAME_STEP`` MocVectorEnv to
Stable-Baselines3's ``VecEnv`` so that PPO & co. train on it with batched detection.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from moc_envs.device import DEFAULT_RUNTIME, Runtime
from moc_envs.envs.arguments import (
    ale_keywords,
    check_actions,
    check_keywords,
    check_tracking,
)
from moc_envs.envs.emulators import EmulatorName, check_emulator_arguments, make_emulators
from moc_envs.envs.registration import check_env_arguments, game_of_id
from moc_envs.envs.registration import env_id as registered_id
from moc_envs.games import GameSpec
from moc_envs.hud.reader import detector_hud
from moc_envs.perception.detection import (
    Detector,
    claim_detector,
    release_detector,
    validate_detections,
)
from moc_envs.perception.detectors import DetectorName, label_spec, make_detector
from moc_envs.perception.distractors import (
    BarMemory,
    DistractorKind,
    make_distractors,
    without_bars,
)
from moc_envs.perception.observation import ObjectObservationBuilder, observation_space
from moc_envs.readouts.registry import detector_readouts

__all__ = ["AUTORESET_MODES", "MocVectorEnv", "reset_arguments"]

AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
"""Autoreset modes MocVectorEnv supports (``DISABLED`` is not)."""


def _autoreset_mode(mode: str | AutoresetMode) -> AutoresetMode:
    try:
        resolved = AutoresetMode(mode)
    except ValueError:
        resolved = None
    if resolved is None and isinstance(mode, str):
        resolved = next((m for m in AutoresetMode if m.name == mode.upper()), None)
    if resolved not in AUTORESET_MODES:
        names = ", ".join(m.name for m in AUTORESET_MODES)
        raise ValueError(f"Unknown autoreset_mode {mode!r}; expected one of {names}")
    return resolved


def reset_arguments(
    seed: int | Sequence[int | None] | None, options: dict[str, Any] | None, num_envs: int
) -> tuple[list[int | None], dict[str, Any], np.ndarray | None]:
    """A vector reset's seed per env (int: env i gets ``seed + i``), its other options and its
    ``reset_mask`` (bool (num_envs,) or None), checked before any env is touched.

    A seed is None or a non-negative int (Python or numpy); ``seed`` is one of them or a
    sequence of ``num_envs`` of them. ``options`` is None or a dict.
    """
    expected = f"None, a non-negative int or a sequence of num_envs={num_envs} of them"
    if seed is None or isinstance(seed, int | np.integer) and not isinstance(seed, bool | np.bool_):
        seeds: list[int | None] = [None] * num_envs if seed is None else [int(seed) + i for i in range(num_envs)]
        if seed is not None and int(seed) < 0:
            raise ValueError(f"seed must be {expected}, got {int(seed)}")
    else:
        if (
            isinstance(seed, str | bytes)
            or not isinstance(seed, Sequence | np.ndarray)
            or isinstance(seed, np.ndarray) and seed.ndim != 1
        ):
            raise TypeError(f"seed must be {expected}, got {type(seed).__name__} {seed!r}")
        seeds = list(seed)
        if len(seeds) != num_envs:
            raise ValueError(f"seed must be {expected}, got {len(seeds)} seeds for {num_envs} envs")
        for i, s in enumerate(seeds):
            if s is None:
                continue
            if isinstance(s, bool | np.bool_) or not isinstance(s, int | np.integer):
                raise TypeError(
                    f"seed[{i}] (env {i}) must be None or a non-negative int, "
                    f"got {type(s).__name__} {s!r}"
                )
            if s < 0:
                raise ValueError(
                    f"seed[{i}] (env {i}) must be None or a non-negative int, got {int(s)}"
                )
            seeds[i] = int(s)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__} {options!r}")
    options = dict(options or {})
    mask = options.pop("reset_mask", None)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (num_envs,):
            raise ValueError(f"reset_mask must be a bool array of shape ({num_envs},), got {mask.dtype} {mask.shape}")
    return seeds, options, mask


class MocVectorEnv(VectorEnv):
    """N MOC envs of one game with batched detection (see the module docstring).

    Args:
        game: the game name or spec.
        num_envs: number of ALE envs (>= 1).
        detector: ``"space"`` (learned, needs weights), ``"ram"`` (RAM oracle) or an
            object with ``detect(frames, rams=None)``; one detector serves all envs (rows
            0..N-1), and a detector with per-env state (``reset(i)``) may serve no other
            open env (:class:`~moc_envs.errors.DetectorInUseError`).
        device: torch device of the learned detector (``"auto"``, ``"cpu"``, ``"cuda"``).
        obs_mode: ``"objects"`` or ``"objects+frame"``.
        ram_labels: add ``infos["ram_labels"]`` (AtariARI labels read from RAM).
        autoreset_mode: ``"NextStep"`` / ``"next_step"`` (default) or ``"SameStep"``.
        max_distance: tracking gate in pixels.
        max_age: steps a lost object's slot is kept for it.
        coast: steps a missed object stays in the observation at the box its velocity
            predicts (0: a missed object's row is zero at once); detections, objects and
            labels in ``info`` are unaffected.
        weights: the learned detector's weights, a game folder or a root holding
            ``<Game>/``; ``"space"`` only.
        allow_unclassified: accept weights without a z_what classifier; ``"space"`` only.
        threads: torch CPU threads of the learned detector (None: one).
        distractors: ``"horizontal"``, ``"vertical"``, ``"both"`` or None (off): moving bars on
            every env's frames, as on the single env (:mod:`moc_envs.perception.distractors`).
        distractor_seed: seeds the bars with each env's reset seed; each env has its own stream
            (env ``i`` reset with seed ``s + i`` draws the bars of a single env reset with
            ``s + i``; before any seeded reset, env ``i``'s stream comes from this seed and
            ``row_offset + i``).
        row_offset: the row of env 0 in a larger vector env (a part of a
            :class:`~moc_envs.envs.parallel.MocParallelVectorEnv`), which keeps the distractor
            streams of its envs apart from the other parts'; nothing else depends on it.
        emulator: ``"python"`` (N ALE v5 envs stepped in this thread) or ``"ale-vector"``
            (ale-py's C++ vector env: threads outside the GIL, no RAM, and the differences
            :mod:`moc_envs.envs.emulators` lists).
        emulator_threads: threads of ``emulator="ale-vector"`` (None: one per env, at most one
            per core).
        runtime: what runs the learned detector's image encoder on the CPU: ``"onnxruntime"``
            (default), ``"torchscript"`` (a frozen graph) or ``"eager"``; ``"space"`` only.
        **ale_kwargs: passed to every ``gym.make("ALE/<Game>-v5")`` (``max_episode_steps``:
            a TimeLimit on each env); other keywords are refused with the nearest valid one.

    ``infos`` follow Gymnasium's vector convention (a dict of arrays, each key
    with a ``_key`` mask): ``infos["objects"]`` is an object array holding each
    env's detection list, ``infos["labels"]`` a dict of per-label int arrays, each beside
    its ``_<label>`` bool array (False, and the value 0, where that env did not see the
    object; plain arrays, not NumPy masked arrays), ``infos["dropped_detections"]`` (int per
    env: detections dropped for a non-finite box or score or no area inside the frame;
    see :func:`moc_envs.perception.detection.validate_detections`), plus the ALE's own ``lives``,
    ``episode_frame_number`` and ``frame_number``.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        game: str | GameSpec,
        num_envs: int,
        detector: DetectorName | Detector = "space",
        device: str = "auto",
        obs_mode: str = "objects",
        ram_labels: bool = False,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        max_distance: float = 40.0,
        max_age: int = 30,
        coast: int = 0,
        weights: str | os.PathLike[str] | None = None,
        allow_unclassified: bool = False,
        threads: int | None = None,
        distractors: DistractorKind | None = None,
        distractor_seed: int | None = None,
        row_offset: int = 0,
        emulator: EmulatorName = "python",
        emulator_threads: int | None = None,
        runtime: Runtime = DEFAULT_RUNTIME,
        **ale_kwargs: Any,
    ) -> None:
        self._owns_detector = False
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.game = game_of_id(game) if isinstance(game, str) else game
        check_keywords(registered_id(self.game.name), ale_kwargs, _vector_keywords())
        check_env_arguments(
            self.game, detector, device, obs_mode, ram_labels, allow_unclassified, threads, weights,
            ale_kwargs, distractors, distractor_seed, runtime,
        )  # fmt: skip
        if isinstance(row_offset, bool) or not isinstance(row_offset, int | np.integer) or row_offset < 0:
            raise ValueError(f"row_offset must be an int >= 0, got {row_offset!r}")
        check_tracking(max_distance, max_age, coast)
        emulator = check_emulator_arguments(emulator, self.game, detector, ram_labels, ale_kwargs, emulator_threads)
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.detector = make_detector(
            detector, self.game, device, weights=weights, allow_unclassified=allow_unclassified,
            threads=threads, runtime=runtime,
        )  # fmt: skip
        self.num_envs = int(num_envs)
        self.emulator = make_emulators(emulator, self.game, self.num_envs, ale_kwargs, emulator_threads)
        """The emulation backend (:mod:`moc_envs.envs.emulators`)."""
        self.envs: list[gym.Env] = self.emulator.envs
        """The N ALE envs of ``emulator="python"`` (none for ``"ale-vector"``)."""
        try:
            # One owner for all N rows; checked after the emulators so that a failure
            # above leaves the detector free.
            claim_detector(
                self.detector, self, f"MocVectorEnv({self.game.name}, num_envs={self.num_envs})"
            )
        except Exception:
            self.emulator.close()
            raise
        self._owns_detector = True
        self._distractors = [
            make_distractors(distractors, distractor_seed, int(row_offset) + i)
            for i in range(self.num_envs)
        ]
        self.builders = [
            ObjectObservationBuilder(
                label_spec(self.game, self.detector), obs_mode, ram_labels, max_distance=max_distance, max_age=max_age,
                coast=coast, hud=detector_hud(self.detector),
                readouts=detector_readouts(self.detector), game_mode=ale_kwargs.get("mode"),
            )
            for _ in range(self.num_envs)
        ]
        self.single_observation_space = observation_space(self.game, obs_mode)
        self.single_action_space = self.emulator.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        # Stateful detectors (the RAM oracle) keep per-row memory and expose reset(i).
        reset = getattr(self.detector, "reset", None)
        self._detector_reset = reset if callable(reset) else None
        self._bar_memory = BarMemory()  # per env row: bars painted back from earlier frames
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._rewards = np.zeros(self.num_envs, dtype=np.float64)
        self._terminations = np.zeros(self.num_envs, dtype=bool)
        self._truncations = np.zeros(self.num_envs, dtype=bool)
        self._obs: list[Any] = [None] * self.num_envs
        self.env_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        """Each env's latest info dict, unbatched (``final_obs``/``final_info`` included)."""
        self.detect_calls = 0
        """How many times ``detector.detect`` was called (benchmarks and tests read it)."""

    # ---------------------------------------------------------------- helpers
    def _grab(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        frames = self.emulator.frames(list(rows))
        for k, i in enumerate(rows):
            if (bars := self._distractors[i]) is not None:
                frames[k] = bars.draw(frames[k])
        return frames, self.emulator.rams(list(rows))

    def _detect_rows(
        self, rows: Sequence[int], grabbed: tuple[np.ndarray, np.ndarray | None] | None = None
    ) -> dict[int, tuple[Any, dict[str, Any]]]:
        """Detect the current frames of env ``rows`` and update their builders.

        ``grabbed``: the frames and RAMs of exactly ``rows``, when already read.
        """
        # Row alignment: a stateful detector must see env i at row i, so it gets
        # every env's frame; a stateless one gets just the rows asked for.
        batch = list(range(self.num_envs)) if self._detector_reset is not None else list(rows)
        frames, rams = grabbed if grabbed is not None and batch == list(rows) else self._grab(batch)
        # The readouts read what the detector saw; the objects+frame observation keeps the bars.
        seen = without_bars(self.detector, frames, self._bar_memory, batch)
        detections, dropped = validate_detections(
            self.detector.detect(seen, rams), len(batch), self.detector
        )
        self.detect_calls += 1
        where = {env_i: k for k, env_i in enumerate(batch)}
        out: dict[int, tuple[Any, dict[str, Any]]] = {}
        for i in rows:
            k = where[i]
            obs, extra = self.builders[i].update(
                detections[k], frame=seen[k], ram=None if rams is None else rams[k], screen=frames[k]
            )
            extra["dropped_detections"] = dropped[k]
            out[i] = (obs, extra)
        return out

    def _step_all(self, actions: Any, base: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Step every env (NEXT_STEP: reset those whose episode ended), fill ``base``, read the frames."""
        resets = self._needs_reset & (self.autoreset_mode == AutoresetMode.NEXT_STEP)
        rewards, terms, truncs, infos = self.emulator.step(actions, resets)
        self._rewards[:], self._terminations[:], self._truncations[:] = rewards, terms, truncs
        for i in range(self.num_envs):
            base[i] = infos[i]
            if resets[i]:
                self._after_reset(i, None)
            elif (bars := self._distractors[i]) is not None:
                bars.step()
        return self._grab(range(self.num_envs))

    def _reset_envs(
        self, rows: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> dict[int, dict[str, Any]]:
        """Reset env ``rows`` with ``seeds``; each one's info."""
        infos = self.emulator.reset(rows, seeds, options)
        for i, seed in zip(rows, seeds, strict=True):
            self._after_reset(i, seed)
        return infos

    def _after_reset(self, i: int, seed: int | None) -> None:
        """What env ``i``'s reset restarts besides the emulator: bars, tracker, detector row."""
        if (bars := self._distractors[i]) is not None:
            bars.reset(seed)
        self.builders[i].reset()
        self._bar_memory.reset(i)
        if self._detector_reset is not None:
            self._detector_reset(i)

    def _batch_obs(self) -> Any:
        return gym.vector.utils.concatenate(
            self.single_observation_space,
            self._obs,
            gym.vector.utils.create_empty_array(self.single_observation_space, self.num_envs),
        )

    # ---------------------------------------------------------------- API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env; ``seed`` (int: env i gets ``seed + i``) or one seed per env.

        ``options["reset_mask"]`` (bool array) resets only some envs (NEXT_STEP's
        partial reset, as in Gymnasium's SyncVectorEnv).
        """
        seeds, options, mask = reset_arguments(seed, options, self.num_envs)
        rows = list(range(self.num_envs)) if mask is None else [int(i) for i in np.flatnonzero(mask)]
        base = self._reset_envs(rows, [seeds[i] for i in rows], options or None)
        infos: dict[str, Any] = {}
        for i, (obs, extra) in self._detect_rows(rows).items():
            self._obs[i] = obs
            self._needs_reset[i] = False
            self._terminations[i] = self._truncations[i] = False
            self.env_infos[i] = {**base[i], **extra}
            infos = self._add_info(infos, self.env_infos[i], i)
        return self._batch_obs(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env, detect all N frames in one call, and autoreset (see the module docstring).

        ``actions`` holds one action per env, each in the single action space (an integer
        in range for ALE's Discrete space); a bad one raises TypeError / ValueError naming
        its env index before any emulator steps.
        """
        actions = check_actions(actions, self.single_action_space, self.num_envs)
        base: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        rows = list(range(self.num_envs))
        results = self._detect_rows(rows, self._step_all(actions, base))
        done = self._terminations | self._truncations
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            obs, extra = results[i]
            self._obs[i] = obs
            if self.autoreset_mode == AutoresetMode.SAME_STEP and done[i]:
                self.env_infos[i] = {"final_obs": obs, "final_info": {**base[i], **extra}}
            else:
                self.env_infos[i] = {**base[i], **extra}
            infos = self._add_info(infos, self.env_infos[i], i)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            ended = [int(i) for i in np.flatnonzero(done)]
            fresh = self._reset_envs(ended, [None] * len(ended), None)
            for i, (obs, extra) in self._detect_rows(ended).items():
                self._obs[i] = obs
                infos = self._add_info(infos, {**fresh[i], **extra}, i)
                self.env_infos[i] = {**self.env_infos[i], **fresh[i], **extra}
        else:
            self._needs_reset = done.copy()
        return (
            self._batch_obs(),
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            infos,
        )

    # ------------------------------------------------ per-env access (SB3)
    def _per_env(self, call: str, name: str) -> None:
        if self.emulator.name != "python":
            raise ValueError(
                f"{call}({name!r}): emulator={self.emulator.name!r} runs the {self.num_envs} games inside "
                "one ale_py AtariVectorEnv, with no per-env gym env to reach; use emulator='python'"
            )

    def get_env_attr(self, name: str, indices: Sequence[int]) -> list[Any]:
        """Attribute ``name`` of each inner ALE env ``indices`` (``emulator="python"`` only)."""
        self._per_env("get_env_attr", name)
        return [getattr(self.envs[i], name) for i in indices]

    def set_env_attr(self, name: str, value: Any, indices: Sequence[int]) -> None:
        """Set attribute ``name`` on each inner ALE env ``indices`` (``emulator="python"`` only)."""
        self._per_env("set_env_attr", name)
        for i in indices:
            setattr(self.envs[i], name, value)

    def call_env_method(self, name: str, indices: Sequence[int], *args: Any, **kwargs: Any) -> list[Any]:
        """Call method ``name`` of each inner ALE env ``indices`` (``emulator="python"`` only)."""
        self._per_env("call_env_method", name)
        return [getattr(self.envs[i], name)(*args, **kwargs) for i in indices]

    def env_is_wrapped(self, wrapper_class: type, indices: Sequence[int]) -> list[bool]:
        """Whether each inner env ``indices`` is wrapped with ``wrapper_class`` (through its wrapper
        chain); with ``emulator="ale-vector"`` no env is wrapped."""
        if self.emulator.name != "python":
            return [False for _ in indices]
        out = []
        for i in indices:
            env: Any = self.envs[i]
            while env is not None and not isinstance(env, wrapper_class):
                env = getattr(env, "env", None)
            out.append(env is not None)
        return out

    def close_extras(self, **kwargs: Any) -> None:
        """Close the N ALE envs and free the detector for other envs."""
        if self._owns_detector:
            release_detector(self.detector, self)
            self._owns_detector = False
        emulator = getattr(self, "emulator", None)  # absent when __init__ failed before it
        if emulator is not None:
            emulator.close()


def _vector_keywords() -> frozenset[str]:
    """Keywords MocVectorEnv accepts: its own (but ``game``, which make_vec takes as the id) plus ALE's."""
    own = {
        name
        for name, p in inspect.signature(MocVectorEnv.__init__).parameters.items()
        if p.kind is not inspect.Parameter.VAR_KEYWORD and name not in ("self", "game")
    }
    # max_episode_steps travels with the ALE keywords to make_ale_env (a TimeLimit per env).
    return frozenset(own | ale_keywords() | {"workers", "worker_timeout", "max_episode_steps"})
