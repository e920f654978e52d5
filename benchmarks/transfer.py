"""What the learned detector's errors cost an agent: one agent's games, seen by both detectors.

``moc-envs bench transfer [--game Pong] [--agent DIR] [--steps 3000] [--seeds 5 6]``

Two copies of ``MOC/<Game>-v0``, ``detector="ram"`` (the RAM oracle) and ``detector="space"``
(the learned detector), run in lockstep: the same seed and, every step, the same action (the
agent's, on the observation of the detector it was trained on), so both emulators go through
the same states (checked every step: their RAM must stay equal, or the run stops with an
error). Each step yields the same moment as two observations, and the report says where they
differ and what that does to the agent's choice:

- per slot: how often the oracle sees the object and the learned detector does not (misses),
  how long the runs of consecutive misses are, and the other way round (extra objects); the
  miss rate apart from and touching another object (oracle boxes at most ``TOUCH_GAP`` px apart:
  Pong's ball on a paddle, Boxing's clinches), where detectors trained on motion blobs fail;
- per feature, where both see the object: the mean and 99th percentile of the absolute
  difference, in pixels (pixels per step for velocities);
- action agreement: the share of steps where the agent picks the same action on both
  observations, over all steps and over the steps where both see every object;
- attribution: the agreement again after the learned observation takes the oracle's values
  of the objects it missed or added (their whole rows), of one feature group (position, size,
  velocity: those columns of every slot and step) or of one slot: the groups whose
  substitution restores most agreement are what the agent's transfer is most sensitive to.

Writes ``transfer.json`` / ``.md`` / ``.png`` into ``--out``.
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
    markdown_table,
    not_available,
    torch_threads,
    write_results,
)

__all__ = ["FEATURE_GROUPS", "lockstep", "analyse", "run", "main"]

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "position (x, y)": ("x", "y"),
    "size (w, h)": ("w", "h"),
    "velocity (dx, dy)": ("dx", "dy"),
}
"""Columns of the object observation substituted together in the attribution (besides the rows
of objects that one detector sees and the other does not, substituted whole)."""

TOUCH_GAP = 2.0
"""An object whose oracle box lies within this many pixels of another present object's (edge to
edge) is touching it: the motion targets' 3 x 3 closing joins such sprites into one blob."""

# Pixels per unit of each observation column (present has none).
_PIXELS = {"x": 160.0, "y": 210.0, "w": 160.0, "h": 210.0, "dx": 160.0, "dy": 210.0}


class LockstepError(RuntimeError):
    """The two emulators left the same state: the comparison would be meaningless."""


def lockstep(
    policy: Any, game: str, seeds: Sequence[int], steps: int, device: str = "auto", threads: int = 1
) -> dict[str, np.ndarray]:
    """Play ``steps`` steps, split over ``seeds``, with both detectors in lockstep; return both observations.

    The agent acts on the observation of ``policy.detector`` (its training detector). Returns
    ``{"ram": (T, F), "space": (T, F)}`` flat observations of the same T moments.
    """
    import gymnasium as gym

    import moc_envs  # noqa: F401  (registers MOC/<Game>-v0)

    drive = policy.detector if policy.detector in ("ram", "space") else "ram"
    out: dict[str, list[np.ndarray]] = {"ram": [], "space": []}
    per_seed = max(1, steps // max(1, len(seeds)))
    for seed in seeds:
        envs = {
            "ram": gym.make(f"MOC/{game}-v0", detector="ram", obs_mode="flat"),
            "space": gym.make(f"MOC/{game}-v0", detector="space", obs_mode="flat", device=device,
                              threads=threads),
        }  # fmt: skip
        try:
            obs = {k: e.reset(seed=seed)[0] for k, e in envs.items()}
            for t in range(per_seed):
                ram_a = envs["ram"].unwrapped.ale.getRAM()  # type: ignore[attr-defined]
                ram_b = envs["space"].unwrapped.ale.getRAM()  # type: ignore[attr-defined]
                if not np.array_equal(ram_a, ram_b):
                    raise LockstepError(f"seed {seed}, step {t}: the two emulators' RAM differs")
                for k in out:
                    out[k].append(obs[k])
                action = int(np.asarray(policy(obs[drive][None]))[0])
                ended = False
                for k, env in envs.items():
                    obs[k], _, term, trunc, _ = env.step(action)
                    ended |= bool(term or trunc)
                if ended:
                    break
        finally:
            for env in envs.values():
                env.close()
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of consecutive True in ``mask``."""
    runs, n = [], 0
    for m in mask:
        if m:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs


def _touching(obs: np.ndarray, slots: Sequence[str], col: dict[str, int]) -> dict[str, np.ndarray]:
    """Per slot, the steps where its box lies within ``TOUCH_GAP`` px of another present object's."""
    boxes = {
        s: np.stack([obs[:, col[f"{s}.{f}"]] * _PIXELS[f] for f in ("x", "y", "w", "h")], axis=1) for s in slots
    }
    shown = {s: obs[:, col[f"{s}.present"]] > 0.5 for s in slots}
    out = {}
    for s in slots:
        near = np.zeros(len(obs), bool)
        a = boxes[s]
        for o in slots:
            if o == s:
                continue
            b = boxes[o]
            gap_x = np.maximum(b[:, 0] - (a[:, 0] + a[:, 2]), a[:, 0] - (b[:, 0] + b[:, 2]))
            gap_y = np.maximum(b[:, 1] - (a[:, 1] + a[:, 3]), a[:, 1] - (b[:, 1] + b[:, 3]))
            near |= shown[o] & (np.maximum(gap_x, gap_y) <= TOUCH_GAP)
        out[s] = shown[s] & near
    return out


def analyse(policy: Any, ram: np.ndarray, space: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Misses, feature differences, action agreement and its attribution (see the module doc)."""
    if ram.shape != space.shape or ram.shape[1] != len(names):
        raise ValueError(f"expected two (T, {len(names)}) arrays, got {ram.shape} and {space.shape}")
    slots = list(dict.fromkeys(n.split(".")[0] for n in names))
    col = {n: i for i, n in enumerate(names)}
    present = {s: (ram[:, col[f"{s}.present"]] > 0.5, space[:, col[f"{s}.present"]] > 0.5) for s in slots}
    touching = _touching(ram, slots, col)
    per_slot = {}
    for s, (r, learned) in present.items():
        missed = r & ~learned
        near = r & touching[s]
        per_slot[s] = {
            "seen_touching": int(near.sum()),
            "miss_rate_touching": float((missed & near).sum() / near.sum()) if near.any() else None,
            "miss_rate_apart": float((missed & ~near).sum() / (r & ~near).sum()) if (r & ~near).any() else None,
            "seen_by_oracle": int(r.sum()),
            "missed": int(missed.sum()),
            "miss_rate": float(missed.sum() / r.sum()) if r.any() else None,
            "extra": int((learned & ~r).sum()),
            "longest_miss_run": max(_runs(missed), default=0),
            "mean_miss_run": float(np.mean(_runs(missed))) if missed.any() else None,
        }
    features = {}
    for n, i in col.items():
        slot, feat = n.split(".")
        if feat == "present":
            continue
        both = present[slot][0] & present[slot][1]
        d = np.abs(space[both, i] - ram[both, i]) * _PIXELS[feat]
        features[n] = {"mean_px": float(d.mean()) if d.size else None,
                       "p99_px": float(np.percentile(d, 99)) if d.size else None}  # fmt: skip
    reference = np.asarray(policy(ram))

    def agreement(obs: np.ndarray, rows: np.ndarray | None = None) -> float:
        same = np.asarray(policy(obs)) == reference
        return float(same[rows].mean() if rows is not None else same.mean())

    all_seen = np.logical_and.reduce([r == learned for r, learned in present.values()])
    substituted = {}
    obs = space.copy()
    for s, (r, learned) in present.items():
        rows = r != learned
        idx = [i for n, i in col.items() if n.startswith(f"{s}.")]
        obs[np.ix_(rows, idx)] = ram[np.ix_(rows, idx)]
    substituted["oracle's missed and extra objects"] = agreement(obs)
    for label, cols in FEATURE_GROUPS.items():
        obs = space.copy()
        idx = [i for n, i in col.items() if n.split(".")[1] in cols]
        obs[:, idx] = ram[:, idx]
        substituted[f"oracle's {label}"] = agreement(obs)
    for s in slots:
        obs = space.copy()
        idx = [i for n, i in col.items() if n.startswith(f"{s}.")]
        obs[:, idx] = ram[:, idx]
        substituted[f"oracle's {s}"] = agreement(obs)
    return {
        "steps": int(len(ram)),
        "per_slot": per_slot,
        "features": features,
        "action_agreement": agreement(space),
        "action_agreement_where_presence_agrees": agreement(space, all_seen) if all_seen.any() else None,
        "steps_where_presence_agrees": int(all_seen.sum()),
        "agreement_after_substitution": substituted,
    }


def run(
    game: str,
    agent: str | None,
    steps: int,
    seeds: Sequence[int],
    out: Path | None = None,
    device: str = "auto",
    threads: int = 1,
) -> dict[str, Any]:
    """Lockstep play and analysis of ``agent`` (default: the shipped agent of ``game``)."""
    import moc_envs.agents
    from benchmarks.common import learned_weights
    from moc_envs.games import get_game
    from moc_envs.perception.observation import feature_names

    spec = get_game(game)
    if learned_weights(spec.name) is None:
        result: dict[str, Any] = {"game": spec.name, "note": not_available(spec.name)}
    else:
        policy = moc_envs.agents.load_folder(agent) if agent else moc_envs.agents.load(spec.name)
        obs = lockstep(policy, spec.name, seeds, steps, device, threads)
        result = {
            "game": spec.name,
            "agent": agent or f"moc_envs.agents.load({spec.name!r})",
            "agent_detector": policy.detector,
            "seeds": list(seeds),
            **analyse(policy, obs["ram"], obs["space"], feature_names(spec)),
        }
    if out is not None:
        write_results(out, "transfer", result, _markdown(result), "Agent transfer: RAM-oracle vs learned objects")
        if "agreement_after_substitution" in result:
            sub = result["agreement_after_substitution"]
            bar_plot(
                out / "transfer.png",
                ["learned objects as they are", *sub],
                [result["action_agreement"], *sub.values()],
                "share of steps with the same action as on the oracle's objects",
                f"{spec.name}: what restores the agent's choices",
            )
    return result


def _markdown(r: dict[str, Any]) -> str:
    if "note" in r:
        return f"{r['game']}: {r['note']}."
    slots = markdown_table(
        ["slot", "seen by the oracle", "missed by the learned detector", "miss rate", "mean / longest miss run",
         "extra (learned only)", f"seen touching another object (<= {TOUCH_GAP:g} px)", "miss rate touching",
         "miss rate apart"],
        [(s, v["seen_by_oracle"], v["missed"], v["miss_rate"],
          f"{v['mean_miss_run'] or 0:.1f} / {v['longest_miss_run']}", v["extra"], v.get("seen_touching"),
          v.get("miss_rate_touching"), v.get("miss_rate_apart")) for s, v in r["per_slot"].items()],
    )  # fmt: skip
    feats = markdown_table(
        ["feature", "mean abs. difference (px)", "99th percentile (px)"],
        [(n, v["mean_px"], v["p99_px"]) for n, v in r["features"].items()],
    )
    sub = markdown_table(
        ["learned observation", "action agreement with the oracle's"],
        [("as it is", r["action_agreement"]),
         *(("with the " + k, v) for k, v in r["agreement_after_substitution"].items())],
    )  # fmt: skip
    where = r["action_agreement_where_presence_agrees"]
    return (
        f"Agent: {r['agent']} (trained on {r['agent_detector']} objects); {r['steps']:,} steps of its "
        f"play (seeds {r['seeds']}), the same moments seen by the RAM oracle and by the learned "
        "detector (two emulators in lockstep, RAM checked equal every step).\n\n"
        f"The agent picks the same action on both observations on {r['action_agreement']:.1%} of the "
        f"steps; on the {r['steps_where_presence_agrees']:,} steps where both see the same objects, "
        f"{where:.1%}.\n\n"
        f"## Objects\n\n{slots}\n\n## Features where both see the object\n\n{feats}\n\n"
        f"## What restores the agent's choices\n\n{sub}\n\n![attribution](transfer.png)\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench transfer",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--game", default="Pong", help="game of the agent")
    p.add_argument("--agent", default=None, help="agent folder (default: the shipped agent of --game)")
    p.add_argument("--steps", type=int, default=3000, help="env steps, split over the seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 6], help="env seeds, one game each")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    torch_threads(args.threads)
    steps = 60 if args.quick else args.steps
    result = run(args.game, args.agent, steps, args.seeds, args.out, args.device, args.threads)
    if "action_agreement" in result:
        print(f"{result['game']}: action agreement {result['action_agreement']:.3f} over {result['steps']} steps")
    return result


if __name__ == "__main__":
    main()
