"""Export a trained run's inference weights for the env.

    python -m trainers.export runs/pong --game Pong [--out weights/Pong]

Writes ``detector.safetensors`` (the inference encoder only: image encoder, heads, glimpse
encoder; no decoders, no background) and ``config.json`` (format tag, game, model config,
training step, data info, the training config) into ``weights/<Game>/`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moc_envs.games import get_game
from moc_envs.space_detector import CONFIG_FILE, FORMAT, WEIGHTS_FILE
from trainers.train import CHECKPOINT, TrainError, load_checkpoint, load_model_from_run

__all__ = ["export_run", "main"]


def export_run(run: str | Path, game: str, out: str | Path | None = None) -> Path:
    """Export the latest checkpoint of ``run`` to ``out`` (default ``weights/<Game>``)."""
    import torch
    from safetensors.torch import save_file

    spec = get_game(game)
    run = Path(run)
    ckpt = load_checkpoint(run / CHECKPOINT)
    trained_for = ckpt["config"].get("game")
    if trained_for != spec.name:
        raise TrainError(f"run {run} trained a detector for '{trained_for}', not '{spec.name}'")
    model = load_model_from_run(run)
    out_dir = Path(out) if out is not None else Path("weights") / spec.name
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
    eval_path = run / "eval.json"
    if eval_path.is_file():
        e = json.loads(eval_path.read_text())
        meta["eval"] = {k: e[k] for k in ("split", "ocatari", "relative") if k in e}
    tmp_w = out_dir / (WEIGHTS_FILE + f".tmp{os.getpid()}")
    save_file(state, str(tmp_w), metadata={"format": FORMAT, "game": spec.name})
    tmp_c = out_dir / (CONFIG_FILE + f".tmp{os.getpid()}")
    tmp_c.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp_w, out_dir / WEIGHTS_FILE)
    os.replace(tmp_c, out_dir / CONFIG_FILE)
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m trainers.export", description=__doc__.split("\n")[0])
    p.add_argument("run", help="training run directory holding checkpoint.pt")
    p.add_argument("--game", required=True, help="game the run trained on, e.g. Pong")
    p.add_argument("--out", default=None, help="output folder (default weights/<Game>)")
    args = p.parse_args(argv)
    out = export_run(args.run, args.game, args.out)
    size = (out / WEIGHTS_FILE).stat().st_size / 1e6
    print(f"wrote {out / WEIGHTS_FILE} ({size:.2f} MB) and {out / CONFIG_FILE}")
    return out


if __name__ == "__main__":
    main()
