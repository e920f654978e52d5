"""The immutable SPACE model configuration, saved into ``config.json`` at export.

Defaults follow the SPACE/MOC Atari settings (../shared/spec/space-moc.md, sections 2-4)
except where marked **ours**: a 16x16 glimpse instead of 32x32 (Atari objects are at most
about 15 px at 128x128, so 32x32 glimpses only up-sample them) and top-K glimpse decoding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["IMAGE_ENCODERS", "SIZE_LIMITS", "FLOAT_LIMITS", "ModelConfig"]

IMAGE_ENCODERS = ("space", "lean")
"""Encoder architectures a config can name for its image and glimpse encoders
(:func:`moc_envs.model.encoder.make_image_encoder`, :func:`~moc_envs.model.encoder.make_glimpse_encoder`)."""

INT_FIELDS = ("img_size", "grid", "glimpse", "z_what_dim", "top_k", "bg_components", "bg_z_dim")
FLOAT_FIELDS = ("fg_sigma", "bg_sigma", "tau", "pres_squash")
STR_FIELDS = ("image_encoder", "glimpse_encoder")

SIZE_LIMITS: dict[str, tuple[int, int]] = {"z_what_dim": (1, 1024), "bg_components": (1, 16), "bg_z_dim": (1, 1024)}
"""Inclusive ranges of the free layer sizes. A config comes from ``config.json``, which anyone
can edit (the manifest is no signature): without a bound, ``z_what_dim: 3000000`` made the
model allocate gigabytes before the weights' shapes were compared. Ours are 32, 3 and 32."""

FLOAT_LIMITS: dict[str, float] = {"fg_sigma": 10.0, "bg_sigma": 10.0, "tau": 100.0, "pres_squash": 100.0}
"""Upper bounds of the float settings, each a number in (0, bound]: a NaN ``pres_squash`` made
every z_pres probability NaN and the detector silently found nothing."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape and likelihood settings of one SPACE model. Immutable: one per trained detector."""

    img_size: int = 128
    """Side of the square RGB model input."""
    grid: int = 16
    """G: the foreground grid is G x G cells (8 px each at 128 px)."""
    glimpse: int = 16
    """Side of a glimpse in pixels (ours: 16, the references used 32)."""
    z_what_dim: int = 32
    """Size of the appearance latent of an object."""
    top_k: int = 8
    """Glimpses decoded per frame during training: the K cells with the highest z_pres."""
    bg_components: int = 3
    """K of the GENESIS-style background (3 for most Atari games, 4 for Riverraid)."""
    bg_z_dim: int = 32
    """Size of the background mask and component latents."""
    fg_sigma: float = 0.2
    """Standard deviation of the foreground pixel likelihood."""
    bg_sigma: float = 0.1
    """Standard deviation of the background pixel likelihood."""
    tau: float = 2.5
    """Temperature of the relaxed Bernoulli z_pres sample."""
    pres_squash: float = 8.8
    """z_pres logits are squashed as pres_squash * tanh(raw)."""
    image_encoder: str = "space"
    """``"space"``: SPACE's image encoder; ``"lean"``: :mod:`moc_envs.model.lean` (**ours**,
    about 100x fewer multiply-adds, distilled from a trained ``"space"`` encoder). Configs
    written before this field existed hold SPACE's encoder and load as ``"space"``."""
    glimpse_encoder: str = "space"
    """``"space"``: SPACE's convolutional glimpse encoder; ``"lean"``: one hidden layer (**ours**,
    distilled to reproduce a ``"space"`` glimpse encoder's z_what)."""

    def __post_init__(self) -> None:
        """Refuse wrong types (TypeError) and out-of-range values (ValueError), naming the field."""
        for name in INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
            if not (math.isfinite(value) and 0.0 < value <= FLOAT_LIMITS[name]):
                raise ValueError(f"{name} must be a finite number in (0, {FLOAT_LIMITS[name]:g}], got {value!r}")
        for name in STR_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__} {value!r}")
        for name, (low, high) in SIZE_LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
        if self.img_size != 128:
            raise ValueError(f"img_size must be 128 (the backbone's strides assume it), got {self.img_size}")
        if self.grid != 16:
            raise ValueError(f"grid must be 16 (backbone output at 128 px input), got {self.grid}")
        if self.img_size % self.grid:
            raise ValueError(f"img_size {self.img_size} must be a multiple of grid {self.grid}")
        for name in ("image_encoder", "glimpse_encoder"):
            value = getattr(self, name)
            if value not in IMAGE_ENCODERS:
                raise ValueError(f"{name} must be one of {', '.join(IMAGE_ENCODERS)}, got {value!r}")
        if self.glimpse not in (16, 32):
            raise ValueError(f"glimpse must be 16 or 32, got {self.glimpse}")
        if not 1 <= self.top_k <= self.grid * self.grid:
            raise ValueError(f"top_k must be in [1, {self.grid * self.grid}], got {self.top_k}")

    @property
    def n_cells(self) -> int:
        """Number of foreground cells, G * G."""
        return self.grid * self.grid

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)
