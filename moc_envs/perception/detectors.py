"""The one place that turns a ``detector=`` argument into a detector object."""

from __future__ import annotations

import os
from typing import Literal

from moc_envs.device import DEFAULT_RUNTIME, Runtime, check_runtime, resolve_device
from moc_envs.games import GameSpec, get_game
from moc_envs.perception.detection import Detector
from moc_envs.threads import check_threads
from moc_envs.weights.search import check_weights_argument, require_weights

__all__ = ["DetectorName", "label_spec", "make_detector"]

DetectorName = Literal["space", "ram"]


def make_detector(
    detector: DetectorName | Detector,
    game: str | GameSpec,
    device: str = "auto",
    weights: str | os.PathLike[str] | None = None,
    allow_unclassified: bool = False,
    threads: int | None = None,
    runtime: Runtime = DEFAULT_RUNTIME,
) -> Detector:
    """Build the detector for ``game``.

    ``"space"`` loads the learned SPACE+MOC detector from the game's weights folder
    (:func:`moc_envs.weights.search.require_weights`: ``weights`` — a game folder or a root holding
    ``<Game>/`` — wins, then ``$MOC_ENVS_WEIGHTS`` roots, then the bundled weights), raising
    MissingWeightsError with the training commands when there are none and
    CorruptWeightsError when the folder fails its manifest or consistency checks. A folder
    without a z_what classifier is refused unless ``allow_unclassified=True`` (every detection
    is then category "object" and fills no observation slot). ``"ram"`` builds the RAM oracle,
    and an object with a ``detect`` method is returned as it is; ``weights`` only applies to
    ``"space"``. ``threads``: torch CPU threads of the learned detector's forward pass (None:
    one; :mod:`moc_envs.threads`). ``runtime``: what runs the learned detector's image encoder
    on the CPU (``"onnxruntime"``, the default, ``"torchscript"`` or ``"eager"``;
    :mod:`moc_envs.model.runtime`); only ``"space"`` takes another than the default.
    """
    spec = game if isinstance(game, GameSpec) else get_game(game)
    threads = check_threads(threads)
    runtime = check_runtime(runtime)
    check_weights_argument(weights)  # a clear TypeError / ValueError before anything else
    if weights is not None and not (isinstance(detector, str) and detector == "space"):
        name = detector if isinstance(detector, str) else type(detector).__name__
        raise ValueError(
            f"weights={str(weights)!r} only applies to detector='space', got detector {name!r}"
        )
    if runtime != DEFAULT_RUNTIME and not (isinstance(detector, str) and detector == "space"):
        name = detector if isinstance(detector, str) else type(detector).__name__
        raise ValueError(f"runtime={runtime!r} only applies to detector='space', got detector {name!r}")
    if isinstance(detector, str):
        if detector == "ram":
            from moc_envs.perception.ram_detector import RamDetector

            return RamDetector(spec)
        if detector == "space":
            folder = require_weights(spec.name, weights)
            resolved = resolve_device(device)
            # Imported here: it pulls in torch, which `import moc_envs` must not.
            from moc_envs.perception.space_detector import SpaceDetector

            return SpaceDetector.from_pretrained(
                folder, game=spec, device=resolved, allow_unclassified=allow_unclassified,
                threads=threads, runtime=runtime,
            )  # fmt: skip
        raise ValueError(
            f"Unknown detector {detector!r}: use 'space' (learned, default), 'ram' (RAM oracle) "
            "or an object with a detect(frames, rams=None) method"
        )
    if isinstance(detector, Detector):
        return detector
    raise TypeError(
        f"detector must be 'space', 'ram' or an object with a detect(frames, rams=None) "
        f"method, got {type(detector).__name__}"
    )


def label_spec(spec: GameSpec, detector: Detector) -> GameSpec:
    """The spec whose label links ``info["labels"]`` reads for ``detector``'s boxes.

    A learned detector may carry offsets fitted for its own boxes (``label_offsets``, from its
    weights folder's ``labels.json``); the RAM oracle and detectors without them keep the game's.
    """
    offsets = getattr(detector, "label_offsets", None)
    return spec.with_label_offsets(offsets) if offsets else spec
