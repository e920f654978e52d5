"""z_what classifier: fit on clustered latents, "unknown" for far points, safe verified loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moc_envs.errors import CorruptWeightsError, MissingWeightsError
from moc_envs.perception.classifier import (
    CLASSIFIER_FILE,
    CLASSIFIER_FORMAT,
    CLASSIFIER_JSON,
    UNKNOWN,
    ZWhatClassifier,
    load_classifier,
    save_classifier,
)
from moc_envs.weights.manifest import MANIFEST_FILE, write_manifest
from trainers.classify.classifier import fit_classifier, score_classifier
from trainers.evaluate.latent_metrics import cluster_scores, few_shot_accuracy

CLASSES = ("Ball", "Enemy", "Player")


def clustered(n: int = 200, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (len(CLASSES), dim))
    lab = rng.integers(0, len(CLASSES), n)
    z = centres[lab] + rng.normal(0, 0.5, (n, dim))
    return z, np.array([CLASSES[i] for i in lab], dtype=object)


def _save(clf, folder, game: str = "Pong"):
    """Save a classifier and record it in the folder's manifest, as trainers.classify.classifier does."""
    path = save_classifier(clf, folder, game)
    write_manifest(folder, game, written=[CLASSIFIER_FILE, CLASSIFIER_JSON])
    return path


@pytest.fixture
def fitted():
    z, lab = clustered()
    # Most samples unlabelled (""), as when only a few crops were named.
    partial = lab.copy()
    partial[50:] = ""
    return fit_classifier(z, partial, labels_per_class=4, seed=0), z, lab


def test_fits_and_predicts_clusters(fitted):
    clf, z, lab = fitted
    assert clf.classes == CLASSES
    z_test, lab_test = clustered(seed=0)  # same centres, so the same categories
    pred = clf.predict(z_test)
    assert np.mean(np.array(pred, dtype=object) == lab_test) > 0.98
    report = score_classifier(clf, z_test, lab_test)
    assert report["accuracy"] > 0.98 and set(report["by_category"]) == set(CLASSES)


def test_far_points_are_unknown(fitted):
    clf, z, _ = fitted
    far = z[:3] + 1000.0
    assert clf.predict(far) == [UNKNOWN] * 3
    assert clf.predict(np.zeros((0, z.shape[1]))) == []
    with pytest.raises(ValueError, match="8 columns"):
        clf.predict(np.zeros((2, 5)))


def test_save_load_round_trip(tmp_path, fitted):
    clf, z, _ = fitted
    path = _save(clf, tmp_path)
    data = json.loads(path.read_text())
    assert data["format"] == CLASSIFIER_FORMAT and data["game"] == "Pong" and data["classes"] == list(CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CLASSIFIER_JSON, CLASSIFIER_FILE, MANIFEST_FILE]
    loaded = load_classifier(tmp_path, "Pong")
    assert loaded.predict(z) == clf.predict(z)
    for name in ("centroids", "centroid_class", "radius", "mean", "scale"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(clf, name))


def test_refuses_a_tampered_file(tmp_path, fitted):
    clf, _, _ = fitted
    _save(clf, tmp_path)
    path = tmp_path / CLASSIFIER_FILE
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptWeightsError, match="classifier.safetensors does not match manifest.json: possible corruption or tampering"):
        load_classifier(tmp_path)


def test_refuses_missing_manifest_and_other_game(tmp_path, fitted):
    clf, _, _ = fitted
    with pytest.raises(MissingWeightsError, match="classifier file .* is missing"):
        load_classifier(tmp_path)
    _save(clf, tmp_path)
    with pytest.raises(CorruptWeightsError, match="for game 'Pong', not 'Boxing'"):
        load_classifier(tmp_path, "Boxing")
    (tmp_path / MANIFEST_FILE).unlink()
    with pytest.raises(CorruptWeightsError, match="has no manifest.json: possible corruption or tampering"):
        load_classifier(tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scale", 0.0, "scale must be > 0 everywhere"),
        ("radius", -1.0, "radius must be > 0 everywhere"),
        ("centroids", np.nan, "centroids must be finite, got 1 NaN"),
        ("mean", np.inf, "mean must be finite"),
    ],
)
def test_degenerate_arrays_are_refused(fitted, field, value, message):
    clf, _, _ = fitted
    arrays = {n: getattr(clf, n).copy() for n in ("centroids", "centroid_class", "radius", "mean", "scale")}
    arrays[field].flat[0] = value
    with pytest.raises(ValueError, match=message):
        ZWhatClassifier(clf.classes, **arrays)


def test_fit_input_errors():
    with pytest.raises(ValueError, match="no labelled samples"):
        fit_classifier(np.zeros((3, 2)), np.array(["", "", ""], dtype=object))
    with pytest.raises(ValueError, match="one label per row"):
        fit_classifier(np.zeros((3, 2)), np.array(["a"], dtype=object))


def test_latent_scores_on_clusters():
    z, lab = clustered()
    fs = few_shot_accuracy(z, lab, repeats=2)
    assert set(fs) == {"1", "4", "16", "64"} and fs["16"]["mean"] > 0.95
    km = cluster_scores(z, lab)
    assert km["k"] == 3 and km["ami"] > 0.9 and km["ari"] > 0.9
    shuffled = np.random.default_rng(1).permutation(lab)
    assert cluster_scores(z, shuffled)["ami"] < 0.1


def test_ambiguous_points_are_unknown(tmp_path):
    z, lab = clustered()
    clf = fit_classifier(z, lab, labels_per_class=8, seed=0, max_ratio=0.9)
    centre = {c: z[lab == c].mean(0) for c in CLASSES}
    # Midway between two categories: inside the radius, but as close to one as to the other.
    mid = (centre["Ball"] + centre["Enemy"]) / 2
    near_ball = centre["Ball"] + 0.1 * (centre["Enemy"] - centre["Ball"])
    assert clf.predict(np.stack([mid, near_ball])) == [UNKNOWN, "Ball"]
    clf.radius[:] = 1e6  # the radius alone would accept the midpoint
    assert clf.predict(mid[None]) == [UNKNOWN]
    _save(clf, tmp_path)
    loaded = load_classifier(tmp_path, "Pong")
    assert loaded.max_ratio == pytest.approx(0.9) and loaded.predict(mid[None]) == [UNKNOWN]
    loaded.max_ratio = 1.0  # off: the nearest category wins
    assert loaded.predict(mid[None])[0] in ("Ball", "Enemy")
    with pytest.raises(ValueError, match="max_ratio must be in"):
        fit_classifier(z, lab, max_ratio=0.0)


def test_prototypes_handle_a_category_with_two_looks():
    rng = np.random.default_rng(0)
    # "Tree" has two looks on either side of "Flag": one centroid per category lands on Flag.
    looks = {"Tree": [-6.0, 6.0], "Flag": [0.0]}  # one informative z_what dimension
    z, lab = [], []
    for c, centres in looks.items():
        for centre in centres:
            z.append(centre + rng.normal(0, 0.4, (150, 1)))
            lab += [c] * 150
    z, lab = np.vstack(z), np.array(lab, dtype=object)
    for method, floor in (("kmeans", 0.0), ("prototypes", 0.97)):
        clf = fit_classifier(z, lab, labels_per_class=8, seed=0, method=method)
        acc = score_classifier(clf, z, lab)["accuracy"]
        assert acc >= floor, (method, acc)
    assert score_classifier(fit_classifier(z, lab, labels_per_class=8, method="kmeans"), z, lab)["accuracy"] < 0.9
    assert clf.info["method"] == "prototypes" and len(clf.centroids) == 16
    with pytest.raises(ValueError, match="method must be one of kmeans, prototypes"):
        fit_classifier(z, lab, method="svm")


def test_box_sizes_as_features(tmp_path):
    rng = np.random.default_rng(0)
    # Same z_what distribution, told apart only by the box size (a ball and a bullet, say).
    z = rng.normal(0, 1, (400, 4))
    lab = np.array(["Ball"] * 200 + ["Bullet"] * 200, dtype=object)
    sizes = np.vstack([rng.normal((8, 8), 0.5, (200, 2)), rng.normal((3, 12), 0.5, (200, 2))])
    plain = fit_classifier(z, lab, labels_per_class=8, max_ratio=1.0)
    assert score_classifier(plain, z, lab)["accuracy"] < 0.8
    sized = fit_classifier(z, lab, labels_per_class=8, max_ratio=1.0, sizes=sizes, size_weight=3.0)
    assert sized.uses_sizes and sized.z_what_dim == 4
    assert score_classifier(sized, z, lab, sizes)["accuracy"] > 0.97
    with pytest.raises(ValueError, match="also reads the boxes' sizes"):
        sized.predict(z)
    with pytest.raises(ValueError, match=r"sizes must be \(400, 2\)"):
        sized.predict(z, sizes[:10])
    assert sized.predict(np.zeros((0, 4)), np.zeros((0, 2))) == []
    _save(sized, tmp_path)
    loaded = load_classifier(tmp_path, "Pong")
    assert loaded.size_dims == 2 and loaded.predict(z, sizes) == sized.predict(z, sizes)
    with pytest.raises(ValueError, match=r"size_weight > 0 needs sizes of shape \(400, 2\)"):
        fit_classifier(z, lab, size_weight=1.0)


def test_object_colours_as_features(tmp_path):
    rng = np.random.default_rng(1)
    # Same shape (z_what) and size, told apart only by colour (Tennis' orange and blue players).
    z = rng.normal(0, 1, (400, 4))
    sizes = rng.normal((13, 23), 0.5, (400, 2))
    lab = np.array(["Player"] * 200 + ["Enemy"] * 200, dtype=object)
    colours = np.vstack([np.tile([240, 128, 128], (200, 1)), np.tile([117, 128, 240], (200, 1))]).astype(np.uint8)
    sized = fit_classifier(z, lab, labels_per_class=8, max_ratio=1.0, sizes=sizes, size_weight=3.0)
    assert score_classifier(sized, z, lab, sizes)["accuracy"] < 0.8
    both = fit_classifier(
        z, lab, labels_per_class=8, max_ratio=1.0, sizes=sizes, size_weight=3.0, colours=colours, colour_weight=3.0
    )
    assert both.uses_sizes and both.uses_colours and both.z_what_dim == 4
    assert both.info["colour_weight"] == 3.0
    assert score_classifier(both, z, lab, sizes, colours)["accuracy"] > 0.97
    with pytest.raises(ValueError, match="also reads the objects' colours"):
        both.predict(z, sizes)
    with pytest.raises(ValueError, match=r"colours must be \(400, 3\)"):
        both.predict(z, sizes, colours[:, :2])
    assert both.predict(np.zeros((0, 4)), np.zeros((0, 2)), np.zeros((0, 3))) == []
    _save(both, tmp_path)
    assert json.loads((tmp_path / CLASSIFIER_JSON).read_text())["colour_dims"] == 3
    loaded = load_classifier(tmp_path, "Pong")
    assert loaded.colour_dims == 3 and loaded.predict(z, sizes, colours) == both.predict(z, sizes, colours)
    # Colours alone, without sizes: the features are z_what then the colour.
    only = fit_classifier(z, lab, labels_per_class=8, max_ratio=1.0, colours=colours, colour_weight=3.0)
    assert not only.uses_sizes and score_classifier(only, z, lab, None, colours)["accuracy"] > 0.97
    with pytest.raises(ValueError, match=r"colour_weight > 0 needs colours of shape \(400, 3\)"):
        fit_classifier(z, lab, colour_weight=1.0)
    with pytest.raises(ValueError, match="colour_dims 0 or 3"):
        ZWhatClassifier(CLASSES, np.zeros((1, 6)), np.zeros(1), np.ones(1), np.zeros(6), np.ones(6), colour_dims=2)


@pytest.mark.parametrize("game", ["SpaceInvaders", "Carnival", "MsPacman", "Tennis", "Pong"])
def test_nearest_centroids_equal_the_full_distance_table(game):
    """The shipped classifiers' decisions through centroid_distances equal those read from the full
    (M, K) norm table bit for bit: rows near centroids, on ties between two centroids, far away."""
    from pathlib import Path

    from moc_envs.perception.classifier import centroid_distances

    clf = load_classifier(Path(__file__).resolve().parents[1] / "weights" / game, game)
    rng = np.random.default_rng(11)
    cents = clf.centroids
    k, f = cents.shape
    pick = rng.integers(0, k, 300)
    rows = [cents[pick] + rng.normal(0, s, (300, f)).astype(np.float32) for s in (0.01, 0.3, 1.0, 5.0)]
    rows.append(cents[pick[:50]].copy())  # on a centroid: distance zero
    a, b = rng.integers(0, k, 50), rng.integers(0, k, 50)
    rows.append(((cents[a] + cents[b]) / 2).astype(np.float32))  # halfway: near-ties across categories
    zs = np.concatenate(rows).astype(np.float32)
    full = np.linalg.norm(zs[:, None, :] - cents[None], axis=-1)
    fast = centroid_distances(zs, cents, clf.centroid_class)
    np.testing.assert_array_equal(fast.argmin(axis=1), full.argmin(axis=1))
    np.testing.assert_array_equal(fast.min(axis=1), full.min(axis=1))
    for cls in range(len(clf.classes)):
        other = clf.centroid_class != cls
        if other.any():
            np.testing.assert_array_equal(fast[:, other].min(axis=1), full[:, other].min(axis=1))
    exact = np.isfinite(fast)
    np.testing.assert_array_equal(fast[exact], full[exact])
    assert exact.mean() < 0.5 or k * len(zs) <= 256  # the point: most pairs never get their norm
