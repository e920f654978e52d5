"""ObjectCentricWrapper: an ALE env whose observation is the objects a detector finds."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from moc_envs.detection import FRAME_HEIGHT, Detection, Detector
from moc_envs.detectors import DetectorName, make_detector
from moc_envs.errors import UnknownGameError
from moc_envs.games import GAMES, GameSpec, game_names, get_game
from moc_envs.observation import ObjectObservationBuilder, check_obs_mode, observation_space
from moc_envs.render import draw_objects

__all__ = ["ObjectCentricWrapper", "game_of_env", "screen_of"]

RENDER_SCALE = 3
"""render() enlarges the 210x160 frame this many times so that the labels are legible."""


def screen_of(ale: Any) -> np.ndarray:
    """The RGB frame (210, 160, 3) uint8 a detector gets from an ALE interface.

    Taller screens (Carnival, 214 rows) lose their static bottom rows, which
    keeps OCAtari's coordinates. Shared by the wrapper and the vector env.
    """
    return np.ascontiguousarray(ale.getScreenRGB()[:FRAME_HEIGHT])


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
            to the inner env's.
        max_distance: tracking gate in pixels.
        max_age: steps a lost object's slot is kept for it.
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
    ) -> None:
        # Recorded so that env.spec can rebuild the stack. A detector object is
        # kept by reference: deep-copying a model (as the recorder would) is
        # costly or impossible. render_mode is left out, as gymnasium does for
        # its own wrappers: `env.spec.make(render_mode=...)` must be free to change it.
        gym.utils.RecordConstructorArgs.__init__(
            self,
            detector=detector if isinstance(detector, str) else None,
            game=game.name if isinstance(game, GameSpec) else game,
            obs_mode=obs_mode,
            ram_labels=ram_labels,
            device=device,
            max_distance=max_distance,
            max_age=max_age,
        )
        self._saved_kwargs["detector"] = detector
        gym.Wrapper.__init__(self, env)
        check_obs_mode(obs_mode)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"Unknown render_mode {render_mode!r}; expected one of "
                f"{', '.join(self.metadata['render_modes'])} or None"
            )
        self.game = get_game(game) if isinstance(game, str) else (game or game_of_env(env))
        self.ale = getattr(env.unwrapped, "ale", None)
        if self.ale is None:
            raise TypeError(
                f"ObjectCentricWrapper reads frames and RAM from env.unwrapped.ale; "
                f"{type(env.unwrapped).__name__} has none"
            )
        self.detector = make_detector(detector, self.game, device)
        self.builder = ObjectObservationBuilder(
            self.game, obs_mode, ram_labels, max_distance=max_distance, max_age=max_age
        )
        self.observation_space = observation_space(self.game, obs_mode)
        self._render_mode = render_mode if render_mode is not None else env.render_mode
        self._frame: np.ndarray | None = None
        self._window: Any = None

    @property
    def render_mode(self) -> str | None:
        """How render() shows the annotated frame: ``"rgb_array"``, ``"human"`` or None."""
        return self._render_mode

    @property
    def objects(self) -> list[Detection]:
        """The latest step's detections with slots."""
        return self.builder.objects

    def _screen(self) -> np.ndarray:
        return screen_of(self.ale)

    def _observe(self) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, object]]:
        frame = self._screen()
        ram = self.ale.getRAM()
        detections = self.detector.detect(frame[None], ram[None])[0]
        self._frame = frame
        obs, extra = self.builder.update(detections, frame=frame, ram=ram)
        if self._render_mode == "human":
            self._show()
        return obs, extra

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, Any]]:
        """Reset the game, the tracker and the detector's per-env state."""
        _, info = self.env.reset(seed=seed, options=options)
        self.builder.reset()
        reset = getattr(self.detector, "reset", None)
        if callable(reset):
            reset(0)
        obs, extra = self._observe()
        info.update(extra)
        return obs, info

    def step(
        self, action: Any
    ) -> tuple[np.ndarray | dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the game and observe the objects of the new frame."""
        _, reward, terminated, truncated, info = self.env.step(action)
        obs, extra = self._observe()
        info.update(extra)
        return obs, reward, terminated, truncated, info

    def annotated_frame(self) -> np.ndarray:
        """The latest frame, enlarged, with boxes, categories and slot ids drawn."""
        frame = self._frame if self._frame is not None else self._screen()
        return draw_objects(frame, self.builder.objects, scale=RENDER_SCALE)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """Return (``rgb_array``) or show (``human``) the annotated frame."""
        if self._render_mode == "rgb_array":
            return self.annotated_frame()
        if self._render_mode == "human":
            self._show()
        return None

    def _show(self) -> None:
        try:
            import pygame
        except ImportError as err:  # pragma: no cover - pygame comes with ocatari
            raise gym.error.DependencyNotInstalled(
                "render_mode='human' needs pygame: pip install pygame"
            ) from err
        img = self.annotated_frame()
        if self._window is None:
            pygame.display.init()
            pygame.display.set_caption(f"moc_envs {self.game.name}")
            self._window = pygame.display.set_mode((img.shape[1], img.shape[0]))
        surface = pygame.surfarray.make_surface(np.transpose(img, (1, 0, 2)))
        self._window.blit(surface, (0, 0))
        pygame.event.pump()
        pygame.display.flip()

    def close(self) -> None:
        """Close the window (human mode) and the inner env."""
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
        super().close()
