"""The training verbs of ``moc-envs``: ``moc-envs <verb>`` for every stage of the pipeline.

Registered as the entry point ``trainers`` of the group ``moc_envs.commands`` (``pyproject.toml``),
through which :mod:`moc_envs.cli` finds them without importing the training code: this module
imports nothing, and a verb's module is imported only when that verb runs. Each verb maps to
``(module, function, help)``; the function is called as ``function(argv)`` (with
``prog="moc-envs <verb>"`` where it takes ``prog``).
"""

from __future__ import annotations

__all__ = ["COMMANDS"]

COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "trainers.pipeline.cli", "main",
        "train a detector for a game: gameplay to shipped weights, card and verdict in one command",
    ),
    "dataset": (
        "trainers.data.dataset", "main",
        "play a game and record a gameplay dataset (frames, motion targets, RAM ground truth)",
    ),
    "background": (
        "trainers.data.background", "main",
        "record a game's background (mode) image into a weights folder (the bar filter reads it)",
    ),
    "raw-frames": (
        "trainers.data.raw_frames", "main",
        "recover the full-size frames of a dataset split by replaying its build",
    ),
    "train-detector": (
        "trainers.detector.train", "main",
        "train a SPACE+MOC detector on a gameplay dataset (one stage of train)",
    ),
    "distill": (
        "trainers.detector.distill", "main",
        "distil a trained SPACE+MOC detector into the lean image encoder",
    ),
    "classifier": (
        "trainers.classify.classifier", "main",
        "fit the z_what -> category classifier shipped beside a detector",
    ),
    "evaluate": (
        "trainers.evaluate.detector", "main",
        "evaluate a detector on a dataset split, beside OCAtari's vision mode",
    ),
    "metrics": (
        "trainers.evaluate.metrics", "main",
        "centre-distance precision / recall / F1 of a detector against OCAtari ground truth",
    ),
    "unmatched": (
        "trainers.evaluate.unmatched", "main",
        "where a detector's false positives are: its unmatched predictions, grouped",
    ),
    "export": (
        "trainers.evaluate.export", "main",
        "export a trained run's inference weights for the env",
    ),
    "card": (
        "trainers.evaluate.card", "main",
        "write the model card (card.json, card.md) of a weights folder",
    ),
    "held-out": (
        "trainers.evaluate.held_out", "main",
        "evaluate a weights folder on held-out later-state play beside OCAtari vision (eval_held_out.json)",
    ),
    "extents": (
        "trainers.classify.extents", "main",
        "fit each category's box sizes (and fixed positions) so that implausible boxes fill no slot",
    ),
    "label-offsets": (
        "trainers.evaluate.label_offsets", "main",
        "fit each label link's offset to a learned detector's own boxes",
    ),
    "hud": (
        "trainers.hud.train", "main",
        "fit a game's HUD reader (scores, lives, clocks, bars read from the frame) into a weights folder",
    ),
    "readouts": (
        "trainers.readouts.cli", "main",
        "fit a game's readouts (counts, identities, headings, brick walls) from play into a weights folder",
    ),
    "agent": (
        "trainers.agents.train", "main",
        "train a PPO agent on object observations",
    ),
    "agent-eval": (
        "trainers.agents.evaluate", "main",
        "evaluate trained agents (the agents benchmark's protocol) and ship one",
    ),
}  # fmt: skip
