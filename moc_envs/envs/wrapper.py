"""ObjectCentricWrapper: an ALE env whose observation is the objects a detector finds."""

from __future__ import annotations

import copy
import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from moc_envs.device import DEFAULT_RUNTIME, Runtime
from moc_envs.envs.arguments import (
    check_action,
    check_distractors,
    check_flag,
    check_ram_device,
    check_reset,
    check_tracking,
)
from moc_envs.envs.render import draw_objects, open_window
from moc_envs.errors import ClosedEnvError, UnknownGameError
from moc_envs.games import GAMES, GameSpec, game_names, get_game
from moc_envs.hud.reader import detector_hud
from moc_envs.perception.detection import (
    Detection,
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
from moc_envs.perception.frames import frame_source, screen_of
from moc_envs.perception.observation import (
    ObjectObservationBuilder,
    check_obs_mode,
    observation_space,
)
from moc_envs.readouts.registry import detector_readouts

__all__ = ["ObjectCentricWrapper", "SharedDetectorKwargs", "game_of_env", "screen_of"]

RENDER_SCALE = 3
"""render() enlarges the 210x160 frame this many times so that the labels are legible."""


class SharedDetectorKwargs(dict[str, Any]):
    """Constructor keywords whose deep copies share the ``detector`` object instead of copying it.

    Gymnasium deep-copies an env's spec (its keywords included) whenever a wrapper's
    ``spec`` is read and when ``gym.make(spec)`` runs; a detector object may hold a model,
    a module or a lock, so copying it is costly or impossible, and a copy would not be
    the detector the user passed. Everything else is copied as usual.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedDetectorKwargs:
        """Deep copy in which a non-string ``detector`` value stays the same object."""
        detector = self.get("detector")
        if detector is not None and not isinstance(detector, str):
            memo[id(detector)] = detector
        return type(self)({copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()})


def _share_detector(spec: EnvSpec | None) -> None:
    # gym.make("MOC/...", detector=obj) stores obj in the unwrapped env's spec, which the
    # wrappers between it and us deep-copy: make those copies share the detector.
    if spec is not None and not isinstance(spec.kwargs, SharedDetectorKwargs):
        spec.kwargs = SharedDetectorKwargs(spec.kwargs)


def game_of_env(env: gym.Env) -> GameSpec:
    """The registry spec of an ALE env, from the ROM name ale-py keeps (``pong``, ``ms_pacman``)."""
    rom = getattr(env.unwrapped, "_game", None)
    if not isinstance(rom, str):
        raise TypeError(
            f"ObjectCentricWrapper needs an ALE env (ale_py.env.AtariEnv inside), got "
            f"{type(env.unwrapped).__name__}; pass game= explicitly for other envs"
        )
    key = rom.replace("_", "").lower()
    for spec in GAMES.values():
        if spec.name.lower() == key:
            return spec
    raise UnknownGameError(f"Unknown game '{rom}'. Supported: {', '.join(game_names())}.")


class ObjectCentricWrapper(
    gym.Wrapper[np.ndarray | dict[str, np.ndarray], Any, Any, Any], gym.utils.RecordConstructorArgs
):
    """Replace an ALE env's observation with the detected objects in stable slots.

    Every step the detector runs on the RGB frame (and receives the RAM, which
    only the RAM oracle reads), detections are tracked into per-category slots,
    and the observation is a float32 array (n_slots, 7): ``present, x/160,
    y/210, w/160, h/210, dx/160, dy/210`` with (x, y) the box's top-left corner
    and (dx, dy) the box centre's motion per step; empty slots are zeros.

    ``info`` gains ``"objects"`` (the step's :class:`Detection` list with slots;
    categories the game spec does not know are listed with ``slot=-1``),
    ``"labels"`` (AtariARI localisation labels estimated from the objects, RAM
    scale) and, with ``ram_labels=True``, ``"ram_labels"`` (every AtariARI label
    read from RAM, the ground truth).

    Args:
        env: an ALE env (``gym.make("ALE/Pong-v5")``); its own observation is ignored.
        detector: ``"space"`` (learned, needs weights), ``"ram"`` (RAM oracle) or
            an object with ``detect(frames, rams=None)``.
        game: the game name or spec; inferred from the ALE ROM when None.
        obs_mode: ``"objects"`` or ``"objects+frame"`` (a Dict that adds the RGB frame).
        ram_labels: add ``info["ram_labels"]``.
        device: torch device of the learned detector (``"auto"``, ``"cpu"``, ``"cuda"``).
        render_mode: ``"rgb_array"`` or ``"human"`` for annotated frames; defaults
            to the inner env's. ``"human"`` opens its window at the first reset or render:
            ValueError there if SDL cannot open one, a warning if the window it opens shows
            nothing (no display), never an error at construction
            (:func:`moc_envs.envs.render.open_window`).
        max_distance: tracking gate in pixels.
        max_age: steps a lost object's slot is kept for it.
        coast: steps a missed object stays in the observation at the box its velocity
            predicts (0: a missed object's row is zero at once); detections, objects and
            labels in ``info`` are unaffected.
        weights: the learned detector's weights, a game folder or a root holding
            ``<Game>/`` (see :func:`moc_envs.weights.search.require_weights`); ``"space"`` only.
        allow_unclassified: accept weights without a z_what classifier (every detection
            is then category ``"object"`` and fills no slot); ``"space"`` only.
        threads: torch CPU threads of the learned detector (None: one, which cannot
            oversubscribe a shared machine; see :mod:`moc_envs.threads`).
        runtime: what runs the learned detector's image encoder on the CPU:
            ``"onnxruntime"`` (default), ``"torchscript"`` (a frozen graph) or ``"eager"``
            (:mod:`moc_envs.model.runtime`); ``"space"`` only.
        distractors: ``"horizontal"``, ``"vertical"`` or ``"both"``: PermaKey's moving bars,
            redrawn at random positions every step and at reset, on the frame the detector
            sees, the ``objects+frame`` observation's frame and ``render()``; RAM, rewards and
            ``ram_labels`` are untouched (:mod:`moc_envs.perception.distractors`). None: off.
        distractor_seed: seeds the bar positions with the reset seed (None: the reset seed
            alone); ``reset(seed=s)`` reproduces them.

    The detector's output is checked every step (:func:`moc_envs.perception.detection.validate_detections`):
    malformed output raises :class:`~moc_envs.errors.DetectorOutputError`, detections with
    non-finite boxes or scores, or no area inside the frame, are dropped and counted in
    ``info["dropped_detections"]``, and boxes are clipped to the frame. A detector with
    per-env state (``reset(i)``) serves one open env at a time
    (:class:`~moc_envs.errors.DetectorInUseError`). After :meth:`close`, which frees the
    detector for other envs, ``reset``, ``step`` and ``render`` raise
    :class:`~moc_envs.errors.ClosedEnvError`.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 15}

    def __init__(
        self,
        env: gym.Env,
        detector: DetectorName | Detector = "space",
        game: str | GameSpec | None = None,
        obs_mode: str = "objects",
        ram_labels: bool = False,
        device: str = "auto",
        render_mode: str | None = None,
        max_distance: float = 40.0,
        max_age: int = 30,
        coast: int = 0,
        weights: str | os.PathLike[str] | None = None,
        allow_unclassified: bool = False,
        threads: int | None = None,
        distractors: DistractorKind | None = None,
        distractor_seed: int | None = None,
        runtime: Runtime = DEFAULT_RUNTIME,
    ) -> None:
        # Recorded so that env.spec can rebuild the stack. A detector object is
        # kept by reference (SharedDetectorKwargs): deep-copying a model (as the
        # recorder would) is costly or impossible. render_mode is left out, as gymnasium
        # does for its own wrappers: `env.spec.make(render_mode=...)` must be free to change it.
        gym.utils.RecordConstructorArgs.__init__(
            self,
            _disable_deepcopy=True,
            detector=detector,
            game=game.name if isinstance(game, GameSpec) else game,
            obs_mode=obs_mode,
            ram_labels=ram_labels,
            device=device,
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
        self._saved_kwargs = SharedDetectorKwargs(self._saved_kwargs)
        gym.Wrapper.__init__(self, env)
        self._owns_detector = False
        self._closed = False
        self._window: Any = None
        check_obs_mode(obs_mode)
        check_flag("ram_labels", ram_labels)
        check_flag("allow_unclassified", allow_unclassified)
        check_ram_device(detector, device)
        check_tracking(max_distance, max_age, coast)
        check_distractors(distractors, distractor_seed)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"Unknown render_mode {render_mode!r}; expected one of "
                f"{', '.join(self.metadata['render_modes'])} or None"
            )
        self._render_mode = render_mode if render_mode is not None else env.render_mode
        self.game = get_game(game) if isinstance(game, str) else (game or game_of_env(env))
        self.ale = getattr(env.unwrapped, "ale", None)
        if self.ale is None:
            raise TypeError(
                f"ObjectCentricWrapper reads frames and RAM from env.unwrapped.ale; "
                f"{type(env.unwrapped).__name__} has none"
            )
        # The frame the detector sees: the max of the last two emulator frames for flicker games.
        self._frame_of = frame_source(env)
        # Bars drawn on that frame (after the max of two), new positions at each step and reset.
        self._distractors = make_distractors(distractors, distractor_seed)
        self._bar_memory = BarMemory()  # bars the detector's filter paints over, from earlier frames
        self.detector = make_detector(
            detector, self.game, device, weights=weights, allow_unclassified=allow_unclassified,
            threads=threads, runtime=runtime,
        )  # fmt: skip
        self.builder = ObjectObservationBuilder(
            label_spec(self.game, self.detector), obs_mode, ram_labels, max_distance=max_distance, max_age=max_age,
                coast=coast, hud=detector_hud(self.detector),
                readouts=detector_readouts(self.detector),
                # ale_py keeps the mode it was made with (None: the ROM's default) only here.
                game_mode=getattr(env.unwrapped, "_game_mode", None),
        )
        self.observation_space = observation_space(self.game, obs_mode)
        self._frame: np.ndarray | None = None
        # Last: a failed constructor must not leave the detector claimed.
        claim_detector(self.detector, self, f"{self.game.name} ObjectCentricWrapper")
        self._owns_detector = True

    @property
    def spec(self) -> EnvSpec | None:
        """The env spec with this wrapper added; a detector object is shared, not copied."""
        if self._cached_spec is None:
            _share_detector(self.unwrapped.spec)
            spec = super().spec
            if spec is not None:
                _share_detector(spec)
                self._cached_spec = spec
        return self._cached_spec

    @property
    def render_mode(self) -> str | None:
        """How render() shows the annotated frame: ``"rgb_array"``, ``"human"`` or None."""
        return self._render_mode

    @property
    def objects(self) -> list[Detection]:
        """The latest step's detections with slots."""
        return self.builder.objects

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise ClosedEnvError(
                f"{call} on a closed {self.game.name} env: close() ended it and freed its "
                f"detector; make a new env (gym.make) to play on"
            )

    def _screen(self) -> np.ndarray:
        frame = self._frame_of()
        return frame if self._distractors is None else self._distractors.draw(frame)

    def _observe(self) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, object]]:
        frame = self._screen()
        ram = self.ale.getRAM()
        # The readouts read what the detector saw; render() shows the frame with its bars.
        seen = without_bars(self.detector, frame[None], self._bar_memory)
        found, dropped = validate_detections(
            self.detector.detect(seen, ram[None]), 1, self.detector
        )
        self._frame = frame
        obs, extra = self.builder.update(found[0], frame=seen[0], ram=ram, screen=frame)
        extra["dropped_detections"] = dropped[0]
        if self._render_mode == "human":
            self._show()
        return obs, extra

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Reset the game, the tracker and the detector's per-env state.

        ``seed``: None or a non-negative int (Python or numpy); ``options``: None or a dict.
        """
        self._check_open("reset()")
        seed = check_reset(seed, options)
        _, info = self.env.reset(seed=seed, options=options)
        if self._distractors is not None:
            self._distractors.reset(seed)
        self.builder.reset()
        self._bar_memory.reset()
        reset = getattr(self.detector, "reset", None)
        if callable(reset):
            reset(0)
        obs, extra = self._observe()
        info.update(extra)
        return obs, info

    def step(
        self, action: Any
    ) -> tuple[np.ndarray | dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the game and observe the objects of the new frame.

        ``action`` must be in the action space: an integer in range for the ALE's
        Discrete space (a numpy integer or 0-d integer array is fine); anything else
        raises TypeError / ValueError before the emulator runs.
        """
        self._check_open("step()")
        action = check_action(action, self.env.action_space)
        _, reward, terminated, truncated, info = self.env.step(action)
        if self._distractors is not None:
            self._distractors.step()
        obs, extra = self._observe()
        info.update(extra)
        return obs, reward, terminated, truncated, info

    def annotated_frame(self) -> np.ndarray:
        """The latest frame, enlarged, with boxes, categories and slot ids drawn."""
        frame = self._frame if self._frame is not None else self._screen()
        return draw_objects(frame, self.builder.objects, scale=RENDER_SCALE)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """Return (``rgb_array``) or show (``human``) the annotated frame."""
        self._check_open("render()")
        if self._render_mode == "rgb_array":
            return self.annotated_frame()
        if self._render_mode == "human":
            self._show()
        return None

    def _show(self) -> None:
        img = self.annotated_frame()
        if self._window is None:
            # Opened here, at the first frame shown, so that building a human-mode env (as
            # check_env and env.spec.make do) works on any machine.
            self._window = open_window(img.shape[1], img.shape[0], f"moc_envs {self.game.name}")
        import pygame

        surface = pygame.surfarray.make_surface(np.transpose(img, (1, 0, 2)))
        self._window.blit(surface, (0, 0))
        pygame.event.pump()
        pygame.display.flip()

    def close(self) -> None:
        """Close the window (human mode) and the inner env; free the detector for other envs.

        Closing again does nothing; any other use after close raises ClosedEnvError.
        """
        self._closed = True
        if getattr(self, "_owns_detector", False):
            release_detector(self.detector, self)
            self._owns_detector = False
        if getattr(self, "_window", None) is not None:
            import pygame

            pygame.display.quit()
            self._window = None
        super().close()
