"""Category extents and HUD regions: implausible boxes are "unknown", fitted from play, safely stored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moc_envs.errors import CorruptWeightsError
from moc_envs.perception.classifier import (
    CLASSIFIER_FILE,
    CLASSIFIER_JSON,
    UNKNOWN,
    load_classifier,
    save_classifier,
)
from moc_envs.weights.manifest import write_manifest
from trainers.classify.classifier import fit_classifier
from trainers.classify.extents import NamedBoxes, fit_extents, fit_hud_regions

CLASSES = ("Ball", "Enemy", "Player")


@pytest.fixture
def clf():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 8))
    lab = rng.integers(0, 3, 120)
    z = centres[lab] + rng.normal(0, 0.5, (120, 8))
    return fit_classifier(
        z, np.array([CLASSES[i] for i in lab], dtype=object), labels_per_class=4, seed=0
    )


def test_a_box_outside_its_category_extents_is_unknown(clf) -> None:
    clf.extents = {"Player": {"w": [2.0, 8.0], "h": [10.0, 24.0], "cx": [138.0, 146.0]}}
    clf.__post_init__()
    boxes = np.array(
        [[140, 100, 4, 16], [140, 100, 40, 5], [20, 100, 4, 16], [20, 100, 40, 5]], np.float64
    )
    names = ["Player", "Player", "Player", "Enemy"]
    # Too wide; in a column the player never leaves; another category's box is not bounded.
    assert clf.within_extents(names, boxes) == ["Player", UNKNOWN, UNKNOWN, "Enemy"]
    with pytest.raises(ValueError, match="one box per name"):
        clf.within_extents(names, boxes[:2])


def test_a_box_centred_in_a_hud_region_is_unknown_unless_its_category_is_exempt(clf) -> None:
    clf.hud_regions = [{"box": [40.0, 160.0, 120.0, 180.0], "exempt": ["Ball"]}]
    clf.__post_init__()
    boxes = np.array([[60, 168, 8, 6], [60, 168, 2, 2], [60, 100, 8, 6]], np.float64)
    assert clf.within_extents(["Enemy", "Ball", "Enemy"], boxes) == [UNKNOWN, "Ball", "Enemy"]


def test_extents_and_regions_survive_saving_and_loading(tmp_path, clf) -> None:
    clf.extents = {"Player": {"w": [2.0, 8.0], "cy": [None, 190.0]}}
    clf.hud_regions = [{"box": [0.0, 0.0, 160.0, 20.0], "exempt": []}]
    save_classifier(clf, tmp_path, "Pong")
    write_manifest(tmp_path, "Pong", written=[CLASSIFIER_FILE, CLASSIFIER_JSON])
    loaded = load_classifier(tmp_path, "Pong")
    assert loaded.extents == {"Player": {"w": (2.0, 8.0), "cy": (None, 190.0)}}
    assert loaded.hud_regions == clf.hud_regions


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("extents", {"Player": {"w": [8.0, 2.0]}}, "low <= high"),
        ("extents", {"Goalie": {"w": [2.0, 8.0]}}, "not one of the classes"),
        ("extents", {"Player": {"depth": [2.0, 8.0]}}, "keys among"),
        ("extents", {"Player": {"w": ["2", 8.0]}}, "finite numbers or null"),
        ("extents", [1, 2], "must be an object"),
        ("hud_regions", [{"box": [10.0, 0.0, 5.0, 20.0], "exempt": []}], "x0 <= x1"),
        ("hud_regions", [{"box": [0.0, 0.0, 5.0, 20.0], "exempt": ["Goalie"]}], "categories among"),
        ("hud_regions", {"box": [0, 0, 1, 1]}, "must be a list"),
    ],
)
def test_malformed_extents_are_refused_on_load(tmp_path, clf, key, value, message) -> None:
    save_classifier(clf, tmp_path, "Pong")
    path = tmp_path / CLASSIFIER_JSON
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    write_manifest(tmp_path, "Pong", written=[CLASSIFIER_FILE, CLASSIFIER_JSON])
    with pytest.raises(CorruptWeightsError, match=message):
        load_classifier(tmp_path, "Pong")


def test_fit_bounds_sizes_and_only_the_axes_the_game_fixes() -> None:
    rng = np.random.default_rng(0)
    n = 500
    player = np.c_[
        np.full(n, 4.0), rng.uniform(14, 16, n), rng.uniform(140, 142, n), rng.uniform(40, 190, n)
    ]
    ball = np.c_[
        np.full(20, 2.0), np.full(20, 4.0), rng.uniform(0, 160, 20), rng.uniform(30, 190, 20)
    ]
    ext = fit_extents({"Player": player, "Ball": ball})
    assert set(ext) == {"Player"}  # too few ball boxes to say anything
    bounds = ext["Player"]
    assert bounds["w"] == [round(4 / 1.5 - 1, 2), 7.0]
    assert bounds["h"][0] <= 14 / 1.5 - 1 + 0.1 and bounds["h"][1] >= 16 * 1.5
    assert bounds["cx"][0] == pytest.approx(player[:, 2].min() - 6, abs=0.01) and "cy" not in bounds
    with pytest.raises(ValueError, match="size_factor >= 1"):
        fit_extents({"Player": player}, size_factor=0.5)


def test_hud_regions_cover_where_the_hud_is_and_exempt_categories_seen_there() -> None:
    cover = np.zeros((210, 160), np.int64)
    cover[5:15, 20:60] = 100  # a score, always there
    cover[170:175, 50:110] = 40  # a bar of changing length
    cover[100, 100] = 1  # once: noise
    named = NamedBoxes(
        {"Player": np.array([[8.0, 10, 30, 10], [8, 10, 80, 120]])}, cover, frames=100
    )
    regions = fit_hud_regions(named, hud_share=0.02)
    assert [r["box"] for r in regions] == [[19.0, 4.0, 61.0, 16.0], [49.0, 169.0, 111.0, 176.0]]
    assert [r["exempt"] for r in regions] == [["Player"], []]


def test_a_category_mostly_wrong_in_the_fit_is_withheld(tmp_path, clf) -> None:
    from trainers.classify.extents import withheld_categories

    named = NamedBoxes(
        {"Player": np.zeros((90, 4)), "Ball": np.zeros((5, 4))}, np.zeros((210, 160), np.int64), frames=100,
        named={"Player": 100, "Ball": 40, "Enemy": 10, "Pill": 500, "unknown": 400},
    )  # fmt: skip
    # Ball: 5 of 40 right; Enemy: too few boxes to judge; Pill: no slot, so no truth to judge by.
    assert withheld_categories(named, ("Player", "Enemy", "Ball")) == ["Ball"]
    clf.withheld = ("Ball",)
    clf.__post_init__()
    boxes = np.array([[10, 10, 2, 2], [140, 100, 4, 16]], np.float64)
    assert clf.within_extents(["Ball", "Player"], boxes) == [UNKNOWN, "Player"]
    save_classifier(clf, tmp_path, "Pong")
    write_manifest(tmp_path, "Pong", written=[CLASSIFIER_FILE, CLASSIFIER_JSON])
    assert load_classifier(tmp_path, "Pong").withheld == ("Ball",)
    clf.withheld = ("Goalie",)
    with pytest.raises(ValueError, match="withheld must list categories"):
        clf.__post_init__()


@pytest.mark.parametrize("game", ["Boxing", "Carnival", "Seaquest", "Tennis"])
def test_many_boxes_are_judged_as_one_by_one(game, monkeypatch):
    # The array path for many boxes names exactly what the per-box loop names, on a shipped
    # classifier's extents, HUD regions and withheld categories.
    from moc_envs.perception import classifier as clf_module
    from moc_envs.weights.manifest import verify_folder
    from moc_envs.weights.search import weights_root

    clf = clf_module.read_classifier(verify_folder(weights_root() / game, game), game)
    rng = np.random.default_rng(0)
    pool = [*clf.classes, clf_module.UNKNOWN]
    changed, few = 0, clf_module._FEW_NAMES
    for _ in range(100):
        m = int(rng.integers(few + 1, 60))
        names = [pool[i] for i in rng.integers(0, len(pool), m)]
        boxes = np.c_[rng.uniform(-10, 170, (m, 2)), rng.uniform(0, 60, (m, 2))]
        fast = clf.within_extents(names, boxes)
        monkeypatch.setattr(clf_module, "_FEW_NAMES", 10**9)
        assert fast == clf.within_extents(names, boxes)
        monkeypatch.setattr(clf_module, "_FEW_NAMES", few)
        changed += sum(a != b for a, b in zip(fast, names, strict=True))
    assert changed > 100  # the boxes do fall outside extents and inside HUD regions
