"""AtariARI linear probes on our object observations and z_what features, plus label accuracy.

``moc-envs bench probe [--game Pong] [--steps 10000] [--epochs 100] [--quick]``

Protocol (spec/labels-and-probing.md section 3), with the deviations this CPU
budget needs, all listed in the output:

- data: a random agent that never picks action 0 (as AtariARI's sampler) plays
  ``MOC/<Game>-v0`` (ALE v5, frameskip 4, ``repeat_action_probability=0`` to
  match the v4 ids) in ``make_vec`` envs; labels are ``info["ram_labels"]``
  (the RAM after the step). Deviation: ``--steps`` (default 10,000) instead of 50,000.
- episodes split 70/10/20 into train / val / test; test samples whose RAM equals
  a train sample's are dropped (our stand-in for "identical frame").
- labels with natural-log entropy below 0.6 over all samples are dropped.
- one linear 256-way probe per label on the frozen features (features constant
  over the training split left out: they could only add to the bias), Adam lr 3e-4,
  batch 64, up to ``--epochs`` epochs with early stopping on validation accuracy
  (patience 15) and LR-on-plateau; support-weighted F1 on test; mean per
  category, then the mean over categories.

Representations: (a) our object observation (n_slots x 7, flattened) from the
RAM oracle (``detector="ram"``: an upper bound on what a perfect detector would
give) and from the learned detector, as the env returns it, with a fixed
thermometer code of each slot's position (see below), and with every label of
``info["labels"]`` beside it (:func:`label_code`: what a user of the env gets); (b) z_what features of the
learned detector (the K highest-scoring detections' box and z_what, ordered top
to bottom, zero-padded). Learned rows need ``weights/<Game>``.

Why the thermometer code: the probe is a linear 256-way classifier, and a byte
that is a linear function of one scalar coordinate is not linearly separable
into 256 classes from that scalar (each class would need its own interval, which
a linear softmax over one input cannot carve out beyond a few classes).
AtariARI's encoders output 256 distributed features; our observation packs a
position into one number. :func:`thermometer_positions` spreads each slot's x
and y over one-pixel thresholds (present flag, [x > t] for t = 0..159, [y > t]
for t = 0..209): a fixed, label-free re-coding of the same observation in which
every interval of a coordinate is linearly separable. Nothing in it is learned
or fitted. (A one-hot code of the pixel does the same in principle but learns
far slower at lr 3e-4: each weight sees only the samples of its own pixel.)

Also the direct accuracy of ``info["labels"]`` (labels estimated from the
objects) against ``info["ram_labels"]`` per label: coverage, exact, within 2,
mean absolute error. Writes ``probe.json`` / ``probe.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    add_common_args,
    bar_plot,
    learned_objects_note,
    learned_weights,
    markdown_table,
    not_available,
    torch_threads,
    write_results,
)

__all__ = ["PUBLISHED", "thermometer_positions", "label_code", "collect", "split_episodes", "entropy", "train_probe", "probe_all", "label_accuracy", "run", "main"]

PUBLISHED: dict[str, dict[str, float]] = {
    # AtariARI, random-agent data (spec/labels-and-probing.md section 4).
    "Boxing": {"Majority": 0.01, "ST-DIM": 0.58, "Supervised": 0.83},
    "Breakout": {"Majority": 0.17, "ST-DIM": 0.88, "Supervised": 0.94},
    "Freeway": {"Majority": 0.01, "ST-DIM": 0.81, "Supervised": 0.98},
    "MsPacman": {"Majority": 0.10, "ST-DIM": 0.72, "Supervised": 0.87},
    "Pong": {"Majority": 0.10, "ST-DIM": 0.81, "Supervised": 0.87},
    "Seaquest": {"Majority": 0.29, "ST-DIM": 0.67, "Supervised": 0.85},
    "SpaceInvaders": {"Majority": 0.14, "ST-DIM": 0.57, "Supervised": 0.75},
    "Tennis": {"Majority": 0.09, "ST-DIM": 0.60, "Supervised": 0.81},
}

ENTROPY_MIN = 0.6
PATIENCE = 15
CODE_SUFFIX = ", thermometer positions"
LABELS_SUFFIX = ", thermometer codes"
KIND_NAMES = {"agent": "A", "small": "S", "other": "O", "score": "SC", "misc": "M"}


def thermometer_positions(obs: np.ndarray, n_slots: int) -> np.ndarray:
    """Object observations (N, n_slots * 7) -> (N, n_slots * 371): per slot its present flag,
    [x > t] for t = 0..159 and [y > t] for t = 0..209 (x, y in frame pixels); all zero for an
    empty slot."""
    from moc_envs.perception.detection import FRAME_HEIGHT, FRAME_WIDTH

    obs = np.asarray(obs, dtype=np.float32).reshape(len(obs), n_slots, -1)
    present = obs[:, :, :1] > 0.5
    x = obs[:, :, 1:2] * FRAME_WIDTH
    y = obs[:, :, 2:3] * FRAME_HEIGHT
    code = np.concatenate(
        [present, present & (x > np.arange(FRAME_WIDTH)), present & (y > np.arange(FRAME_HEIGHT))], axis=2
    )
    return code.astype(np.float32).reshape(len(obs), -1)


def label_code(labels: dict[str, Any], names: Sequence[str], n: int) -> np.ndarray:
    """A vector env's ``info["labels"]`` -> (n, 264 * len(names)): per label its given flag,
    [value > t] for t = 0..254 and the value's 8 bits (zero when not given). A fixed code like
    :func:`thermometer_positions`: an interval of a position and a pattern of bits (a brick
    wall's byte) are both linearly separable in it."""
    out = np.zeros((n, len(names), 264), dtype=np.float32)
    for j, lab in enumerate(names):
        given = np.asarray(labels.get(f"_{lab}", np.zeros(n, bool)), dtype=bool)
        if not given.any():
            continue
        v = np.asarray(labels[lab], dtype=np.int64)
        out[:, j, 0] = given
        out[:, j, 1:256] = given[:, None] & (v[:, None] > np.arange(255))
        out[:, j, 256:] = given[:, None] & ((v[:, None] >> np.arange(8)) & 1).astype(bool)
    return out.reshape(n, -1)


def _zwhat_features(dets: Sequence[Any], k: int, dim: int) -> np.ndarray:
    """Top-k detections by score, ordered top to bottom: (x, y, w, h scaled, z_what) each."""
    feats = np.zeros((k, 4 + dim), dtype=np.float32)
    top = sorted(dets, key=lambda d: -d.score)[:k]
    top.sort(key=lambda d: (d.y, d.x))
    for i, d in enumerate(top):
        feats[i, :4] = (d.x / 160, d.y / 210, d.w / 160, d.h / 210)
        if d.z_what is not None:
            feats[i, 4:] = np.asarray(d.z_what, dtype=np.float32).reshape(-1)[:dim]
    return feats.reshape(-1)


def collect(
    game: str, steps: int, seed: int, num_envs: int = 8, learned: bool = False, device: str = "auto"
) -> dict[str, Any]:
    """Play random actions (never 0) in ``num_envs`` envs; record features, labels, episodes.

    With ``learned``, a second vector env with the learned detector is driven with
    the same seeds and actions (ALE is deterministic without sticky actions), so
    both representations describe the same frames.
    """
    from moc_envs.envs.make import make_vec
    from moc_envs.games import get_game

    spec = get_game(game)
    kw = {"ram_labels": True, "repeat_action_probability": 0.0}
    envs = {"ram": make_vec(f"MOC/{spec.name}-v0", num_envs, detector="ram", **kw)}
    if learned:
        envs["learned"] = make_vec(
            f"MOC/{spec.name}-v0", num_envs, detector="space", device=device, allow_unclassified=True, **kw
        )
    rng = np.random.default_rng(seed)
    n_actions = int(envs["ram"].single_action_space.n)
    label_names = list(spec.ram_label_names)
    est_names = list(spec.localization_labels)
    obs: dict[str, list[np.ndarray]] = {name: [] for name in envs}
    coded: dict[str, list[np.ndarray]] = {name: [] for name in envs}
    zwhat: list[np.ndarray] = []
    est: dict[str, dict[str, list[float]]] = {name: {lab: [] for lab in est_names} for name in envs}
    y: list[np.ndarray] = []
    rams: list[bytes] = []
    episode: list[int] = []
    ep_id = np.arange(num_envs)
    next_id = num_envs
    infos: dict[str, dict[str, Any]] = {}
    out_obs: dict[str, np.ndarray] = {}
    for name, env in envs.items():
        out_obs[name], infos[name] = env.reset(seed=seed)
    zdim = 0
    try:
        for _ in range(max(1, steps // num_envs)):
            # Record the current observation with the labels of the same frame.
            ram_lab = infos["ram"]["ram_labels"]
            y.append(np.stack([ram_lab[lab] for lab in label_names], axis=1))
            rams.extend(bytes(e.ale.getRAM()) for e in (envs["ram"].envs[i].unwrapped for i in range(num_envs)))
            episode.extend(ep_id.tolist())
            for name in envs:
                obs[name].append(out_obs[name].reshape(num_envs, -1))
                labels = infos[name]["labels"]
                coded[name].append(label_code(labels, label_names, num_envs))
                for lab in est_names:
                    present = labels.get(f"_{lab}", np.zeros(num_envs, bool))
                    vals = labels.get(lab, np.zeros(num_envs))
                    est[name][lab].extend(np.where(present, vals, np.nan).tolist())
            if learned:
                dets = infos["learned"]["objects"]
                if not zdim:
                    zdim = next((len(d.z_what) for ds in dets for d in ds if d.z_what is not None), 0) or 1
                zwhat.append(np.stack([_zwhat_features(ds, spec.n_slots, zdim) for ds in dets]))
            actions = rng.integers(1, n_actions, size=num_envs)
            for name, env in envs.items():
                out_obs[name], _, term, trunc, infos[name] = env.step(actions)
            done = term | trunc
            # NEXT_STEP autoreset: the frame after a done is the new episode's first.
            for i in np.flatnonzero(done):
                ep_id[i] = next_id
                next_id += 1
    finally:
        for env in envs.values():
            env.close()
    data: dict[str, Any] = {
        "labels": np.concatenate(y).astype(np.int64),
        "label_names": label_names,
        "kinds": [lab.kind for lab in spec.ram_labels],
        "episode": np.asarray(episode),
        "rams": rams,
        "features": {f"objects ({name})": np.concatenate(v) for name, v in obs.items()},
        "estimates": {name: {lab: np.asarray(v, dtype=np.float64) for lab, v in d.items()} for name, d in est.items()},
    }
    for name, v in obs.items():
        positions = thermometer_positions(np.concatenate(v), spec.n_slots)
        data["features"][f"objects ({name}){CODE_SUFFIX}"] = positions
        # What the env gives a user in all: the objects and every label of info["labels"].
        data["features"][f"objects + labels ({name}){LABELS_SUFFIX}"] = np.concatenate([positions, np.concatenate(coded[name])], axis=1)
    if learned:
        data["features"]["z_what (learned)"] = np.concatenate(zwhat)
    return data


def split_episodes(episode: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks train / val / test: episodes shuffled and split 70 / 10 / 20."""
    ids = np.unique(episode)
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    n = len(ids)
    if n < 3:
        raise ValueError(f"only {n} episodes: need at least 3 for a train/val/test split; raise --steps")
    n_test = max(1, int(round(0.2 * n)))
    n_val = max(1, int(round(0.1 * n)))
    train_ids, val_ids, test_ids = ids[: n - n_val - n_test], ids[n - n_val - n_test : n - n_test], ids[n - n_test :]
    return np.isin(episode, train_ids), np.isin(episode, val_ids), np.isin(episode, test_ids)


def entropy(values: np.ndarray) -> float:
    """Natural-log entropy of a label's empirical distribution."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return max(0.0, float(-(p * np.log(p)).sum()))


def train_probe(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray, epochs: int, seed: int,
) -> dict[str, float]:
    """A linear 256-way probe (Adam 3e-4, batch 64, early stopping); test weighted F1 and accuracy."""
    import torch
    from sklearn.metrics import f1_score

    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(y_train)
    xv, xs = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(x_test, dtype=torch.float32)
    probe = torch.nn.Linear(xt.shape[1], 256)
    opt = torch.optim.Adam(probe.parameters(), lr=3e-4)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=5)
    best, best_state, since, used = -1.0, None, 0, 0
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        used += 1
        perm = torch.randperm(len(xt), generator=gen)
        for lo in range(0, len(xt), 64):
            idx = perm[lo : lo + 64]
            loss = torch.nn.functional.cross_entropy(probe(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((probe(xv).argmax(1).numpy() == y_val).mean())
        sched.step(acc)
        if acc > best:
            best, since = acc, 0
            best_state = {k: v.clone() for k, v in probe.state_dict().items()}
        else:
            since += 1
            if since >= PATIENCE:
                break
    if best_state is not None:
        probe.load_state_dict(best_state)
    with torch.no_grad():
        pred = probe(xs).argmax(1).numpy()
    return {
        "f1": float(f1_score(y_test, pred, average="weighted", zero_division=0)),
        "accuracy": float((pred == y_test).mean()),
        "val_accuracy": best,
        "epochs": used,
    }


def probe_all(data: dict[str, Any], epochs: int, seed: int, only: Sequence[str] = ()) -> dict[str, Any]:
    """Probe every representation on every kept label; per-label, per-category and overall F1.

    ``only``: probe just the representations whose name contains one of these strings (all when empty)."""
    from tqdm import tqdm

    train, val, test = split_episodes(data["episode"], seed)
    train_rams = {r for r, m in zip(data["rams"], train, strict=True) if m}
    test &= np.array([r not in train_rams for r in data["rams"]])
    names, kinds, y = data["label_names"], data["kinds"], data["labels"]
    ent = {n: entropy(y[:, j]) for j, n in enumerate(names)}
    kept = [j for j, n in enumerate(names) if ent[n] >= ENTROPY_MIN]
    out: dict[str, Any] = {
        "split_samples": {"train": int(train.sum()), "val": int(val.sum()), "test": int(test.sum())},
        "episodes": int(len(np.unique(data["episode"]))),
        "entropy": ent,
        "dropped_low_entropy": [n for n in names if ent[n] < ENTROPY_MIN],
        "representations": {},
    }
    # A feature constant over the training split can only act as the probe's bias, so it is left
    # out: the same function class, and Seaquest's 12,985-wide thermometer code shrinks to the
    # columns its objects ever change.
    if only:
        data = {**data, "features": {rep: x for rep, x in data["features"].items() if any(o in rep for o in only)}}
        if not data["features"]:
            raise ValueError(f"--representations {list(only)} matches none of the representations")
    varying = {rep: np.flatnonzero(np.ptp(x[train], axis=0) > 0) for rep, x in data["features"].items()}
    jobs = [(rep, j) for rep in data["features"] for j in kept]
    per: dict[str, dict[str, Any]] = {rep: {} for rep in data["features"]}
    for rep, j in tqdm(jobs, desc="probes", unit="probe"):
        x = data["features"][rep][:, varying[rep]]
        per[rep][names[j]] = train_probe(x[train], y[train, j], x[val], y[val, j], x[test], y[test, j], epochs, seed)
    for rep, labels in per.items():
        cats: dict[str, list[float]] = {}
        for j in kept:
            cats.setdefault(KIND_NAMES[kinds[j]], []).append(labels[names[j]]["f1"])
        cat_mean = {k: float(np.mean(v)) for k, v in cats.items()}
        out["representations"][rep] = {
            "labels": labels,
            "categories": cat_mean,
            "overall": float(np.mean(list(cat_mean.values()))) if cat_mean else None,
            "dim": int(data["features"][rep].shape[1]),
            "dim_varying": int(len(varying[rep])),
        }
    return out


def label_accuracy(estimates: dict[str, np.ndarray], truth: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Per estimated label: coverage, exact, within 2, MAE and the median signed error (estimate
    minus RAM: a constant offset shows here) over the steps where it was present."""
    out: dict[str, dict[str, float]] = {}
    for lab, est in estimates.items():
        t = truth[:, names.index(lab)].astype(np.float64)
        present = ~np.isnan(est)
        signed = est[present] - t[present]
        err = np.abs(signed)
        out[lab] = {
            "coverage": float(present.mean()),
            "exact": float((err == 0).mean()) if len(err) else float("nan"),
            "within_2": float((err <= 2).mean()) if len(err) else float("nan"),
            "mae": float(err.mean()) if len(err) else float("nan"),
            "median_error": float(np.median(signed)) if len(err) else float("nan"),
        }
    return out


def run(
    game: str = "Pong", steps: int = 10_000, epochs: int = 100, num_envs: int = 8, seed: int = 0,
    device: str = "auto", out: Path | None = None, only: Sequence[str] = (),
) -> dict[str, Any]:
    """Collect, probe, score labels; write the files when ``out`` is set (``only``: see :func:`probe_all`)."""
    from moc_envs.games import get_game

    spec = get_game(game)
    learned = learned_weights(spec.name) is not None
    data = collect(spec.name, steps, seed, num_envs, learned, device)
    result: dict[str, Any] = {
        "game": spec.name,
        "steps": int(len(data["labels"])),
        "epochs_max": epochs,
        "published": PUBLISHED.get(spec.name, {}),
        "learned_available": learned,
        "probe": probe_all(data, epochs, seed, only),
        "label_accuracy": {
            name: label_accuracy(est, data["labels"], data["label_names"]) for name, est in data["estimates"].items()
        },
        "deviations": [
            f"{len(data['labels'])} samples instead of 50,000 (CPU budget)",
            f"up to {epochs} epochs (protocol: 100), patience {PATIENCE}",
            "ALE v5 with repeat_action_probability=0 and frameskip 4 instead of NoFrameskip-v4 + max-and-skip 4 "
            "(no max-pooling over the last two frames; labels are the RAM after the step)",
            "test samples dropped when their RAM (not the frame) equals a train sample's",
            f"{num_envs} parallel envs: episodes are the split unit as in the protocol",
            "features constant over the training split left out of each probe (the same function class: "
            "such a feature only adds to the bias; 'dim' counts all, the JSON's dim_varying those used; "
            "since 2026-12-02, after the Pong, Boxing and MsPacman reports)",
        ],
    }
    if only:
        result["deviations"].append(
            f"only the representations whose name contains {' or '.join(repr(o) for o in only)} were probed (CPU budget)"
        )
    if not learned:
        result["learned_note"] = not_available(spec.name)
    else:
        result["learned_objects_note"] = learned_objects_note(spec.name, device)
    if out is not None:
        _write(result, out)
    return result


def _write(result: dict[str, Any], out: Path) -> None:
    game = result["game"]
    probe = result["probe"]
    reps = probe["representations"]
    pub = result["published"]
    cats = sorted({c for r in reps.values() for c in r["categories"]})
    rows: list[list[Any]] = []
    empty = result.get("learned_objects_note", "")
    for rep, r in reps.items():
        source = "measured here"
        if empty and rep.startswith("objects (learned)"):
            source = "measured here on an all-zero observation: " + empty.removeprefix("not available: ")
        dim = r["dim"] if r.get("dim_varying", r["dim"]) == r["dim"] else f"{r['dim']} ({r['dim_varying']} varying)"
        rows.append([f"ours: {rep}", dim, *(r["categories"].get(c) for c in cats), r["overall"], source])
    if not result["learned_available"]:
        for rep in ("objects (learned)", f"objects (learned){CODE_SUFFIX}", "z_what (learned)"):
            rows.append([f"ours: {rep}", None, *(None for _ in cats), None, result["learned_note"]])
    for method, f1 in pub.items():
        rows.append([f"{method} (AtariARI, published)", None, *(None for _ in cats), f1, "published, 50k steps"])
    summary = markdown_table(["representation", "dim", *cats, "overall F1", "source"], rows)
    label_rows = []
    for rep, r in reps.items():
        for lab, m in r["labels"].items():
            label_rows.append([rep, lab, m["f1"], m["accuracy"], m["val_accuracy"], m["epochs"]])
    per_label = markdown_table(["representation", "label", "test F1", "test accuracy", "best val accuracy", "epochs"], label_rows)
    acc_rows = [
        [det, lab, m["coverage"], m["exact"], m["within_2"], m["mae"], m.get("median_error")]
        for det, labels in result["label_accuracy"].items()
        for lab, m in labels.items()
    ]
    if not result["learned_available"]:
        acc_rows.append(["learned", "-", None, None, None, None, None])
    acc = markdown_table(["detector", "label", "coverage", "exact", "within 2", "MAE", "median error"], acc_rows)
    ent = ", ".join(f"{k} {v:.2f}" for k, v in probe["entropy"].items())
    body = (
        f"Game: {game}; {result['steps']} samples from {probe['episodes']} episodes "
        f"(train {probe['split_samples']['train']}, val {probe['split_samples']['val']}, test "
        f"{probe['split_samples']['test']}). Label entropy (nats): {ent}; dropped (< {ENTROPY_MIN}): "
        f"{', '.join(probe['dropped_low_entropy']) or 'none'}. Categories: A agent, S small object, "
        "O other object, SC score/clock, M misc; overall = mean over categories.\n\n"
        "`objects (ram)` is the object observation built from the RAM oracle's boxes: an upper bound "
        "on what a perfect detector gives, not a pixel result. `objects (...)` rows probe the env's "
        "observation as it is (positions as numbers in [0, 1]); a linear 256-way probe cannot "
        "read a byte out of one scalar coordinate (each class would need its own interval of the "
        "coordinate), so these rows stay low whatever the detector. `thermometer positions` re-codes "
        "the same observation without fitting anything: each slot's x and y spread over "
        "one-pixel thresholds (present flag, [x > t] for t < 160, [y > t] for t < 210), a "
        "distributed form like the features AtariARI's encoders give their probes, in which any "
        "interval of a coordinate is linearly separable. Objects carry no score, so the score "
        "labels (SC) are out of their reach. `objects + labels` adds everything else the env gives: "
        "every label of `info[\"labels\"]` (label links, the HUD reader's scores, clocks and lives, "
        "the readouts' counts, identities, headings and brick walls; the RAM oracle has the links "
        "only), each coded as its given flag, [value > t] for t < 255 and its 8 bits (a fixed code, "
        "nothing fitted). This is the probe per category of what a user of the env gets. The direct "
        "accuracy table below reads the positions without a probe.\n\n"
        f"## Probe F1 (AtariARI protocol)\n\n{summary}\n\n## Per label\n\n{per_label}\n\n"
        "## Direct accuracy of info[\"labels\"] against info[\"ram_labels\"]\n\n"
        "Coverage: fraction of steps where the label was estimated (its object seen); exact / "
        "within 2 / MAE over those steps; median error: the median of estimate minus RAM (a constant offset of the "
        f"box against the one the label was calibrated on shows here).\n\n{acc}\n\n## Deviations from the protocol\n\n"
        + "\n".join(f"- {d}" for d in result["deviations"])
        + "\n\n![probe F1](probe.png)\n"
    )
    labels = [f"ours: {k}" for k in reps] + [f"{m} (published)" for m in pub]
    values = [r["overall"] or 0.0 for r in reps.values()] + list(pub.values())
    bar_plot(out / "probe.png", labels, values, "probe F1 (mean over categories)", f"{game}: AtariARI probe F1")
    write_results(out, "probe", result, body, "AtariARI probe benchmark")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench probe",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--game", default="Pong", help="game (an AtariARI game)")
    p.add_argument("--steps", type=int, default=10_000, help="samples to collect (protocol: 50,000)")
    p.add_argument("--epochs", type=int, default=100, help="max probe epochs (early stopping, patience 15)")
    p.add_argument("--num-envs", type=int, default=8, help="parallel envs used to collect")
    p.add_argument("--representations", nargs="*", default=[], help="probe only the representations whose name contains one of these (e.g. thermometer); all by default")
    args = p.parse_args(argv)
    torch_threads(args.threads)
    if args.quick:
        args.steps, args.epochs, args.num_envs = 240, 2, 8
    result = run(args.game, args.steps, args.epochs, args.num_envs, args.seed, args.device, args.out, args.representations)
    for rep, r in result["probe"]["representations"].items():
        print(f"{rep:<22} overall F1 {r['overall']}")
    return result


if __name__ == "__main__":
    main()
