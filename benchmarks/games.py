"""One table across games, gathered from the per-game benchmark results (nothing is re-measured).

    moc-envs bench games [--results benchmarks/results] [--out benchmarks/results]

Reads every ``speed.json``, ``detection.json`` and ``probe.json`` under ``--results`` (Pong's,
Boxing's and Skiing's sit at the top, the other games' in ``<game>/``; where two runs hold the
same game, the newer one's; for probes figure by figure, so a run of some representations only
keeps the others' older figures) and writes
``games.json`` / ``.md`` / ``.png``: per game, detection F1 of the learned detector and of
OCAtari's vision mode (held-out later-state frames, every promised object) and our spurious singleton share, the true objects per frame, the learned env's
and vision's steps/s as ratios to raw ALE measured in the same run, ``detect()``'s milliseconds
per frame, and the AtariARI probe of the thermometer-coded objects beside ST-DIM. The plot puts
``detect()``'s and vision's cost against the objects per frame: whether a detector's cost grows
with the number of objects. Each row names the CPU and date of the run it comes from, since
the runs were made on different days and loads.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, markdown_table, write_results

__all__ = ["gather", "to_markdown", "plot", "run", "main"]

LEARNED = "learned (SPACE+MOC)"
VISION = "OCAtari vision"
SHIPPED = "lean encoder, shipped"
CODE = "objects (learned), thermometer positions"
RAM_CODE = "objects (ram), thermometer positions"
FULL = "objects + labels (learned), thermometer codes"
"""The probe of all the env gives: objects and every label of info["labels"] (benchmarks.probe)."""
CATEGORIES = ("A", "O", "S", "SC", "M")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable benchmark result ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _speed(data: dict[str, Any], path: Path) -> dict[str, Any]:
    game = data["game"]
    rows = {r["name"]: r for r in data["rows"]}
    learned = f"MOC/{game}-v0 learned ({SHIPPED})"
    if learned not in rows:
        raise ValueError(f"{path}: no row {learned!r} (a speed run without the shipped detector)")
    detect = {d["batch"]: d["ms_per_frame"] for d in data.get("detect", []) if d["detector"] == SHIPPED}
    vision = rows.get("OCAtari vision mode") or {}
    machine = data.get("machine", {})
    return {
        "learned_1_env": rows[learned]["ratio_to_ale"],
        "learned_8_envs": (rows.get(f"{learned}, make_vec") or {}).get("ratio_to_ale"),
        "vision": vision.get("ratio_to_ale"),
        "vision_note": vision.get("note", ""),
        "raw_ale_steps_per_s": data["rows"][0]["steps_per_s"],
        "detect_ms_batch_1": detect.get(1),
        "run": f"{machine.get('processor', '?')}, {str(machine.get('date', '?'))[:10]}",
    }


def _detection(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per game: ours and vision's F1 on held-out later-state frames, and ours' spurious singleton share."""
    out: dict[str, dict[str, Any]] = {}
    for r in data.get("results", []):
        g = out.setdefault(r["game"], {})
        g["learned"] = (r.get(LEARNED) or {}).get("f1")
        g["vision"] = r[VISION]["f1"]
        g["spurious"] = (r.get(LEARNED) or {}).get("spurious_singleton_share")
        if r["frames"]:
            g["objects_per_frame"] = r[VISION]["truth_objects"] / r["frames"]
    return out


def _probe(data: dict[str, Any]) -> dict[str, Any]:
    reps = data["probe"]["representations"]
    return {
        "learned": (reps.get(CODE) or {}).get("overall"),
        "ram": (reps.get(RAM_CODE) or {}).get("overall"),
        "full": (reps.get(FULL) or {}).get("overall"),
        "full_categories": (reps.get(FULL) or {}).get("categories"),
        "full_steps": data.get("steps") if FULL in reps else None,
        "st_dim": (data.get("published") or {}).get("ST-DIM"),
        "supervised": (data.get("published") or {}).get("Supervised"),
    }


def _oldest_first(results: Path, name: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``name`` under ``results``, read, the oldest run first: where two files hold the same
    game (the top-level detection table and a game's own), the newer run's row wins."""
    found = [(path, _read(path)) for path in sorted(results.glob(f"**/{name}"))]
    return sorted(found, key=lambda pd: str((pd[1].get("machine") or {}).get("date", "")))


def gather(results: Path) -> dict[str, dict[str, Any]]:
    """Per game, what the result files under ``results`` hold (see the module docstring)."""
    results = Path(results)
    if not results.is_dir():
        raise ValueError(f"--results must be a folder of benchmark results, got {results}")
    games: dict[str, dict[str, Any]] = {}
    for path, data in _oldest_first(results, "speed.json"):
        games.setdefault(data["game"], {})["speed"] = _speed(data, path)
    for _, data in _oldest_first(results, "detection.json"):
        for game, row in _detection(data).items():
            games.setdefault(game, {})["detection"] = row
    # A run that probed some representations only (--representations) keeps the others' figures
    # from older runs: the newer run wins figure by figure.
    for _, data in _oldest_first(results, "probe.json"):
        row = games.setdefault(data["game"], {}).setdefault("probe", {})
        row.update({k: v for k, v in _probe(data).items() if v is not None})
    if not games:
        raise ValueError(f"no speed.json, detection.json or probe.json under {results}")
    return dict(sorted(games.items()))


def to_markdown(games: dict[str, dict[str, Any]]) -> str:
    """The table (a dash where a game has no such result yet)."""
    rows = []
    for game, g in games.items():
        d, s, p = g.get("detection", {}), g.get("speed", {}), g.get("probe", {})
        rows.append([
            game, d.get("objects_per_frame"), d.get("learned"), d.get("vision"), d.get("spurious"),
            s.get("learned_1_env"), s.get("learned_8_envs"),
            s.get("vision"), s.get("detect_ms_batch_1"), p.get("learned"), p.get("ram"), p.get("st_dim"), s.get("run"),
        ])  # fmt: skip
    headers = [
        "game", "objects / frame", "F1 learned (held-out)", "F1 vision (held-out)", "spurious singleton (learned)",
        "learned env, 1 env (x raw ALE)", "learned env, 8 envs", "OCAtari vision (x raw ALE)",
        "detect() ms, batch 1", "probe: objects learned", "probe: objects RAM", "probe: ST-DIM (published)", "speed run",
    ]  # fmt: skip
    notes = [f"- {game}, OCAtari vision: {g['speed']['vision_note']}" for game, g in games.items()
             if g.get("speed", {}).get("vision_note")]  # fmt: skip
    text = (
        "Gathered by `moc-envs bench games` from each game's `speed.json`, `detection.json` and `probe.json`; "
        "each figure's command and machine are in its own file. Detection: F1 at OCAtari's 5 px centre criterion, "
        "1500 frames per policy. Speed: steps/s as a ratio to raw ALE measured in the same run (runs made on "
        "different days and loads: compare ratios, not steps/s). Probe: AtariARI protocol on the thermometer-coded "
        "object observation, overall F1.\n\n" + markdown_table(headers, rows)
    )
    text += "\n\n" + probe_categories(games)
    return text + ("\n\nNotes:\n" + "\n".join(notes) if notes else "")


def probe_categories(games: dict[str, dict[str, Any]]) -> str:
    """The probe of everything the env gives (objects and info["labels"]) per AtariARI category,
    beside the published ST-DIM and supervised F1 (AtariARI gives those per game, over categories)."""
    rows = []
    for game, g in games.items():
        p = g.get("probe", {})
        if p.get("full") is None:
            continue
        cats = p.get("full_categories") or {}
        st = p.get("st_dim")
        rows.append([game, p.get("full_steps"), *(cats.get(c) for c in CATEGORIES), p["full"], st, p.get("supervised"),
                     "-" if st is None else ("yes" if p["full"] >= st else "no")])  # fmt: skip
    if not rows:
        return ""
    return (
        "## Probe per category: objects and info['labels'] (learned env)\n\nAtariARI categories: A agent, "
        "O other objects, S small objects, SC score / clock / lives / display, M misc (a dash: the game has no "
        "label of that category left after the entropy cut). Overall = mean over categories, as AtariARI "
        "reports; the published figures are per game, over categories, at 50,000 steps (samples: the steps "
        "of our run).\n\n"
        + markdown_table(["game", "samples", *CATEGORIES, "overall", "ST-DIM (published)", "supervised (published)", ">= ST-DIM"], rows)
    )


def plot(games: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """``detect()``'s ms per frame and vision's cost against objects per frame; None without data."""
    from benchmarks.common import _pyplot, _save_figure

    points = [
        (g["detection"]["objects_per_frame"], g["speed"], game)
        for game, g in games.items()
        if "objects_per_frame" in g.get("detection", {}) and g.get("speed", {}).get("detect_ms_batch_1")
    ]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, key, marker in (("learned detect(), batch 1", "learned", "o"), ("OCAtari vision", "vision", "s")):
        xs, ys, names = [], [], []
        for n, s, game in points:
            if key == "learned":
                value = s["detect_ms_batch_1"]
            elif s.get("vision"):
                # Vision's own cost per step: its step time less raw ALE's, in ms.
                value = max(1e3 / (s["vision"] * s["raw_ale_steps_per_s"]) - 1e3 / s["raw_ale_steps_per_s"], 0.0)
            else:
                continue
            xs.append(n)
            ys.append(value)
            names.append(game)
        ax.scatter(xs, ys, marker=marker, label=label)
        for x, y, name in zip(xs, ys, names, strict=True):
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("true objects per frame (detection benchmark, held-out play)")
    ax.set_ylabel("ms per frame beyond the emulator")
    ax.set_yscale("log")
    ax.set_title("Cost of finding the objects against their number")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save_figure(plt, fig, path)


def run(results: Path = RESULTS_DIR, out: Path | None = None) -> dict[str, Any]:
    """Gather, then (when ``out``) write games.json / .md / .png."""
    games = gather(results)
    if out is not None:
        out = Path(out)
        write_results(out, "games", {"games": games}, to_markdown(games), "Benchmarks across games")
        plot(games, out / "games.png")
    return games


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench games",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder holding the per-game results")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for games.json / .md / .png")
    args = p.parse_args(argv)
    try:
        games = run(args.results, args.out)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    print(to_markdown(games))
    return games


if __name__ == "__main__":
    main()
