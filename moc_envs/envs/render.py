"""Drawing detections on frames: boxes, category names and slot ids."""

from __future__ import annotations

import colorsys
import os
import sys
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moc_envs.perception.detection import Detection

__all__ = ["category_color", "display_problem", "draw_objects", "open_window"]

_HEADLESS_ADVICE = (
    "On a headless machine use render_mode='rgb_array' and save the frames env.render() returns "
    "(e.g. as a GIF)."
)

_HEADLESS_DRIVERS = frozenset({"dummy", "offscreen"})
"""SDL video drivers that draw nowhere a person can see."""

_WINDOWED_DRIVERS = frozenset({"x11", "wayland"})
"""SDL video drivers that need a display server (DISPLAY / WAYLAND_DISPLAY) on Linux."""


def category_color(category: str) -> tuple[int, int, int]:
    """A bright RGB colour that is stable for a category name across runs."""
    hue = (zlib.crc32(category.encode()) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def display_problem(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """Why a pygame window would show nothing here, or None when a display looks available.

    SDL_VIDEODRIVER=dummy/offscreen draws nowhere; on Linux without an explicit
    non-windowed driver (kmsdrm, ...) a window needs DISPLAY (X11) or WAYLAND_DISPLAY.
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    drivers = [d.strip().lower() for d in env.get("SDL_VIDEODRIVER", "").split(",") if d.strip()]
    if drivers and all(d in _HEADLESS_DRIVERS for d in drivers):
        return f"SDL_VIDEODRIVER={env['SDL_VIDEODRIVER']} draws no window"
    windowed = not drivers or all(d in _WINDOWED_DRIVERS for d in drivers)
    if plat.startswith("linux") and windowed:
        if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            return "there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    return None


def open_window(width: int, height: int, caption: str) -> Any:
    """Open the pygame window of ``render_mode="human"`` and return its surface.

    Called at the first frame a human-mode env shows (its first reset or render), never at
    construction: Gymnasium's ``check_env`` and ``env.spec.make(render_mode="human")`` build
    envs in every declared render mode, on headless machines too. Where SDL cannot open a
    window at all (``SDL_VIDEODRIVER=x11`` without an X server, no usable video driver) this
    raises ValueError naming SDL's reason and the headless alternative. Where SDL opens one
    that nobody can see (the ``dummy`` or ``offscreen`` driver, which SDL also falls back to
    on a Linux machine without DISPLAY or WAYLAND_DISPLAY) it warns once and the env runs on,
    as ALE's own human mode does.
    """
    try:
        import pygame
    except ImportError as err:  # pragma: no cover - pygame comes with ocatari
        import gymnasium as gym

        raise gym.error.DependencyNotInstalled(
            "render_mode='human' needs pygame: pip install pygame"
        ) from err
    problem = display_problem()
    try:
        pygame.display.init()
        pygame.display.set_caption(caption)
        window = pygame.display.set_mode((width, height))
    except pygame.error as err:
        pygame.display.quit()
        why = f" ({problem})" if problem is not None else ""
        raise ValueError(
            f"render_mode='human' cannot open a window: SDL says {str(err)!r}{why}. "
            f"{_HEADLESS_ADVICE}"
        ) from None
    if problem is not None:
        warnings.warn(
            f"render_mode='human' shows nothing here: {problem}, so SDL draws to its "
            f"{pygame.display.get_driver()!r} driver. {_HEADLESS_ADVICE}",
            UserWarning,
            stacklevel=2,
        )
    return window


def draw_objects(frame: np.ndarray, objects: Sequence[Detection], scale: int = 3) -> np.ndarray:
    """Return a copy of an RGB frame, enlarged ``scale`` times, with every object boxed.

    Each box is labelled ``category#slot`` (``category`` alone for unslotted
    detections).
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    import cv2  # only rendering needs OpenCV; keep it off `import moc_envs`

    h, w = frame.shape[:2]
    img = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    for det in objects:
        color = category_color(det.category)
        x0, y0 = int(round(det.x * scale)), int(round(det.y * scale))
        x1, y1 = int(round((det.x + det.w) * scale)) - 1, int(round((det.y + det.h) * scale)) - 1
        cv2.rectangle(img, (x0, y0), (max(x1, x0), max(y1, y0)), color, 1)
        text = det.category if det.slot < 0 else f"{det.category}#{det.slot}"
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        tx = max(0, min(x0, img.shape[1] - tw))  # keep the label inside the image
        ty = y0 - 3 if y0 > 12 else y1 + 11
        cv2.putText(img, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
    return img
