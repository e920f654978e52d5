"""What the four benchmarks share: result files, machine info, tables, plots, weight checks.

Every benchmark writes ``<name>.json`` (machine info + rows), ``<name>.md`` (the
tables) and, where a picture helps, ``<name>.png`` into ``benchmarks/results/``
(or ``--out``). Files are written atomically (tmp file, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.weights.atomic import atomic_path, atomic_write_text

__all__ = [
    "RESULTS_DIR",
    "add_common_args",
    "learned_weights",
    "not_available",
    "learned_objects_note",
    "machine_info",
    "markdown_table",
    "fmt",
    "write_text",
    "write_results",
    "bar_plot",
    "line_plot",
    "Timer",
    "torch_threads",
    "cpu_model",
    "baseline_weights",
    "image_encoder_of",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags every benchmark takes: --out, --quick, --seed, --device, --games."""
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for JSON / .md / .png")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test), not for results")
    parser.add_argument("--seed", type=int, default=0, help="seed of envs, policies and probes")
    parser.add_argument(
        "--device", default="auto", help="torch device of the learned detector: auto, cpu, cuda"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 avoids oversubscribing a shared 2-core machine)",
    )
    return parser


def baseline_weights(game: str) -> Path | None:
    """The SPACE-encoder detector a shipped lean one was distilled from (``<weights>/space``), if kept."""
    shipped = learned_weights(game)
    if shipped is None:
        return None
    folder = shipped / "space"
    return folder if (folder / "detector.safetensors").is_file() else None


def image_encoder_of(folder: Path) -> str:
    """The image encoder a detector folder holds, from its config.json (``"space"`` when unsaid)."""
    import json

    return str(json.loads((folder / "config.json").read_text())["model"].get("image_encoder", "space"))


def learned_weights(game: str) -> Path | None:
    """The game's exported detector folder, or None when no weights are shipped."""
    from moc_envs.errors import MissingWeightsError
    from moc_envs.weights.search import require_weights

    try:
        return require_weights(game)
    except MissingWeightsError:
        return None


def not_available(game: str) -> str:
    """The note a learned-detector row carries when the game has no weights."""
    return f"not available: no weights for {game}"


def learned_objects_note(game: str, device: str = "auto", steps: int = 32, seed: int = 0) -> str:
    """Empty when the learned detector fills observation slots, else why the object observation is empty.

    Measured, not assumed: ``steps`` random steps of ``MOC/<Game>-v0`` with the
    learned detector. A detector shipped without a category classifier labels
    every box ``"object"``, which no slot of the game accepts, so the object
    observation stays all zeros (the boxes themselves are still scored by the
    detection benchmark, and z_what by the probe).
    """
    import gymnasium as gym

    import moc_envs  # noqa: F401  (registers the ids)

    env = gym.make(f"MOC/{game}-v0", detector="space", device=device, allow_unclassified=True)
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        cats: set[str] = set()
        for _ in range(steps):
            _, _, term, trunc, info = env.step(env.action_space.sample())
            if any(d.slot >= 0 for d in info["objects"]):
                return ""
            cats.update(d.category for d in info["objects"])
            if term or trunc:
                env.reset()
    finally:
        env.close()
    found = ", ".join(sorted(cats)) or "none"
    return (
        f"not available: the {game} detector fills no observation slot (categories found: "
        f"{found}; no category classifier shipped), so its object observation is empty"
    )


BUSY_PATTERNS = ("trainers.detector.train", "benchmarks.train_speed")
"""Command lines of heavy jobs whose presence marks a benchmark's machine as shared."""


def _shared_with_training() -> list[str]:
    """Command lines of detector trainings running beside us (they distort timings)."""
    found: list[str] = []
    me = str(os.getpid())
    for pattern in BUSY_PATTERNS:
        try:
            out = subprocess.run(
                ["pgrep", "-af", pattern], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        found += [ln for ln in out.splitlines() if ln and not ln.startswith(me + " ") and ln not in found]
    return found


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where and when a benchmark ran: CPU, GPU, versions, commit, concurrent trainings."""
    import gymnasium

    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gymnasium": gymnasium.__version__,
    }
    try:
        import ale_py

        info["ale_py"] = ale_py.__version__
    except ImportError:  # pragma: no cover - a dependency
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - a dependency
        info["cuda"] = None
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    busy = _shared_with_training()
    info["shared_with"] = busy
    try:
        info["load_avg"] = list(os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        pass
    return info


def machine_note(info: dict[str, Any]) -> str:
    """One Markdown paragraph describing the machine (and whether it was shared)."""
    gpu = info.get("cuda") or "no GPU"
    text = (
        f"Machine: {info['cpu_count']} CPU cores ({info['processor']}), {gpu}; Python "
        f"{info['python']}, torch {info.get('torch', '?')}, gymnasium {info['gymnasium']}, "
        f"ale-py {info.get('ale_py', '?')}; commit {info.get('commit') or '?'}; {info['date']}."
    )
    if info.get("shared_with"):
        text += (
            " **The machine was shared**: a detector training or training benchmark ran at the same time "
            f"(load average {', '.join(f'{x:.1f}' for x in info.get('load_avg', []))}), "
            "so absolute timings are low and noisy; compare ratios within the table."
        )
    return text


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as a dash, strings unchanged."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if not np.isfinite(v):
            return "-"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub Markdown table; cells go through :func:`fmt`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c, digits) for c in row) + " |")
    return "\n".join(lines)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (tmp file, then os.replace)."""
    atomic_write_text(path, text)
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_results(
    out: Path, name: str, payload: dict[str, Any], markdown: str, title: str
) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` (payload + machine) and ``<out>/<name>.md`` (title, machine, body)."""
    machine = payload.setdefault("machine", machine_info())
    js = write_text(out / f"{name}.json", json.dumps(_jsonable(payload), indent=2) + "\n")
    md = write_text(
        out / f"{name}.md",
        f"# {title}\n\n{machine_note(machine)}\n\n{markdown.strip()}\n",
    )
    return js, md


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_plot(
    path: Path,
    labels: Sequence[str],
    values: Sequence[float],
    ylabel: str,
    title: str,
    log: bool = False,
    colors: Sequence[str] | None = None,
) -> Path:
    """A horizontal bar chart (one bar per label) saved as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    y = np.arange(len(labels))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if log:
        ax.set_xscale("log")
    ax.set_title(title)
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:,.0f}" if v >= 10 else f" {v:.2f}", va="center", fontsize=8)
    return _save_figure(plt, fig, path)



def _save_figure(plt: Any, fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path

def line_plot(
    path: Path,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """Several (x, y) curves on one axis, saved as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(plt, fig, path)


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def torch_threads(n: int | None) -> None:
    """Set torch's CPU threads (None leaves torch's default)."""
    if n is not None:
        import torch

        torch.set_num_threads(n)
