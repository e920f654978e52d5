"""The SPACE+MOC model: configuration, inference encoder and the full training model.

Importing this subpackage imports torch; ``import moc_envs`` does not import it.
"""

from __future__ import annotations

from moc_envs.model.background import BackgroundModule, gaussian_kl
from moc_envs.model.config import ModelConfig
from moc_envs.model.decoder import GlimpseDecoder, composite
from moc_envs.model.encoder import CellLatents, GlimpseEncoder, ImageEncoder, SpaceEncoder
from moc_envs.model.geometry import (
    boxes_to_where,
    crop_glimpses,
    crop_glimpses_grouped,
    crop_present_glimpses,
    latents_to_where,
    paste_glimpses,
    where_to_boxes,
)
from moc_envs.model.space import SpaceModel, SpaceOutput

__all__ = [
    "ModelConfig",
    "CellLatents",
    "ImageEncoder",
    "GlimpseEncoder",
    "SpaceEncoder",
    "GlimpseDecoder",
    "composite",
    "BackgroundModule",
    "gaussian_kl",
    "SpaceModel",
    "SpaceOutput",
    "boxes_to_where",
    "where_to_boxes",
    "crop_glimpses",
    "crop_glimpses_grouped",
    "crop_present_glimpses",
    "paste_glimpses",
    "latents_to_where",
]
