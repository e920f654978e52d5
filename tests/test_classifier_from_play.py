"""moc-envs classifier --from-play: a weights folder's classifier refit on random play named by RAM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from moc_envs.perception.classifier import load_classifier
from moc_envs.weights.search import bundled_games

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif("Pong" not in bundled_games(), reason="no bundled Pong detector")
def test_a_classifier_refit_from_play_names_pong_objects(tmp_path) -> None:
    from trainers.classify.classifier import fit_from_play
    from trainers.classify.play_samples import play_samples

    folder = tmp_path / "Pong"
    shutil.copytree(ROOT / "weights" / "Pong", folder)
    samples = play_samples("Pong", folder, frames=32, seeds=(6000,))
    assert len(samples.z_what) == len(samples.labels) == len(samples.sizes) == len(samples.colours) == len(samples.groups)
    assert {"Player", "Enemy"} <= set(samples.labels.tolist())
    report = fit_from_play("Pong", folder, frames=64, fit_seeds=(6000,), test_seeds=(6100,))
    assert report["test"]["accuracy"] > 0.9
    clf = load_classifier(folder, "Pong")  # the manifest was re-recorded
    assert clf.info["fitted_on"]["fit_seeds"] == [6000] and clf.extents == {}
    assert json.loads((folder / "classifier.json").read_text())["info"]["options_search"]["chosen"]


def test_from_play_and_data_are_exclusive(capsys) -> None:
    from trainers.classify.classifier import main

    with pytest.raises(SystemExit):
        main(["--game", "Pong", "--weights", "weights/Pong"])
    assert "exactly one of --data DATA or --from-play" in capsys.readouterr().err
