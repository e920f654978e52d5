"""The learned SPACE+MOC detector the env runs on every step.

:class:`SpaceDetector` loads ``weights/<Game>/detector.safetensors`` + ``config.json`` (written
by ``moc-envs export``), runs the light inference encoder on a batch of frames and
returns one list of :class:`moc_envs.perception.detection.Detection` per frame: boxes in 210x160 frame
pixels (top-left), score = z_pres probability, z_what attached. Posterior means only, cells with
z_pres probability above 0.5, no larger than the game's ``max_box`` when config.json gives one,
then one box per object, each tightened to its object's pixels
(:mod:`moc_envs.perception.postprocess`; ``"refine_boxes": false`` in config.json keeps SPACE's loose boxes)
and the category names of the folder's z_what classifier (:mod:`moc_envs.perception.classifier`; required
unless ``allow_unclassified=True``). Every file is read through the folder's verified
``manifest.json`` (:mod:`moc_envs.weights.manifest`), and only safetensors and JSON are read.
Importing this module imports torch; ``import moc_envs`` does not.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moc_envs.device import DEFAULT_RUNTIME, Runtime, check_runtime
from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.games import GameSpec
from moc_envs.hud.reader import HudReader, read_hud
from moc_envs.kernels import boxes as box_kernels
from moc_envs.kernels.glimpses import crop as crop_glimpses
from moc_envs.kernels.resize import resize_unit
from moc_envs.model.config import ModelConfig
from moc_envs.model.decode_np import LeanGlimpseKernel, decode_cells
from moc_envs.model.encoder import SpaceEncoder
from moc_envs.model.geometry import FRAME_H, FRAME_W, where_to_boxes
from moc_envs.model.runtime import RawEncoder, frozen_encoder, onnxruntime_encoder
from moc_envs.perception.classifier import (
    CLASSIFIER_FILE,
    LEGACY_CLASSIFIER_FILE,
    ZWhatClassifier,
    load_classifier,
    read_classifier,
    refit_command,
)
from moc_envs.perception.detection import Detection, validate_frames, validate_rams
from moc_envs.perception.distractors import BarFilter, read_background
from moc_envs.perception.labels import read_label_offsets
from moc_envs.perception.postprocess import (
    DEFAULT_SUPPRESSION,
    SuppressionConfig,
    size_mask,
    unpack_colours,
)
from moc_envs.perception.preprocess import MODEL_SIZE, resize_frames
from moc_envs.readouts.registry import ReadoutSet, read_readouts
from moc_envs.threads import check_threads, torch_threads
from moc_envs.weights.manifest import safetensors_metadata, verify_folder

__all__ = ["WEIGHTS_FILE", "CONFIG_FILE", "FORMAT", "read_max_box", "SpaceDetector"]

WEIGHTS_FILE = "detector.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "moc_envs.space_detector/1"
"""Format tag written into config.json by the exporter."""

DEFAULT_CATEGORY = "object"
"""Category of every detection until a z_what classifier is shipped with the weights."""


def read_max_box(meta: dict[str, Any], source: Path | str = CONFIG_FILE) -> tuple[float, float] | None:
    """The size limit (width, height in frame pixels) of a detector config, or None without one.

    Raises CorruptWeightsError, naming ``source``, when it is not two positive numbers.
    """
    max_box = meta.get("max_box")
    if max_box is None:
        return None
    ok = (
        isinstance(max_box, list)
        and len(max_box) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in max_box)
    )
    if not ok:
        raise CorruptWeightsError(
            f"{source}: max_box must be [width, height] in frame pixels (two positive numbers), got {max_box!r}"
        )
    return float(max_box[0]), float(max_box[1])


class SpaceDetector:
    """Batched SPACE inference: frames (N, 210, 160, 3) uint8 -> N lists of detections."""

    def __init__(
        self,
        encoder: SpaceEncoder,
        game: GameSpec,
        device: str = "cpu",
        threshold: float = 0.5,
        meta: dict[str, Any] | None = None,
        classifier: ZWhatClassifier | None = None,
        suppression: SuppressionConfig | None = DEFAULT_SUPPRESSION,
        refine: bool = True,
        max_box: tuple[float, float] | None = None,
        threads: int | None = None,
        freeze: bool = True,
        label_offsets: dict[str, float] | None = None,
        drop_empty: bool = True,
        runtime: Runtime = DEFAULT_RUNTIME,
        hud: HudReader | None = None,
        readouts: ReadoutSet | None = None,
        bar_filter: BarFilter | None = None,
    ) -> None:
        """Wrap a loaded :class:`SpaceEncoder` (use :meth:`from_pretrained` to load one).

        ``classifier`` names each detection's category ("object" without one);
        ``suppression=None`` keeps every present cell (duplicates included);
        ``refine=False`` keeps the model's loose boxes instead of tightening them to the pixels;
        ``max_box`` (width, height in frame pixels) drops larger model boxes (None: no limit);
        ``threads``: torch CPU threads of the forward pass (None: one, see :mod:`moc_envs.threads`);
        ``freeze``: on the CPU, run the image encoder as an exported graph rather than eagerly
        (:mod:`moc_envs.model.runtime`: the same outputs to float rounding, less overhead per call);
        ``runtime``: what runs the image encoder on the CPU when ``freeze``: ``"onnxruntime"``
        (the default: fastest at the batches of 1 to 32 envs, see ``benchmarks/results/backends.md``),
        ``"torchscript"`` (a frozen graph) or ``"eager"``; on CUDA torch runs it eagerly;
        ``label_offsets``: offsets of the game's label links fitted for this detector's boxes
        (``labels.json``; the env applies them to ``info["labels"]``, see
        :meth:`moc_envs.games.GameSpec.with_label_offsets`);
        ``drop_empty``: drop boxes over plain background, where nothing is drawn
        (:func:`moc_envs.perception.postprocess.drawn_mask`);
        ``hud``: the weights folder's learned HUD reader (``hud.json``, :mod:`moc_envs.hud.reader`),
        whose labels the env adds to ``info["labels"]``;
        ``readouts``: the folder's fitted readouts (``readouts.json``, :mod:`moc_envs.readouts`):
        counts, identities, headings, brick walls, added to ``info["labels"]`` too;
        ``bar_filter``: paints frame-spanning bars in colours foreign to the game's background over
        with that background before anything is read (:class:`moc_envs.perception.distractors.BarFilter`,
        from the folder's ``background.safetensors``); None: frames as given.
        """
        self.threads = check_threads(threads)
        self.runtime = check_runtime(runtime)
        self.game = game
        self.device = torch.device(device)
        self.threshold = threshold
        self.meta = dict(meta or {})
        self.classifier = classifier
        self.suppression = suppression
        self.refine = refine
        self.max_box = max_box
        self.drop_empty = bool(drop_empty)
        self._samples: tuple[np.ndarray, np.ndarray | None] | None = None
        game.with_label_offsets(label_offsets or {})  # refuses unknown labels and non-finite offsets
        self.label_offsets: dict[str, float] = dict(label_offsets or {})
        self.hud = hud
        self.readouts = readouts
        self.bar_filter = bar_filter
        self._image_raw: RawEncoder | None = None
        self._glimpse_kernel: LeanGlimpseKernel | None = None
        # Set-up work runs on one torch thread: starting OpenMP's pool here would make a later
        # fork of this process hang (see from_pretrained); only detection uses self.threads.
        with torch_threads(1):
            self.encoder = encoder.to(self.device).eval().to(memory_format=torch.channels_last)
            # The lean glimpse encoder runs as two NumPy matrix products on the CPU.
            if self.device.type == "cpu" and encoder.cfg.glimpse_encoder == "lean":
                self._glimpse_kernel = LeanGlimpseKernel(self.encoder.glimpse_encoder, encoder.cfg.glimpse)
            if freeze and self.device.type == "cpu" and self.runtime != "eager":
                size = encoder.cfg.img_size
                example = torch.zeros((1, 3, size, size), device=self.device)
                example = example.contiguous(memory_format=torch.channels_last)
                if self.runtime == "onnxruntime":
                    self._image_raw = onnxruntime_encoder(self.encoder.image_encoder, example, self.threads)
                else:
                    self._image_raw = frozen_encoder(self.encoder.image_encoder, example)

    @property
    def config(self) -> ModelConfig:
        """The model configuration of the loaded weights."""
        return self.encoder.cfg

    @classmethod
    def from_pretrained(
        cls,
        path: Path,
        game: GameSpec,
        device: str = "cpu",
        allow_unclassified: bool = False,
        threads: int | None = None,
        freeze: bool = True,
        runtime: Runtime = DEFAULT_RUNTIME,
    ) -> SpaceDetector:
        """Load the detector exported to folder ``path`` for ``game``.

        Before anything is read, the folder's ``manifest.json`` is verified
        (:func:`moc_envs.weights.manifest.verify_folder`); every file is then read through it. Raises
        MissingWeightsError when a file is absent, or when the folder has no z_what classifier
        and ``allow_unclassified`` is False (the message names the command that fits one), and
        CorruptWeightsError when the manifest does not check out, or the config, the weights or
        the classifier cannot be read, are for another game or format, do not match the model
        (keys, shapes), hold non-finite values, or cannot work (a classifier filling no slot, a
        ``max_box`` smaller than one grid cell, a ``labels.json`` for another game or naming labels
        the game has no link for, a ``hud.json`` that fails :func:`moc_envs.hud.reader.read_hud`, a ``readouts.json`` that fails
        :func:`moc_envs.readouts.registry.read_readouts`).
        ``threads``, ``freeze`` and ``runtime``: see :class:`SpaceDetector`.
        """
        threads = check_threads(threads)
        runtime = check_runtime(runtime)
        path = Path(path)
        cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not os.path.lexists(p):  # a FIFO or link in its place is refused by verify_folder
                raise MissingWeightsError(f"detector file {p} is missing")
        clf_path = path / CLASSIFIER_FILE
        if not os.path.lexists(clf_path) and os.path.lexists(path / LEGACY_CLASSIFIER_FILE) and not allow_unclassified:
            # The legacy pickle is refused with its own message before the manifest check:
            # such folders predate manifests too.
            load_classifier(path, game.name)
        files = verify_folder(path, game.name)
        # What the folder holds is the verified manifest's word: a listed classifier deleted
        # after the check fails its read as corruption instead of loading a detector without one.
        has_classifier = files.holds(CLASSIFIER_FILE)
        if not has_classifier and not allow_unclassified:
            raise MissingWeightsError(
                f"{path} holds a detector for {game.name} but no z_what classifier ({CLASSIFIER_FILE}): "
                "every detection would be category 'object' and fill no observation slot. Fit one "
                f"with:\n  {refit_command(path, game.name)}\nor pass allow_unclassified=True to "
                "load the detector without categories"
            )
        meta = files.read_json(CONFIG_FILE)
        try:
            if not isinstance(meta, dict):
                raise TypeError(f"expected a JSON object, got {type(meta).__name__}")
            model_cfg = ModelConfig.from_dict(meta["model"])
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptWeightsError(f"{cfg_path} is not a valid detector config: {err}") from err
        if meta.get("format") != FORMAT:
            raise CorruptWeightsError(f"{cfg_path} has format {meta.get('format')!r}, expected {FORMAT!r}")
        saved_game = meta.get("game")
        if saved_game != game.name:
            raise CorruptWeightsError(
                f"{cfg_path} holds a detector for game '{saved_game}', not '{game.name}'"
            )
        blob = files.read_bytes(WEIGHTS_FILE)
        # The weights file carries its own tags: a detector copied in from another game's
        # folder next to this game's config.json must not load as this game's.
        tags = safetensors_metadata(blob, w_path)
        if tags.get("format") != FORMAT or tags.get("game") != game.name:
            raise CorruptWeightsError(
                f"{w_path} is tagged format {tags.get('format')!r}, game {tags.get('game')!r}; "
                f"expected format {FORMAT!r}, game {game.name!r} (as {cfg_path.name} says): "
                "a detector from another game or another exporter"
            )
        # One torch thread while loading whatever the detector's count: an op on more threads
        # starts OpenMP's worker pool, and a process that forks after that (gymnasium's async
        # vector env builds an env in the parent, then forks) hangs in its children's first
        # parallel op. Large tensor ops (the finiteness checks, copies) are parallel ops.
        with torch_threads(1):
            encoder = _load_encoder(blob, model_cfg, w_path, cfg_path)
        classifier = read_classifier(files, game.name) if has_classifier else None
        if classifier is not None and classifier.z_what_dim != model_cfg.z_what_dim:
            raise CorruptWeightsError(
                f"classifier in {path} expects z_what of size {classifier.z_what_dim}, "
                f"the detector produces {model_cfg.z_what_dim}"
            )
        refine = meta.get("refine_boxes", True)
        if not isinstance(refine, bool):
            raise CorruptWeightsError(f"{cfg_path}: refine_boxes must be true or false, got {refine!r}")
        max_box = read_max_box(meta, cfg_path)
        threshold = meta.get("pres_threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
            raise CorruptWeightsError(
                f"{cfg_path}: pres_threshold must be a number in (0, 1), got {threshold!r}"
            )
        if max_box is not None:
            cell = (FRAME_W / model_cfg.grid, FRAME_H / model_cfg.grid)
            if max_box[0] < cell[0] or max_box[1] < cell[1]:
                raise CorruptWeightsError(
                    f"{cfg_path}: max_box {max_box[0]:g} x {max_box[1]:g} px is smaller than one grid "
                    f"cell of the model ({cell[0]:g} x {cell[1]:g} px: frame {FRAME_W}x{FRAME_H} / grid "
                    f"{model_cfg.grid}) and would drop almost every box; expected at least "
                    f"{cell[0]:g} x {cell[1]:g}, got {max_box[0]:g} x {max_box[1]:g}"
                )
        offsets, hud = read_label_offsets(files, game), read_hud(files, game)
        background = read_background(files, game.name)
        taken = [*game.localization_labels, *(hud.labels if hud is not None else ())]
        return cls(
            encoder, game, device=device, threshold=float(threshold), meta=meta, classifier=classifier,
            refine=refine, max_box=max_box, threads=threads, freeze=freeze, runtime=runtime,
            label_offsets=offsets, hud=hud, readouts=read_readouts(files, game, taken),
            bar_filter=None if background is None else BarFilter(background),
        )  # fmt: skip

    def _to_input(self, frames: np.ndarray) -> torch.Tensor:
        """The encoder's input (N, 3, S, S) in [0, 1], channels-last, on the detector's device."""
        x = torch.from_numpy(resize_frames(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    def _image_channels(self, x: torch.Tensor) -> torch.Tensor:
        """The image encoder's raw head channels (N, 11, G, G), under the detector's threads."""
        with torch_threads(self.threads) if self.device.type == "cpu" else nullcontext():
            return (self._image_raw or self.encoder.image_encoder.raw)(x)

    def _cells_cpu(
        self, frames: np.ndarray, marks: list[tuple[str, float]] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Frame index, z_pres probability, z_where and box of the present cells, and the encoder's
        input images (channels-last), in NumPy after the image encoder
        (:mod:`moc_envs.model.decode_np`); ``marks``: see :meth:`detect_timed`."""
        cfg = self.encoder.cfg
        # _to_input's pixels bit for bit (resize_frames, then the float32 division) in one compiled
        # pass; channels-last memory that NumPy reads too (permute() of NHWC memory is a
        # channels-last NCHW view: no copy).
        images = resize_unit(frames, MODEL_SIZE)
        _mark(marks, "resize")
        raw = self._image_channels(torch.from_numpy(images).permute(0, 3, 1, 2)).float().numpy()
        _mark(marks, "image encoder")
        b_idx, prob, where, boxes = decode_cells(raw, cfg.pres_squash, self.threshold)
        return b_idx, prob, where, boxes, images

    def _z_what_cpu(
        self, images: np.ndarray, b_idx: np.ndarray, where: np.ndarray, marks: list[tuple[str, float]] | None = None
    ) -> np.ndarray:
        """z_what (M, D) of the cells ``b_idx``/``where`` of ``images``: glimpses cropped by the
        compiled kernel (:mod:`moc_envs.kernels.glimpses`), then the glimpse encoder under the
        detector's threads."""
        cfg = self.encoder.cfg
        glimpses = crop_glimpses(images, b_idx, where, cfg.glimpse)
        _mark(marks, "glimpses")
        if not len(b_idx):
            z_what = np.zeros((0, cfg.z_what_dim), dtype=np.float32)
        else:
            with torch_threads(self.threads):
                if self._glimpse_kernel is not None:
                    z_what = self._glimpse_kernel(glimpses)
                else:
                    z_what = self.encoder.glimpse_encoder(torch.from_numpy(glimpses).permute(0, 3, 1, 2))[0]
                    z_what = z_what.float().numpy()
        _mark(marks, "glimpse encoder")
        return z_what

    def _infer_torch(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Frame index, z_pres probability, box and z_what of every present cell, each step in torch
        on the detector's device (CUDA); the CPU path is :meth:`_cells_cpu` then :meth:`_z_what_cpu`."""
        b_idx, prob, where, z_what = self.encoder.infer(
            self._to_input(frames), self.threshold, image_raw=self._image_channels
        )
        boxes = where_to_boxes(where.float()).cpu().numpy()
        return b_idx.cpu().numpy(), prob.float().cpu().numpy(), boxes, z_what.float().cpu().numpy()

    def detect(self, frames: np.ndarray, rams: np.ndarray | None = None) -> list[list[Detection]]:
        """Detect objects in frames (N, 210, 160, 3) uint8; ``rams`` is accepted and unused."""
        return self._detect(frames, rams, None)

    def detect_timed(self, frames: np.ndarray) -> tuple[list[list[Detection]], dict[str, float]]:
        """:meth:`detect` and the wall seconds of each of its stages (the speed benchmark's profile).

        Stages on the CPU: resize, image encoder, suppression, glimpses, glimpse encoder,
        pixel-tight boxes, classifier, records (on CUDA the model's stages are one, "model",
        before the suppression).
        """
        marks: list[tuple[str, float]] = [("", time.perf_counter())]
        out = self._detect(frames, None, marks)
        stages: dict[str, float] = {}
        for (_, t0), (name, t1) in zip(marks, marks[1:], strict=False):
            stages[name] = stages.get(name, 0.0) + t1 - t0
        return out, stages

    @torch.inference_mode()
    def _detect(
        self, frames: np.ndarray, rams: np.ndarray | None, marks: list[tuple[str, float]] | None
    ) -> list[list[Detection]]:
        frames = validate_frames(frames)
        validate_rams(rams, frames.shape[0])
        if self.bar_filter is not None:
            frames = self.bar_filter(frames)
        n = frames.shape[0]
        if n == 0:
            return []
        cpu = self.device.type == "cpu"
        if cpu:
            b_idx, prob, where, boxes, images = self._cells_cpu(frames, marks)
        else:
            b_idx, prob, boxes, z_all = self._infer_torch(frames)
            _mark(marks, "model")
        keep = np.flatnonzero(size_mask(boxes, self.max_box))
        # Compiled loops (moc_envs.kernels): exactly the NumPy references of
        # moc_envs.perception.postprocess, at a fraction of their fixed cost per call.
        if self.suppression is not None and len(keep):
            cfg = self.suppression
            keep = keep[box_kernels.suppress(boxes[keep], prob[keep], b_idx[keep], cfg.iou_threshold, cfg.centre_fraction)]
        if self.drop_empty and len(keep):
            keep = keep[box_kernels.drawn(frames, boxes[keep], b_idx[keep])]
        _mark(marks, "suppression")
        # Suppression needs only the boxes and scores, so on the CPU only the kept cells' glimpses
        # are cropped and encoded: duplicate and oversized cells cost no glimpse.
        z_what = self._z_what_cpu(images, b_idx[keep], where[keep], marks) if cpu else z_all[keep]
        # A classifier reading box sizes was fitted on the model's boxes, not the tightened ones.
        model_sizes = boxes[keep, 2:4].copy()
        colours = None
        # Samples for a classifier fit (detect_samples) need the colours whatever this one reads.
        want_samples = self._samples is not None
        want_colours = (self.classifier is not None and self.classifier.uses_colours) or want_samples
        if len(keep) and (want_colours or self.refine):
            refined, packed = box_kernels.refine(frames, boxes[keep], b_idx[keep])
            if self.refine:
                boxes[keep] = refined
            if want_colours:
                colours = unpack_colours(packed)
        _mark(marks, "pixel-tight boxes")
        # No detection (a black frame at reset): nothing to name, and no colours were read.
        cats = (
            self.classifier.within_extents(self.classifier.predict(z_what, model_sizes, colours), boxes[keep])
            if self.classifier is not None and len(keep)
            else [DEFAULT_CATEGORY] * len(keep)
        )
        _mark(marks, "classifier")
        out: list[list[Detection]] = [[] for _ in range(n)]
        # Python floats of the float32 boxes and scores, converted once for the batch.
        rows = zip(b_idx[keep].tolist(), boxes[keep].tolist(), prob[keep].tolist(), cats, strict=True)
        for k, (f, (x, y, w, h), score, cat) in enumerate(rows):
            out[f].append(Detection(cat, x, y, w, h, score=score, z_what=z_what[k]))
        _mark(marks, "records")
        if want_samples:
            order = np.argsort(b_idx[keep], kind="stable")  # the detections' order: frame by frame
            self._samples = (model_sizes[order], None if colours is None else colours[order])
        return out

    def detect_samples(self, frames: np.ndarray) -> tuple[list[list[Detection]], np.ndarray, np.ndarray]:
        """:meth:`detect`, and per detection (frame by frame, in order) the model box's width and
        height (M, 2) and the object's RGB colour (M, 3): what a classifier reading sizes or colours
        is fitted on (``moc-envs classifier --from-play``)."""
        self._samples = (np.zeros((0, 2)), None)
        try:
            dets = self._detect(frames, None, None)
            sizes, colours = self._samples
        finally:
            self._samples = None
        if colours is None:
            colours = np.zeros((len(sizes), 3), np.uint8)
        return dets, sizes, colours


def _load_encoder(blob: bytes, cfg: ModelConfig, w_path: Path, cfg_path: Path) -> SpaceEncoder:
    """The :class:`SpaceEncoder` of ``cfg`` with the weights of safetensors ``blob``.

    Every tensor's name and shape is compared with the model's before the model is built (its
    shapes come from a copy on torch's meta device, which allocates nothing), so a config that
    disagrees with the weights costs no memory beyond the file's. CorruptWeightsError names the
    file, the tensors and the config's sizes when they disagree or a value is not finite.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(blob)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CorruptWeightsError(f"{w_path} is not a readable safetensors file: {err}") from err
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SpaceEncoder(cfg).state_dict().items()}
    sizes = (
        f"({cfg_path.name} model: z_what_dim {cfg.z_what_dim}, glimpse {cfg.glimpse}, image_encoder "
        f"{cfg.image_encoder!r}, glimpse_encoder {cfg.glimpse_encoder!r})"
    )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CorruptWeightsError(
            f"{w_path} does not match the detector model {sizes}: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    bad = [
        f"{k}: file {tuple(state[k].shape)} vs model {shape}"
        for k, shape in expected.items()
        if tuple(state[k].shape) != shape
    ]
    if bad:
        raise CorruptWeightsError(f"{w_path} has tensors of the wrong shape {sizes}: {'; '.join(bad[:5])}")
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if non_finite:
        raise CorruptWeightsError(f"{w_path} holds non-finite values in {non_finite[:5]}")
    encoder = SpaceEncoder(cfg)
    encoder.load_state_dict(state)
    return encoder


def _mark(marks: list[tuple[str, float]] | None, stage: str) -> None:
    """Note the end of ``stage`` when timing (:meth:`SpaceDetector.detect_timed`)."""
    if marks is not None:
        marks.append((stage, time.perf_counter()))
