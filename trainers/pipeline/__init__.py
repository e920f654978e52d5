"""One command from gameplay to shipped weights: ``moc-envs train --game Breakout``.

    moc-envs train --game Breakout [--out runs/breakout] [--preset auto|cpu|gpu] [--minutes N]
                   [--threads 1] [--redo STAGE] [--nproc N] [--data DIR] [--seed 0]
    python -m trainers.pipeline ...   (the same command)

Runs the stage modules in this process, one after the other, into ``--out``:

1. ``dataset``: :func:`trainers.data.dataset.build_dataset` into ``<out>/data`` (or ``--data``), with
   the HUD bands derived from a few hundred frames of random play (:func:`trainers.detector.derive.hud_bands`).
2. ``teacher``: SPACE+MOC training (:func:`trainers.detector.train.train`) into ``<out>/teacher``, with the
   z_scale prior derived from the motion boxes (:func:`trainers.detector.derive.z_scale_prior_mean`).
3. ``export``: the teacher to ``<out>/weights/<Game>/space`` (:func:`trainers.evaluate.export.export_run`)
   with ``max_box`` derived from the motion boxes (:func:`trainers.detector.derive.max_box`).
4. ``raw_frames``: full-size frames of the val and test splits
   (:func:`trainers.data.raw_frames.build_raw_frames`): the objects' colours for the classifier and
   OCAtari's vision mode for the evaluation.
5. ``classifier``: its z_what classifier, options chosen on the validation split
   (:func:`trainers.classify.classifier.fit_from_weights` with ``auto=True``).
6. ``distill``: the lean detector (:func:`trainers.detector.distill.distill`) into ``<out>/weights/<Game>``:
   what ships.
7. ``evaluate``: the lean detector on the test split beside OCAtari's vision mode
   (:func:`trainers.evaluate.detector.evaluate`), written beside the weights.
8. ``labels``: the offsets of the game's label links fitted for the lean detector's boxes
   (:func:`trainers.evaluate.label_offsets.calibrate`, two runs of random play: fit and held out) into the
   weights' ``labels.json``; nothing for a game without label links.
9. ``card``: the model card (:mod:`trainers.evaluate.card`) with the derived settings and the bar verdict.

Before the first stage it prints what each stage is expected to take on this machine and the
total of the preset's full schedules (:func:`forecast`); ``--minutes`` is the budget of the whole
run, the dataset stage included, and the summary says whether it was too small.

``<out>/pipeline.json`` (written atomically after every change) records the finished stages,
each long stage's plan (its steps or epochs and time limit, fixed when it starts), the budget's
forecast and the derived settings.
Running the same command again continues at the first unfinished stage; the long stages resume
from their own checkpoints (``moc-envs train-detector --resume``, ``moc-envs distill --resume``).
``--redo STAGE`` runs that stage and every later one again. The whole run holds
``<out>/train.lock`` (:mod:`trainers.run_lock`).

The package, by responsibility: :mod:`trainers.pipeline.state` (the settings, the run record,
its state file and the budget's arithmetic), :mod:`trainers.pipeline.stages` (one function a
stage, with the long stages' plans and the probes that time them), :mod:`trainers.pipeline.run`
(:func:`run_pipeline`, its forecast and its summary) and :mod:`trainers.pipeline.cli` (the
command line).
"""

from __future__ import annotations

from trainers.pipeline.cli import build_parser, main
from trainers.pipeline.run import forecast, format_forecast, format_summary, run_pipeline
from trainers.pipeline.stages import STAGE_FUNCS, probe_pairs
from trainers.pipeline.state import (
    BUDGET_SHARES,
    STAGES,
    STATE_FILE,
    STATE_FORMAT,
    PipelineConfig,
    PipelineError,
    read_state,
    resolve_preset,
)

__all__ = [
    "STAGES",
    "STATE_FILE",
    "STATE_FORMAT",
    "BUDGET_SHARES",
    "PipelineError",
    "PipelineConfig",
    "STAGE_FUNCS",
    "resolve_preset",
    "read_state",
    "probe_pairs",
    "run_pipeline",
    "forecast",
    "format_forecast",
    "format_summary",
    "build_parser",
    "main",
]
