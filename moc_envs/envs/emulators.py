"""Emulation backends of the vector MOC envs: who steps the N ALE games and hands over their frames.

``MocVectorEnv(..., emulator=...)`` (and ``make_vec``) picks one:

- ``"python"`` (the default): N ALE v5 envs (:func:`~moc_envs.envs.registration.make_ale_env`),
  stepped one after the other in this thread; exactly what ``gym.make("MOC/<Game>-v0")`` runs,
  with the RAM at hand for ``detector="ram"`` and ``ram_labels``.
- ``"ale-vector"``: ale-py's C++ vector env (:class:`ale_py.vector_env.AtariVectorEnv`), which
  steps the N games on its own threads without Python's GIL and hands back the N RGB frames as
  one array, set up to emulate as ALE v5 does (frameskip, sticky actions, full 210x160 RGB
  frames, no resizing, grayscale, stacking, no-op or FIRE resets, no reward clipping) and, for
  ``flicker`` games, to pool the last two frames of each step as
  :class:`~moc_envs.perception.frames.MaxOfLastTwoFrames` does.

What ``"ale-vector"`` cannot give, measured by ``moc-envs bench backends`` and checked by
``tests/test_emulators.py``:

- **No RAM.** ale-py's vector env exposes no emulator RAM, so ``detector="ram"`` and
  ``ram_labels=True`` are refused, and a detector of your own gets ``rams=None``.
- **The frame of the step that ends an episode is stale.** The C++ loop leaves a step as soon as
  the game is over (or its frame budget spent) before it copies that frame, so the step that
  terminates or truncates shows the last frame captured before (for a ``flicker`` game, a
  maximum of older frames). Every other step's frame is the per-env path's, bit for bit.
- **Sticky actions after an episode end (non-flicker games).** ALE draws two random numbers
  per emulator frame for sticky actions. ALE v5 runs all ``frameskip`` frames of the step that
  ends a game (the emulator refuses to advance, the draws still happen); the C++ loop stops at
  the frame the game ended on. With ``repeat_action_probability > 0`` (v5's default 0.25) the two
  random streams part after the first episode that ends before its step's last frame, so the
  later episodes of a seed differ (they are as random, not the same). ``flicker`` games match:
  :class:`~moc_envs.perception.frames.MaxOfLastTwoFrames` stops there too. Without sticky actions
  the emulation is deterministic and every episode matches.
- **Seeds.** ALE v5 seeds a reset with ``seed`` through ``np.random.SeedSequence(seed)``, whose
  second word (an unsigned 32-bit number) seeds the emulator. The vector env takes only seeds
  below 2**31, so this backend passes that word with its top bit cleared: identical for the
  seeds whose word is below 2**31 (about half), a different (and as reproducible) sticky-action
  stream for the others. An env reset without a seed before any seeded reset gets fresh entropy,
  as ALE v5's does (the C++ default would seed every env with the same clock second).
- **Keywords.** Only ``frameskip`` (an int), ``repeat_action_probability``,
  ``full_action_space``, ``max_num_frames_per_episode`` and ``max_episode_steps`` (a frame
  budget of ``max_episode_steps * frameskip``) are taken; game modes, difficulties and
  continuous actions are not in ale-py's vector env. A ``flicker`` game needs ``frameskip >= 2``
  (the vector env pools inside one step only). A step that both ends the game and reaches
  ``max_episode_steps`` reports ``terminated`` alone (gymnasium's TimeLimit also sets
  ``truncated``).

Rewards, terminations, truncations, lives and frame numbers are otherwise the per-env path's.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from moc_envs.envs.arguments import check_max_episode_steps
from moc_envs.envs.registration import make_ale_env
from moc_envs.games import GameSpec
from moc_envs.perception.detection import FRAME_HEIGHT
from moc_envs.perception.frames import frame_source

__all__ = [
    "EMULATORS",
    "EmulatorName",
    "ALEVectorEmulators",
    "PythonEmulators",
    "check_emulator",
    "check_emulator_arguments",
    "make_emulators",
]

EmulatorName = Literal["python", "ale-vector"]
EMULATORS: tuple[str, ...] = ("python", "ale-vector")
"""The emulation backends a vector MOC env can run on (see the module docstring)."""

_VECTOR_KEYWORDS = frozenset(
    {"frameskip", "repeat_action_probability", "full_action_space", "max_num_frames_per_episode", "max_episode_steps"}
)
# ALE keywords the vector env has no counterpart for, and the values that mean "not used".
_VECTOR_DEFAULTS: dict[str, object] = {
    "mode": None, "difficulty": None, "obs_type": "rgb", "continuous": False, "sound_obs": False,
    "continuous_action_threshold": 0.5,
}  # fmt: skip
_NO_LIMIT = 2**31 - 1  # the vector env's frame budget is an int; 0 would end every step
_SEED_MASK = 0x7FFFFFFF  # the vector env refuses seeds >= 2**31 (see the module docstring)


def check_emulator(emulator: object) -> EmulatorName:
    """``emulator`` as one of :data:`EMULATORS`, else TypeError / ValueError naming the choices."""
    choices = ", ".join(repr(e) for e in EMULATORS)
    if not isinstance(emulator, str):
        raise TypeError(f"emulator must be one of {choices}, got {type(emulator).__name__} {emulator!r}")
    if emulator not in EMULATORS:
        close = difflib.get_close_matches(emulator, EMULATORS, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown emulator {emulator!r}; expected one of {choices}.{hint}")
    return emulator  # type: ignore[return-value]


def check_emulator_arguments(
    emulator: object,
    game: GameSpec,
    detector: object,
    ram_labels: object,
    ale_kwargs: dict[str, Any],
    emulator_threads: object = None,
) -> EmulatorName:
    """Refuse what an emulation backend cannot run, before anything starts (see the module doc).

    ``"ale-vector"`` refuses ``detector="ram"``, ``ram_labels=True`` (no RAM), ALE keywords it
    has no counterpart for (unless given their default), a frameskip other than an int >= 1
    (>= 2 for a ``flicker`` game) and an ``emulator_threads`` other than None or an int >= 1;
    ``"python"`` refuses any ``emulator_threads``.
    """
    name = check_emulator(emulator)
    if name == "python":
        if emulator_threads is not None:
            raise ValueError(
                f"emulator_threads sets the threads of emulator='ale-vector'; emulator='python' steps "
                f"its envs in this thread, got emulator_threads={emulator_threads!r}"
            )
        return name
    _check_ale_py()
    why = "ale_py's AtariVectorEnv exposes no emulator RAM; use emulator='python'"
    if isinstance(detector, str) and detector == "ram":
        raise ValueError(f"detector='ram' reads objects from the RAM, and emulator='ale-vector' cannot: {why}")
    if ram_labels is True:
        raise ValueError(f"ram_labels=True reads labels from the RAM, and emulator='ale-vector' cannot: {why}")
    for key, value in ale_kwargs.items():
        if key in _VECTOR_KEYWORDS or (key in _VECTOR_DEFAULTS and value == _VECTOR_DEFAULTS[key]):
            continue
        raise ValueError(
            f"emulator='ale-vector' cannot take the ALE keyword {key}={value!r} (ale_py's AtariVectorEnv "
            f"takes {', '.join(sorted(_VECTOR_KEYWORDS))}); use emulator='python'"
        )
    frameskip = ale_kwargs.get("frameskip", 4)
    if isinstance(frameskip, bool) or not isinstance(frameskip, int | np.integer) or frameskip < 1:
        raise ValueError(
            "emulator='ale-vector' takes frameskip as an int >= 1 (no stochastic (low, high) "
            f"frameskip), got {type(frameskip).__name__} {frameskip!r}"
        )
    if game.flicker and frameskip < 2:
        raise ValueError(
            f"{game.name} is a flicker game: its frame is the maximum of the last two, which "
            "emulator='ale-vector' pools within one step only; it needs frameskip >= 2, got "
            f"{frameskip}; use emulator='python'"
        )
    check_max_episode_steps(ale_kwargs.get("max_episode_steps"))
    if emulator_threads is not None and (
        isinstance(emulator_threads, bool)
        or not isinstance(emulator_threads, int | np.integer)
        or emulator_threads < 1
    ):
        raise ValueError(
            f"emulator_threads must be None (one per env, at most one per core) or an int >= 1, "
            f"got {type(emulator_threads).__name__} {emulator_threads!r}"
        )
    return name


def _check_ale_py() -> None:
    """ale-py 0.12.1 or later: earlier vector envs reset wrong rows on a partial reset."""
    from importlib.metadata import version

    from moc_envs.errors import MissingDependencyError

    installed = version("ale-py")
    parts = tuple(int(p) if p.isdigit() else 0 for p in installed.split("+")[0].split(".")[:3])
    if parts < (0, 12, 1):
        raise MissingDependencyError(
            f"emulator='ale-vector' needs ale-py >= 0.12.1 (its AtariVectorEnv, with working partial "
            f"resets), got ale-py {installed}: pip install -U ale-py"
        )


class PythonEmulators:
    """The N games as N ALE v5 envs (:func:`make_ale_env`), stepped one after the other here."""

    name: EmulatorName = "python"

    def __init__(self, game: GameSpec, num_envs: int, ale_kwargs: dict[str, Any]) -> None:
        self.envs: list[gym.Env] = []
        try:
            for _ in range(num_envs):
                self.envs.append(make_ale_env(game, **ale_kwargs))
        except Exception:
            self.close()
            raise
        self._ales = [env.unwrapped.ale for env in self.envs]  # type: ignore[attr-defined]
        self._frame_sources = [frame_source(env) for env in self.envs]
        self.single_action_space = self.envs[0].action_space

    def reset(
        self, rows: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> dict[int, dict[str, Any]]:
        """Reset env ``rows`` (``seeds`` in the same order); each one's info."""
        return {i: dict(self.envs[i].reset(seed=s, options=options)[1]) for i, s in zip(rows, seeds, strict=True)}

    def step(
        self, actions: Any, resets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step every env, or reset those of ``resets`` (their action ignored, reward 0, flags
        False); rewards, terminations, truncations and infos."""
        n = len(self.envs)
        rewards, terms, truncs = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        infos: list[dict[str, Any]] = []
        for i, env in enumerate(self.envs):
            if resets[i]:
                infos.append(dict(env.reset()[1]))
                continue
            _, r, term, trunc, info = env.step(actions[i])
            rewards[i], terms[i], truncs[i] = float(r), bool(term), bool(trunc)
            infos.append(dict(info))
        return rewards, terms, truncs, infos

    def frames(self, rows: list[int]) -> np.ndarray:
        """The current frames (len(rows), 210, 160, 3) uint8 of env ``rows``."""
        return np.stack([self._frame_sources[i]() for i in rows])

    def rams(self, rows: list[int]) -> np.ndarray | None:
        """The RAMs (len(rows), 128) uint8 of env ``rows``."""
        return np.stack([self._ales[i].getRAM() for i in rows])

    def close(self) -> None:
        """Close the N ALE envs."""
        for env in self.envs:
            env.close()


@cache
def _screen_dims(rom: str) -> tuple[int, int]:
    """The emulator screen's (height, width) of ``rom``: the vector env resizes anything else."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(ale_py.roms.get_rom_path(rom))
    height, width = ale.getScreenDims()
    return int(height), int(width)


def _ale_seed(seed: int | None) -> tuple[tuple[int, int], int]:
    """ALE v5's seeds for a reset with ``seed`` (fresh entropy for None): (np seed, ALE seed) as
    ``AtariEnv.seed_game`` derives them, and the seed the vector env can take."""
    np_seed, ale_seed = np.random.SeedSequence(seed).generate_state(n_words=2)
    return (int(np_seed), int(ale_seed) & _SEED_MASK), int(ale_seed) & _SEED_MASK


class ALEVectorEmulators:
    """The N games in one :class:`ale_py.vector_env.AtariVectorEnv` (see the module docstring).

    ``threads``: the vector env's threads (None: one per env, at most one per core).
    """

    name: EmulatorName = "ale-vector"

    def __init__(
        self, game: GameSpec, num_envs: int, ale_kwargs: dict[str, Any], threads: int | None = None
    ) -> None:
        import ale_py
        from ale_py.vector_env import AtariVectorEnv

        gym.register_envs(ale_py)
        registered = dict(gym.spec(game.ale_id).kwargs)  # ALE v5's defaults, as gym.make uses them
        rom = str(registered.pop("game"))
        kw = {**registered, **ale_kwargs}
        frameskip = int(kw.get("frameskip", 4))
        budget = kw.get("max_num_frames_per_episode") or _NO_LIMIT
        if kw.get("max_episode_steps") is not None:
            budget = min(budget, int(kw["max_episode_steps"]) * frameskip)
        height, width = _screen_dims(rom)
        self.envs: list[gym.Env] = []  # no per-env gym env: all N live inside the vector env
        self.num_envs = int(num_envs)
        self._venv = AtariVectorEnv(
            rom, self.num_envs, num_threads=int(threads or 0), max_num_frames_per_episode=int(budget),
            repeat_action_probability=float(kw.get("repeat_action_probability", 0.25)),
            full_action_space=bool(kw.get("full_action_space", False)), autoreset_mode="NextStep",
            img_height=height, img_width=width, grayscale=False, stack_num=1, frameskip=frameskip,
            maxpool=game.flicker, noop_max=0, use_fire_reset=False, episodic_life=False,
            life_loss_info=False, reward_clipping=False,
        )  # fmt: skip
        self.single_action_space = self._venv.single_action_space
        self._frames: np.ndarray | None = None
        self._seeded = np.zeros(self.num_envs, dtype=bool)

    def _keep(self, obs: np.ndarray) -> None:
        # (N, 1, H, W, 3) -> (N, 210, 160, 3); taller screens (Carnival) lose their bottom rows.
        self._frames = np.ascontiguousarray(obs[:, 0, :FRAME_HEIGHT])

    @staticmethod
    def _infos(info: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        # AtariEnv's info keys, as Python ints.
        return {key: int(info[key][i]) for key in ("lives", "episode_frame_number", "frame_number")}

    def reset(
        self, rows: list[int], seeds: list[int | None], options: dict[str, Any] | None
    ) -> dict[int, dict[str, Any]]:
        """Reset env ``rows`` with ``seeds`` (ALE v5's seeding; ``options`` are ignored, as ALE
        v5 ignores them); each one's info, with ``"seeds"`` where seeded, as ALE v5 gives it."""
        if len(rows) != self.num_envs and self._frames is None:
            raise ValueError(
                f"emulator='ale-vector': the first reset() must reset every env (ale_py's vector env "
                f"has no frame before that), got a reset_mask for {len(rows)} of {self.num_envs}"
            )
        given: list[int] = []
        used: dict[int, tuple[int, int]] = {}
        # The vector env takes the seeds in the order of the rows.
        for i, seed in sorted(zip(rows, seeds, strict=True), key=lambda pair: pair[0]):
            if seed is None and self._seeded[i]:
                given.append(-1)  # continue the env's random stream, as ALE v5's reset() does
                continue
            pair, ale_seed = _ale_seed(seed)
            given.append(ale_seed)
            self._seeded[i] = True
            if seed is not None:
                used[i] = pair
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[rows] = True
        obs, info = self._venv.reset(seed=np.asarray(given, dtype=np.int64), options={"reset_mask": mask})
        self._keep(obs)
        out = {i: self._infos(info, i) for i in rows}
        for i, pair in used.items():
            out[i]["seeds"] = pair
        return out

    def step(
        self, actions: Any, resets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step every env in one call; the envs of ``resets`` (the ones whose episode ended the
        step before, which the vector env resets by itself) come back reset."""
        obs, rewards, terms, truncs, info = self._venv.step(np.asarray(actions, dtype=np.int64))
        self._keep(obs)
        return (
            rewards.astype(np.float64),
            terms.astype(bool),
            truncs.astype(bool),
            [self._infos(info, i) for i in range(self.num_envs)],
        )

    def frames(self, rows: list[int]) -> np.ndarray:
        """The current frames (len(rows), 210, 160, 3) uint8 of env ``rows`` (a copy)."""
        if self._frames is None:
            raise RuntimeError("emulator='ale-vector' has no frames before the first reset()")
        return self._frames[rows]

    def rams(self, rows: list[int]) -> np.ndarray | None:
        """None: ale_py's vector env exposes no RAM."""
        return None

    def close(self) -> None:
        """Stop the vector env's threads."""
        venv, self._venv = self._venv, None
        if venv is not None:
            venv.close()
            venv.ale = None  # the C++ object joins its threads when the last reference goes


def make_emulators(
    emulator: EmulatorName, game: GameSpec, num_envs: int, ale_kwargs: dict[str, Any], threads: int | None = None
) -> PythonEmulators | ALEVectorEmulators:
    """The backend ``emulator`` for ``num_envs`` games (arguments checked by :func:`check_emulator_arguments`)."""
    if emulator == "ale-vector":
        return ALEVectorEmulators(game, num_envs, ale_kwargs, threads)
    return PythonEmulators(game, num_envs, ale_kwargs)
