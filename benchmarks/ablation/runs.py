"""The ablation's training runs: one detector per game, variant and seed, trained then scored.

Every run is two commands of the package, started as subprocesses so that each keeps its own
torch thread count and a crash stays in its own log:

1. ``moc-envs train-detector --ablation <variant> --seed <seed> --resume`` on the game's dataset
   (built once per game by ``moc-envs dataset``), with the ``cpu`` preset's schedule scaled to
   ``steps``;
2. ``moc-envs evaluate --run <run> --no-vision`` on the dataset's test split, which writes
   ``eval_test.json`` (F1, AP, the z_what's few-shot accuracy and KMeans AMI).

A run whose ``eval_test.json`` names the planned step is done and is skipped, and a run cut
short resumes from its checkpoint, so the whole benchmark can be stopped and started again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from trainers.detector.config import ABLATIONS

__all__ = ["DATASET_SPLITS", "AblationRun", "plan", "ensure_dataset", "run_one", "run_all"]

DATASET_SPLITS = {"train": 1024, "val": 64, "test": 256}
"""Stacks of four frames per split of each game's dataset (one dataset shared by every run)."""

EVAL_FILE = "eval_test.json"


@dataclass(frozen=True)
class AblationRun:
    """One cell of the ablation: ``game`` trained as ``ablation`` from ``seed`` for ``steps``."""

    game: str
    ablation: str
    seed: int
    steps: int
    folder: Path

    @property
    def eval_path(self) -> Path:
        """The scores the run ends with."""
        return self.folder / EVAL_FILE

    def done(self) -> bool:
        """Whether the run was trained to its last step and scored."""
        if not self.eval_path.is_file():
            return False
        try:
            return int(json.loads(self.eval_path.read_text())["step"]) >= self.steps
        except (ValueError, KeyError, TypeError):
            return False


def plan(games: Sequence[str], seeds: Sequence[int], steps: int, runs: Path,
         ablations: Sequence[str] = ABLATIONS) -> list[AblationRun]:  # fmt: skip
    """Every run, seed-major: all games and variants of the first seed come first, so that a
    benchmark cut short still has one seed of every cell."""
    unknown = sorted(set(ablations) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablations {unknown}; expected some of {list(ABLATIONS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [
        AblationRun(game, ablation, seed, steps, runs / game / ablation / f"seed{seed}")
        for seed in seeds
        for game in games
        for ablation in ablations
    ]


def _moc_envs(*args: str) -> list[str]:
    return [sys.executable, "-m", "moc_envs", *args]


def _run_logged(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output appended to ``log``; RuntimeError naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise RuntimeError(f"moc-envs {cmd[3]} exited with {code}; see {log}")


def ensure_dataset(game: str, data: Path, seed: int = 0) -> Path:
    """The game's ablation dataset under ``data``, built unless it is already there."""
    folder = data / game
    if not (folder / "report.json").is_file():  # written last, when every split is complete
        splits = [a for k, v in DATASET_SPLITS.items() for a in (f"--{k}", str(v))]
        _run_logged(
            _moc_envs("dataset", "--game", game, "--out", str(folder), "--seed", str(seed), "--quiet", *splits),
            data / f"{game}.log",
        )
    return folder


def run_one(run: AblationRun, data: Path, threads: int = 1) -> AblationRun:
    """Train (or resume) and score one run; a finished run is left as it is."""
    if run.done():
        return run
    log = run.folder / "log.txt"
    _run_logged(
        _moc_envs(
            "train-detector", "--game", run.game, "--data", str(data), "--out", str(run.folder),
            "--preset", "cpu", "--steps", str(run.steps), "--ablation", run.ablation, "--seed", str(run.seed),
            "--threads", str(threads), "--device", "cpu", "--eval-split", "", "--no-progress",
            *(["--resume"] if (run.folder / "checkpoint.pt").is_file() else []),
        ),
        log,
    )  # fmt: skip
    _run_logged(
        _moc_envs("evaluate", "--game", run.game, "--data", str(data), "--run", str(run.folder), "--split", "test",
                  "--threads", str(threads), "--no-vision", "--out", str(run.folder)),
        log,
    )  # fmt: skip
    return run


def run_all(runs: Iterable[AblationRun], data: Path, jobs: int = 1, threads: int = 1,
            on_done: Callable[[AblationRun, BaseException | None], None] | None = None) -> list[BaseException]:  # fmt: skip
    """Run every run, ``jobs`` at a time; the failures, each already reported to ``on_done``."""
    runs = list(runs)
    datasets = {g: ensure_dataset(g, data) for g in dict.fromkeys(r.game for r in runs)}
    failures: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_one, r, datasets[r.game], threads): r for r in runs}
        for fut in as_completed(futures):
            err = fut.exception()
            if err is not None:
                failures.append(err)
            if on_done is not None:
                on_done(futures[fut], err)
    return failures
