"""Run the four benchmarks one after the other and time them.

    moc-envs bench all [--quick] [--only speed,probe] [--out benchmarks/results]

Each benchmark runs with its own defaults (the CPU budgets quoted in the README) and writes
its own files; this runner adds ``summary.json`` / ``summary.md``: the wall time of each and
the total, so that "all four in under 30 minutes on the CPU" is a measured statement. Every
benchmark is also runnable alone (``moc-envs bench speed`` ...).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, markdown_table, write_results

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = ("speed", "detection", "probe", "agents")


def _entry(name: str) -> Callable[[Sequence[str] | None], Any]:
    import importlib

    return importlib.import_module(f"benchmarks.{name}").main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: run the selected benchmarks, then write the timing summary."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench all",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for every benchmark's files")
    p.add_argument("--quick", action="store_true", help="tiny budgets (smoke test), not for results")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ", ".join(BENCHMARKS))
    p.add_argument("--device", default="auto", help="torch device of the learned detector: auto, cpu, cuda")
    args = p.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    common = ["--out", str(args.out), "--device", args.device] + (["--quick"] if args.quick else [])
    seconds: dict[str, float] = {}
    for name in chosen:
        start = time.perf_counter()
        _entry(name)(common)
        seconds[name] = time.perf_counter() - start
        print(f"[benchmarks] {name}: {seconds[name] / 60:.1f} min")
    total = sum(seconds.values())
    result = {"quick": args.quick, "seconds": seconds, "total_seconds": total}
    rows = [[name, s / 60] for name, s in seconds.items()] + [["total", total / 60]]
    body = (
        f"{'Smoke budgets (--quick).' if args.quick else 'Default (CPU) budgets.'} "
        "Wall time of each benchmark run by `moc-envs bench all`, one after the other.\n\n"
        + markdown_table(["benchmark", "minutes"], rows)
    )
    write_results(args.out, "summary", result, body, "Benchmarks: wall time")
    print(f"[benchmarks] total: {total / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()
