"""The z_what classifier's options chosen on held-out data instead of set by hand per game.

:data:`CLASSIFIER_CANDIDATES` are the labels per class, method, size weight, colour weight and
ambiguity ratio that :func:`trainers.classify.centroids.fit_classifier` takes (Skiing's hand-found
``--labels-per-class 64 --method prototypes --size-weight 3 --max-ratio 1`` among them).
:func:`choose_classifier_options` fits each on one half of the labelled predictions and scores
it on the other; :func:`choose_options` cuts the validation split into those halves by stack.
These are the labels the classifier is fitted on anyway, a handful per category: the one
derived setting that reads labels (the others, :mod:`trainers.detector.derive`, read frames).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainers.classify.centroids import fit_classifier, score_classifier

__all__ = ["ClassifierOptions", "CLASSIFIER_CANDIDATES", "choose_classifier_options", "choose_options", "pick_candidate"]


@dataclass(frozen=True)
class ClassifierOptions:
    """The options of :func:`trainers.classify.centroids.fit_classifier` that used to be set by hand."""

    labels_per_class: int = 8
    method: str = "kmeans"
    size_weight: float = 0.0
    max_ratio: float = 0.9
    colour_weight: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)


CLASSIFIER_CANDIDATES: tuple[ClassifierOptions, ...] = tuple(
    ClassifierOptions(n, method, weight, ratio, colour)
    for n in (8, 16, 32, 64)
    for method in ("kmeans", "prototypes")
    for colour in (0.0, 3.0)
    for weight in (0.0, 3.0)
    for ratio in (1.0, 0.9)
)
"""Ordered by what they ask for: fewer labelled predictions first, then the simpler method and
features, and no ambiguity test (``max_ratio`` 1.0) before one: the test must name the held-out half
better by more than the tolerance to be kept. On a tie it used to win, and then it refused
objects of later game states that the val split never showed (SpaceInvaders' aliens of later
waves as "unknown": `docs/results.md`). Skiing's hand-found choice (64, prototypes, 3, 1.0) is
among them."""


def choose_classifier_options(
    z: np.ndarray,
    labels: np.ndarray,
    sizes: np.ndarray,
    fit_half: np.ndarray,
    candidates: tuple[ClassifierOptions, ...] = CLASSIFIER_CANDIDATES,
    seed: int = 0,
    tolerance: float = 0.002,
    colours: np.ndarray | None = None,
) -> tuple[ClassifierOptions, list[dict[str, Any]]]:
    """The candidate whose classifier, fitted on the samples where ``fit_half`` is True, names
    the other samples best; and every candidate's score.

    ``z`` (N, D), ``labels`` (N,) category or "", ``sizes`` (N, 2) and ``colours`` (N, 3) as for
    :func:`trainers.classify.centroids.fit_classifier`; without ``colours`` the candidates with a
    ``colour_weight`` are left out. Accuracy counts "unknown" as wrong. A candidate
    within ``tolerance`` of the best accuracy that comes earlier in ``candidates`` (fewer labels,
    a simpler method) wins, or its colour twin where that is strictly better (:func:`pick_candidate`).
    Raises ValueError when either half has no labelled sample.
    """
    z, sizes = np.asarray(z), np.asarray(sizes)
    labels = np.asarray(labels, dtype=object)
    fit_half = np.asarray(fit_half, bool)
    if not (len(z) == len(labels) == len(sizes) == len(fit_half)):
        raise ValueError(
            f"z, labels, sizes and fit_half need one row per sample, got {len(z)}, {len(labels)}, "
            f"{len(sizes)} and {len(fit_half)}"
        )
    if colours is None:  # the candidates that read colours cannot be fitted: left out
        candidates = tuple(c for c in candidates if not c.colour_weight)
    rgb = np.zeros((len(z), 3)) if colours is None else np.asarray(colours)
    if len(rgb) != len(z):
        raise ValueError(f"colours need one row per sample, got {len(rgb)} for {len(z)}")
    if not candidates:
        raise ValueError("no candidate options to choose from")
    for name, half in (("fit", fit_half), ("score", ~fit_half)):
        if not any(labels[half].tolist()):
            raise ValueError(f"the {name} half of the samples holds no labelled prediction")
    table: list[dict[str, Any]] = []
    for opt in candidates:
        try:
            clf = fit_classifier(
                z[fit_half], labels[fit_half], opt.labels_per_class, seed,
                max_ratio=opt.max_ratio, method=opt.method, sizes=sizes[fit_half], size_weight=opt.size_weight,
                colours=rgb[fit_half], colour_weight=opt.colour_weight,
            )  # fmt: skip
        except ValueError as err:  # e.g. degenerate features: this candidate cannot be fitted here
            table.append({**opt.as_json(), "accuracy": None, "unknown_rate": None, "error": str(err)})
            continue
        score = score_classifier(clf, z[~fit_half], labels[~fit_half], sizes[~fit_half], rgb[~fit_half])
        table.append({**opt.as_json(), "accuracy": score["accuracy"], "unknown_rate": score["unknown_rate"]})
    if not any(row["accuracy"] is not None for row in table):
        raise ValueError(f"no candidate could be fitted on the fit half: {table[0].get('error')}")
    return candidates[pick_candidate(candidates, [row["accuracy"] for row in table], tolerance)], table


def pick_candidate(candidates: tuple[ClassifierOptions, ...], accuracies: list[float | None], tolerance: float = 0.002) -> int:
    """Index of the chosen candidate: the earliest within ``tolerance`` of the best accuracy, unless
    its twin that also reads the object's colour names the held-out half strictly better.

    Colour costs nothing to read (the pixel-tight boxes find it) and tells apart what shape alone
    cannot, such as a paddle cut by the wall from the ball; a small gain on the val split stands
    for rare cases that matter to a slot (Pong's spurious Ball boxes, `docs/results.md`). Where the
    two tie (Boxing's boxers) the simpler one stays.
    """
    scored = [a for a in accuracies if a is not None]
    if not scored:
        raise ValueError("no candidate has an accuracy to choose by")
    best = max(scored)
    chosen = next(i for i, a in enumerate(accuracies) if a is not None and a >= best - tolerance)
    if candidates[chosen].colour_weight:
        return chosen
    plain = dataclasses.replace(candidates[chosen], colour_weight=0.0)
    twins = [
        i for i, c in enumerate(candidates)
        if c.colour_weight and dataclasses.replace(c, colour_weight=0.0) == plain
        and accuracies[i] is not None and accuracies[i] > accuracies[chosen]
    ]  # fmt: skip
    return max(twins, key=lambda i: accuracies[i]) if twins else chosen


def choose_options(
    z: np.ndarray, labels: np.ndarray, sizes: np.ndarray, stacks: np.ndarray, seed: int = 0, colours: np.ndarray | None = None
) -> tuple[ClassifierOptions, dict[str, Any]]:
    """Options of :data:`CLASSIFIER_CANDIDATES` chosen on the val split's samples:
    fitted on the first half of its stacks, scored on the second (they share few episodes).

    Without ``colours`` the candidates that read them are left out.
    Returns the choice and a record of the search (for classifier.json and the card).
    """
    cut = int(np.max(stacks)) // 2 + 1 if len(stacks) else 0
    fit_half = np.asarray(stacks) < cut
    chosen, table = choose_classifier_options(z, labels, sizes, fit_half, seed=seed, colours=colours)
    best = next(row for row in table if {k: row[k] for k in chosen.as_json()} == chosen.as_json())
    record = {
        "chosen": chosen.as_json(),
        "held_out_accuracy": best["accuracy"],
        "fit_half": f"val stacks 0..{cut - 1} ({int(fit_half.sum())} predictions)",
        "score_half": f"val stacks {cut}.. ({int((~fit_half).sum())} predictions)",
        "candidates": table,
    }
    return chosen, record

