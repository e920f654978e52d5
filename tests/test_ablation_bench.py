"""The ablation benchmark's plan, resumption and tables (the training itself is tested elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ablation.runs import AblationRun, plan
from benchmarks.ablation.table import METRICS, _write, scores_of, summarise


def _eval(step: int, f1: float, ami: float | None, truth: bool = True) -> dict:
    def crit(f: float) -> dict:
        return {"relative": {"f1": f}, "ap": {"mean": f / 2}}

    latent = {"few_shot_ridge": {str(n): {"mean": 0.5 + n / 256} for n in (1, 4, 16, 64)}} if ami is not None else {}
    if ami is not None:
        latent.update(kmeans={"ami": ami}, samples=40)
    out = {"step": step, "detector": {"raw": {"all": crit(f1), "moving": crit(f1 + 0.01)}}, "latent": latent}
    if truth:  # z_what at the truth boxes: scored whatever the model found
        out["latent_truth"] = {"few_shot_ridge": {str(n): {"mean": 0.6 + n / 256} for n in (1, 4, 16, 64)},
                               "kmeans": {"ami": 0.4}, "samples": 50}  # fmt: skip
    return out


def test_plan_is_seed_major_and_refuses_unknown_variants(tmp_path: Path) -> None:
    runs = plan(["Pong", "Boxing"], [0, 1], 10, tmp_path)
    assert len(runs) == 12
    assert [r.seed for r in runs[:6]] == [0] * 6  # every cell's first seed before any second seed
    assert runs[0].folder == tmp_path / "Pong" / "space" / "seed0"
    with pytest.raises(ValueError, match="unknown ablations"):
        plan(["Pong"], [0], 10, tmp_path, ablations=["space", "moc"])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        plan(["Pong"], [0], 0, tmp_path)


def test_a_run_is_done_only_once_scored_at_its_last_step(tmp_path: Path) -> None:
    run = AblationRun("Pong", "space_moc", 0, 300, tmp_path)
    assert not run.done()
    run.eval_path.write_text(json.dumps(_eval(120, 0.5, 0.2)))
    assert not run.done()  # scored before the end of its schedule: resumed, not reused
    run.eval_path.write_text(json.dumps(_eval(300, 0.5, 0.2)))
    assert run.done()
    run.eval_path.write_text("{not json")
    assert not run.done()


def test_scores_and_spread_over_seeds(tmp_path: Path) -> None:
    s = scores_of(_eval(300, 0.8, 0.3))
    assert s["f1_all"] == 0.8 and s["f1_moving"] == pytest.approx(0.81) and s["ap"] == 0.4
    assert s["few_shot_1"] == pytest.approx(0.5 + 1 / 256) and s["ami"] == 0.3 and s["samples"] == 40
    assert s["truth_few_shot_1"] == pytest.approx(0.6 + 1 / 256) and s["truth_ami"] == 0.4
    empty = scores_of(_eval(300, 0.0, None))
    assert empty["few_shot_1"] is None and empty["ami"] is None
    assert empty["truth_ami"] == 0.4  # a model that finds nothing is still scored at the truth boxes
    assert "truth_ami" not in scores_of(_eval(300, 0.5, 0.2, truth=False))

    rows = [
        {"game": "Pong", "ablation": a, "seed": seed, "scores": scores_of(_eval(300, f1, ami))}
        for a, f1s, amis in (("space_moc", (0.8, 0.9), (0.3, None)), ("space", (0.0, 0.0), (None, None)))
        for seed, f1, ami in zip((0, 1), f1s, amis, strict=True)
    ]
    cells = summarise(rows)
    assert [c["ablation"] for c in cells] == ["space", "space_moc"]  # the ablation order, not the input's
    moc = cells[1]
    assert moc["seeds"] == [0, 1]
    assert moc["f1_all"]["mean"] == pytest.approx(0.85) and moc["f1_all"]["std"] == pytest.approx(0.05)
    assert moc["ami"] == {"mean": 0.3, "std": 0.0, "n": 1}  # the seed with nothing to cluster is left out
    assert cells[0]["ami"] is None

    result = {"games": ["Pong"], "seeds": [0, 1], "steps": 300, "threads": 1, "command": "moc-envs bench ablation",
              "rows": rows, "cells": cells, "missing": ["Pong/space_m/seed0"], "failures": []}  # fmt: skip
    _write(result, tmp_path)
    md = (tmp_path / "ablation.md").read_text()
    assert "| Pong | SPACE + motion + continuity (MOC) | 2 | 0.850 ± 0.050" in md
    assert "Not run yet: Pong/space_m/seed0" in md
    assert all(title in md for _, title in METRICS)
    assert json.loads((tmp_path / "ablation.json").read_text())["cells"][1]["f1_all"]["mean"] == pytest.approx(0.85)
    assert (tmp_path / "ablation.png").stat().st_size > 0


def test_cells_committed_by_an_earlier_session_are_kept_not_trained_again(tmp_path: Path) -> None:
    from benchmarks.ablation.table import run

    out = tmp_path / "results"
    out.mkdir()
    rows = [{"game": "Pong", "ablation": a, "seed": 0, "run": "gone", "scores": scores_of(_eval(5, 0.5, 0.2))}
            for a in ("space", "space_m", "space_moc")]  # fmt: skip
    (out / "ablation.json").write_text(json.dumps({"steps": 5, "rows": rows}))
    # No dataset and no run folder: anything trained would fail; nothing is.
    result = run(["Pong"], [0], 5, tmp_path / "runs", tmp_path / "data", 1, 1, out)
    assert result["missing"] == [] and result["failures"] == [] and len(result["rows"]) == 3
    assert not (tmp_path / "data").exists()
    from benchmarks.ablation.table import _recorded

    assert _recorded(out, 6) == {} and len(_recorded(out, 5)) == 3  # another budget's cells are not kept
    # Cells scored before the truth-box figures existed are not kept: they are trained again.
    old = [{**r, "scores": scores_of(_eval(5, 0.5, 0.2, truth=False))} for r in rows]
    (out / "ablation.json").write_text(json.dumps({"steps": 5, "rows": old}))
    assert _recorded(out, 5) == {}


def test_gather_only_trains_nothing_and_lists_what_is_missing(tmp_path: Path) -> None:
    from benchmarks.ablation.table import run

    result = run(["Pong"], [0], 5, tmp_path / "runs", tmp_path / "data", 1, 1, None, train=False)
    assert result["rows"] == [] and len(result["missing"]) == 3 and not (tmp_path / "data").exists()
