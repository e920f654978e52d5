"""The command line of ``moc-envs train``: :func:`build_parser` and :func:`main`.

    moc-envs train --game Breakout [--out runs/breakout] [--preset auto|cpu|gpu] [--minutes N]

``moc-envs train --help`` lists every option with its default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from moc_envs.errors import MocEnvsError
from moc_envs.perception.distractors import DISTRACTOR_KINDS, distractor_seed_argument
from moc_envs.threads import DEFAULT_THREADS, THREADS_HELP
from trainers.pipeline.run import format_summary, run_pipeline
from trainers.pipeline.state import BUDGET_SHARES, PRESETS, STAGES, STATE_FILE, PipelineConfig

__all__ = ["EPILOG", "build_parser", "main"]


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows every option's default."""


EPILOG = f"""\
stages (each resumable: run the same command again to continue where it stopped):
  {' -> '.join(STAGES)}
  state: <out>/{STATE_FILE}; --redo STAGE runs STAGE and every later one again.

--minutes N is the wall-time budget of the whole run, the dataset stage included. Before the first
stage the command prints what each stage is expected to take here (the teacher's step and the
distillation timed on this machine, the other stages estimated until they have run), the total of
the preset's full schedules and, when N is less, the steps and epochs N gives and the --minutes
that would run them all. The stages that are not cut short (dataset, export, raw frames,
classifier, extents, evaluation, labels, HUD reader, held-out evaluation, card) keep their expected time and the long ones share the rest:
the teacher plans for {BUDGET_SHARES['teacher']:.0%} of it (or all but what the distillation's full schedule needs,
when that is more; its steps from ten timed steps) and stops at its time in any case; the
distillation gets what is left when it starts (its epochs from timed batches) and stops
its epochs there. A stage whose time runs out says so when it stops; the summary compares the
steps and epochs run with the plan and the wall time with N, and says when N was too small.
Without --minutes the preset's full schedules run (cpu: 1500 steps, 20-160 minutes of teacher
training on 2 cores for the shipped games; gpu: MOC's 5000 steps)."""


def build_parser(prog: str = "moc-envs train") -> argparse.ArgumentParser:
    """The command line of ``moc-envs train`` (also ``python -m trainers.pipeline``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a detector for a game from gameplay alone: dataset, SPACE+MOC teacher, lean\n"
        "detector, test-split evaluation beside OCAtari's vision mode, model card and the bar verdict.",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--game", required=True, default=argparse.SUPPRESS, help="game name, e.g. Breakout")
    p.add_argument("--out", type=Path, default=argparse.SUPPRESS, help="output folder (default: runs/<game>)")
    p.add_argument("--preset", choices=PRESETS, default="auto", help="auto: gpu where torch sees CUDA, cpu otherwise")
    p.add_argument(
        "--minutes", type=float, default=argparse.SUPPRESS,
        help="wall-time budget of the whole run, the dataset stage included; the teacher's steps and the distillation's "
        "epochs are cut to fit it, see below (default: none, the preset's full schedules)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=THREADS_HELP)
    p.add_argument("--redo", choices=STAGES, default=argparse.SUPPRESS, help="run this stage and every later one again (default: continue at the first unfinished one)")
    p.add_argument(
        "--nproc", type=int, default=1,
        help="data-parallel processes of the teacher's training (>1: torchrun and DDP, trainers.detector.distributed; "
        "its --batch-stacks is per process)",
    )  # fmt: skip
    p.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="dataset folder, built there when missing (default: <out>/data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dataset, the training and the classifier")
    p.add_argument(
        "--distractors", choices=DISTRACTOR_KINDS, default=None,
        help="build the dataset with PermaKey's moving bars on its frames (moc-envs dataset --distractors; default: none)",
    )  # fmt: skip
    p.add_argument(
        "--distractor-seed", type=distractor_seed_argument, default=None,
        help="seed of the bars, mixed with the dataset's env seeds (default: --seed alone fixes them)",
    )  # fmt: skip
    p.add_argument("--hardware", default=argparse.SUPPRESS, help="what the card says it was trained on (default: this machine's CPU or GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "moc-envs train") -> int:
    """Command-line entry point; returns the exit status (0 when the run finished, verdict either way)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.distractor_seed is not None and args.distractors is None:
        parser.error("--distractor-seed needs --distractors (horizontal, vertical or both)")
    cfg = PipelineConfig(
        game=args.game, out=getattr(args, "out", None), preset=args.preset, minutes=getattr(args, "minutes", None),
        threads=args.threads, redo=getattr(args, "redo", None), nproc=args.nproc, data=getattr(args, "data", None),
        seed=args.seed, distractors=args.distractors, distractor_seed=args.distractor_seed,
        hardware=getattr(args, "hardware", None), progress=not args.no_progress,
    )  # fmt: skip
    try:
        summary = run_pipeline(cfg)
    except MocEnvsError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # a training extra that this install lacks
        print(f"{prog}: error: {err}; install the training dependencies: pip install -e \".[train]\" and OCAtari", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0

