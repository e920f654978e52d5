"""Export a trained run's inference weights for the env.

    moc-envs export runs/pong --game Pong [--out weights/Pong] [--max-box-margin 2]

Writes ``detector.safetensors`` (the inference encoder only: image encoder, heads, glimpse
encoder; no decoders, no background; tagged with the format and the game) and ``config.json``
(format tag, game, model config, training step, data info, the training config) atomically,
then refreshes the folder's ``manifest.json`` (:mod:`moc_envs.weights.manifest`). The default folder is
``<run>/weights/<Game>``, outside the source tree; ``--out weights/<Game>`` ships the detector in
the checkout. Load it with ``gym.make("MOC/<Game>-v0", weights="<run>/weights")`` or
``MOC_ENVS_WEIGHTS=<run>/weights`` once a classifier is fitted (``moc-envs classifier``).

With ``--max-box-margin M`` (> 0) config.json also gets ``max_box``: M times the 99.9th
percentile of the width and height of the training split's motion boxes, in frame pixels. The
env drops larger model boxes (:func:`moc_envs.perception.postprocess.size_mask`). It comes from motion
alone, not from labels; the margin leaves room for SPACE's loose boxes (about twice a small
object's size).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moc_envs.games import get_game
from moc_envs.model.geometry import FRAME_H, FRAME_W
from moc_envs.perception.classifier import CLASSIFIER_FILE, refit_command
from moc_envs.perception.distractors import BACKGROUND_FILE, background_bytes
from moc_envs.perception.space_detector import CONFIG_FILE, FORMAT, WEIGHTS_FILE
from moc_envs.weights.atomic import atomic_path, atomic_write_text
from moc_envs.weights.manifest import write_manifest
from trainers.data.background import dataset_background
from trainers.detector.checkpoint import (
    CHECKPOINT,
    TrainError,
    load_checkpoint,
    load_model_from_run,
)
from trainers.detector.derive import MAX_BOX_QUANTILE, max_box, motion_box_sizes

__all__ = ["MAX_BOX_QUANTILE", "default_out", "motion_max_box", "export_run", "write_detector_folder", "main"]


def motion_max_box(
    data: str | Path, margin: float, quantile: float = MAX_BOX_QUANTILE, minimum: tuple[float, float] = (0.0, 0.0)
) -> tuple[float, float]:
    """``margin`` x the ``quantile`` of the training split's motion box (width, height), frame pixels,
    at least ``minimum`` (:func:`trainers.detector.derive.max_box` on :func:`trainers.detector.derive.motion_box_sizes`)."""
    import numpy as np

    sizes = motion_box_sizes(data, "train")
    if not len(sizes):
        raise TrainError(f"{data} has no motion boxes in its train split; export without --max-box-margin")
    return max_box(sizes * np.array([FRAME_W, FRAME_H]), margin, quantile, minimum)


def default_out(run: str | Path, game: str) -> Path:
    """Where a run's export goes unless told otherwise: ``<run>/weights/<Game>``, beside the run."""
    return Path(run) / "weights" / get_game(game).name


def export_run(
    run: str | Path, game: str, out: str | Path | None = None, max_box_margin: float = 0.0, data: str | Path | None = None
) -> Path:
    """Export the latest checkpoint of ``run`` to ``out`` (default ``<run>/weights/<Game>``).

    ``max_box_margin > 0`` adds a ``max_box`` from the motion boxes of ``data`` (default: the
    dataset the run trained on). Other files of an existing ``out`` are kept and stay listed in
    its manifest; when one of them no longer matches the manifest, CorruptWeightsError is
    raised instead of recording it.
    """
    import torch

    spec = get_game(game)
    run = Path(run)
    ckpt = load_checkpoint(run / CHECKPOINT)
    trained_for = ckpt["config"].get("game")
    if trained_for != spec.name:
        raise TrainError(f"run {run} trained a detector for '{trained_for}', not '{spec.name}'")
    model = load_model_from_run(run)
    out_dir = Path(out) if out is not None else default_out(run, spec.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.encoder.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "game": spec.name,
        "model": model.cfg.to_dict(),
        "step": int(ckpt["step"]),
        "data": ckpt.get("data"),
        "train_config": ckpt["config"],
    }
    if max_box_margin > 0:
        source = data if data is not None else ckpt.get("data")
        if not source:
            raise TrainError(f"run {run} does not record its dataset; pass --data for --max-box-margin")
        # Never below one grid cell: the env refuses such a limit (it would drop nearly every box).
        cell = (FRAME_W / model.cfg.grid, FRAME_H / model.cfg.grid)
        meta["max_box"] = list(motion_max_box(source, max_box_margin, minimum=cell))
        meta["max_box_source"] = {
            "data": str(source), "quantile": MAX_BOX_QUANTILE, "margin": max_box_margin, "minimum": list(cell),
        }  # fmt: skip
    eval_path = run / "eval.json"
    if eval_path.is_file():
        e = json.loads(eval_path.read_text())
        meta["eval"] = {k: e[k] for k in ("split", "ocatari", "relative") if k in e}
    # The dataset's background image goes along: the env's bar filter reads its colours.
    extra: dict[str, bytes] = {}
    source = data if data is not None else ckpt.get("data")
    background = dataset_background(source, spec.name) if source and Path(source).is_dir() else None
    if background is not None:
        extra[BACKGROUND_FILE] = background_bytes(background, spec.name)
    return write_detector_folder(out_dir, spec.name, state, meta, extra)


def write_detector_folder(
    out_dir: Path, game: str, state: dict[str, Any], meta: dict[str, Any], extra: dict[str, bytes] | None = None
) -> Path:
    """Write a detector's weights (tagged with format and game), its config, ``extra`` files, the manifest.

    Each file is written atomically; the manifest is refreshed last, listing what was written.
    """
    from safetensors.torch import save_file

    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "game": game})
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")
    for name, data in (extra or {}).items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(data)
    write_manifest(out_dir, game, written=[WEIGHTS_FILE, CONFIG_FILE, *(extra or {})])
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point."""
    p = argparse.ArgumentParser(
        prog="moc-envs export",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="training run directory holding checkpoint.pt")
    p.add_argument("--game", required=True, help="game the run trained on, e.g. Pong")
    p.add_argument("--out", default=None, help="output folder (default: <run>/weights/<Game>; weights/<Game> ships it)")
    p.add_argument("--max-box-margin", type=float, default=0.0,
                   help="drop model boxes beyond this multiple of the motion boxes' 99.9th percentile size (0: keep all)")
    p.add_argument("--data", default=None, help="dataset for --max-box-margin (default: the run's)")
    args = p.parse_args(argv)
    out = export_run(args.run, args.game, args.out, args.max_box_margin, args.data)
    size = (out / WEIGHTS_FILE).stat().st_size / 1e6
    print(f"wrote {out / WEIGHTS_FILE} ({size:.2f} MB), {out / CONFIG_FILE} and its manifest")
    if args.max_box_margin > 0:
        print(f"max_box (w, h): {json.loads((out / CONFIG_FILE).read_text())['max_box']}")
    if (out / CLASSIFIER_FILE).exists():
        print(f"note: {out} still holds the classifier fitted on the previous detector; re-fit it with "
              f"{refit_command(out, get_game(args.game).name)}")  # fmt: skip
    else:
        print(f"next: fit its z_what classifier with {refit_command(out, get_game(args.game).name)}")
    return out


if __name__ == "__main__":
    main()
