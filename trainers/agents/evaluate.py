"""Evaluate trained agents (the protocol of the agents benchmark) and ship one.

    moc-envs agent-eval --run runs/agents/pong_ram --run runs/agents/pong_space
        [--detectors ram,space] [--episodes 30] [--envs 8] [--workers 2] [--threads 1]
        [--max-steps 10000] [--export weights/Pong/agent [--use-eval]]

Protocol: each agent plays ``--episodes`` (30) full episodes with its deterministic policy
(argmax of the logits) on every detector of ``--detectors``, the one it was trained on and the
other (an agent trained on RAM-oracle objects played on learned ones, and back: what the
detector's errors cost). Episodes run ``--envs`` at a time in one vector env, each env playing
a fixed share of the episodes (4, 4, ..., 3 for 30 over 8), so that short episodes are not
over-represented as they would be by taking the first 30 to finish. An episode longer than
``--max-steps`` env steps is truncated by the ALE (``max_num_frames_per_episode``) and counted
with ``truncated``; a Pong game ends by itself when a side reaches 21. Reported: mean, standard
deviation (ddof=1), min, max of the returns, the episode lengths, the number truncated, and the
points won and lost (the positive and negative rewards): a truncated game's return counts only
the points played so far, its share of points won says who was winning.

A run's results go to ``<run>/eval.json``, tagged with the checkpoint's SHA-256 and frames, which
``benchmarks.agents`` reads. ``--export DIR`` (one ``--run``) writes the run's policy as a shipped
agent folder (:func:`moc_envs.agents.save_agent`) with this evaluation in its ``agent.json``;
an agent whose run has not reached its ``--frames`` is labelled "partial, N frames".
``--agent DIR`` evaluates an exported agent folder instead of a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moc_envs.errors import CorruptWeightsError, MocEnvsError
from moc_envs.games import get_game
from moc_envs.perception.distractors import DISTRACTOR_KINDS
from moc_envs.weights.atomic import atomic_write_text
from moc_envs.weights.manifest import write_manifest
from moc_envs.weights.safe_read import finite_for_json
from trainers.agents.targets import AGENT_GAMES
from trainers.agents.train import FRAMESKIP, load_checkpoint, policy_from_checkpoint

__all__ = ["EVAL_FILE", "CARD_FILE", "DEFAULT_EPISODES", "DEFAULT_MAX_STEPS", "episode_quotas", "eval_file",
           "evaluate", "evaluate_run", "export_run", "agent_card", "main"]

EVAL_FILE = "eval.json"
CARD_FILE = "card.md"
"""The shipped agent's Markdown card, beside agent.json."""
DEFAULT_EPISODES = 30
DEFAULT_MAX_STEPS = 10_000
"""Cap of an evaluation episode in env steps (40,000 frames, 11 minutes of play): a Pong game
between close players lasts about 4,000-6,000 steps, a lost one under 1,000."""


def eval_file(coast: int = 0, distractors: str | None = None) -> str:
    """A run's evaluation file: ``eval.json``, or ``eval_coast<N>.json`` for an evaluation whose
    env coasted missed objects for N steps, ``eval_<kind>.json`` (``eval_both.json`` ...) for one
    on frames with distractors (kept apart: the shipped agent's card quotes eval.json)."""
    name = EVAL_FILE if coast == 0 else f"eval_coast{coast}.json"
    return name if distractors is None else name.replace(".json", f"_{distractors}.json")


def episode_quotas(episodes: int, envs: int) -> list[int]:
    """How many episodes each env plays: ``episodes`` split as evenly as possible over ``envs``."""
    if episodes < 1 or envs < 1:
        raise ValueError(f"episodes and envs must be >= 1, got {episodes} and {envs}")
    base, extra = divmod(episodes, envs)
    return [base + (i < extra) for i in range(envs)]


def evaluate(
    policy: Callable[[np.ndarray], Any],
    game: str,
    detector: str,
    episodes: int = DEFAULT_EPISODES,
    envs: int = 8,
    workers: int = 1,
    threads: int = 1,
    seed: int = 10_000,
    max_steps: int = DEFAULT_MAX_STEPS,
    device: str = "auto",
    progress: bool = True,
    coast: int = 0,
    distractors: str | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``MOC/<game>-v0`` with ``detector``; return the statistics.

    ``coast``: the env's tracker keeps a missed object in the observation for up to that many
    steps at its predicted box (:class:`moc_envs.perception.tracking.SlotTracker`); 0 as in training.
    ``distractors``: PermaKey's bars on every frame the detector sees (Noisy Atari), env i's bars
    seeded from ``seed + i``; None: clean frames.

    ``policy``: batch of flat observations ``(N, F)`` -> ``(N,)`` actions (a
    :class:`moc_envs.agents.Policy`). Env i is seeded ``seed + i``; the evaluation seeds differ
    from the training ones (0 upwards) by default.
    """
    from tqdm import tqdm

    from moc_envs.envs.make import make_vec

    if detector not in ("space", "ram"):
        raise ValueError(f"detector must be 'space' or 'ram', got {detector!r}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    name = get_game(game).name
    envs = min(envs, episodes)
    quotas = episode_quotas(episodes, envs)
    extra: dict[str, Any] = {"device": device} if detector == "space" else {}
    if distractors is not None:
        extra.update(distractors=distractors, distractor_seed=seed)
    venv = make_vec(
        f"MOC/{name}-v0", envs, detector=detector, workers=min(workers, envs), threads=threads,
        autoreset_mode="SameStep", obs_mode="flat", max_num_frames_per_episode=max_steps * FRAMESKIP,
        coast=coast, **extra,
    )  # fmt: skip
    returns: list[list[float]] = [[] for _ in range(envs)]
    lengths: list[list[int]] = [[] for _ in range(envs)]
    truncated: list[list[bool]] = [[] for _ in range(envs)]
    won: list[list[float]] = [[] for _ in range(envs)]
    lost: list[list[float]] = [[] for _ in range(envs)]
    ret, plus, minus = np.zeros(envs), np.zeros(envs), np.zeros(envs)
    length = np.zeros(envs, dtype=np.int64)
    start = time.perf_counter()
    steps = 0
    bar = tqdm(total=episodes, desc=f"{name} on {detector}", unit="episode", disable=not progress)
    try:
        obs, _ = venv.reset(seed=[seed + i for i in range(envs)])
        while any(len(r) < q for r, q in zip(returns, quotas, strict=True)):
            obs, rewards, terms, truncs, _ = venv.step(np.asarray(policy(obs)))
            steps += envs
            ret += rewards
            plus += np.maximum(rewards, 0.0)
            minus += np.maximum(-rewards, 0.0)
            length += 1
            for i in np.flatnonzero(terms | truncs):
                if len(returns[i]) < quotas[i]:  # an env past its share plays on, unrecorded
                    returns[i].append(float(ret[i]))
                    lengths[i].append(int(length[i]))
                    truncated[i].append(bool(truncs[i] and not terms[i]))
                    won[i].append(float(plus[i]))
                    lost[i].append(float(minus[i]))
                    bar.update(1)
                ret[i], plus[i], minus[i], length[i] = 0.0, 0.0, 0.0, 0
    finally:
        bar.close()
        venv.close()
    seconds = time.perf_counter() - start
    flat_r = [r for rs in returns for r in rs]
    flat_l = [n for ns in lengths for n in ns]
    flat_won, flat_lost = [w for ws in won for w in ws], [x for xs in lost for x in xs]
    points = sum(flat_won) + sum(flat_lost)
    return {
        "game": name,
        "detector": detector,
        "episodes": len(flat_r),
        "mean": float(np.mean(flat_r)),
        "std": float(np.std(flat_r, ddof=1)) if len(flat_r) > 1 else 0.0,
        "min": float(np.min(flat_r)),
        "max": float(np.max(flat_r)),
        "returns": flat_r,
        "lengths": flat_l,
        "mean_length": float(np.mean(flat_l)),
        "truncated": int(sum(t for ts in truncated for t in ts)),
        "points_won": flat_won,
        "points_lost": flat_lost,
        "won_share": sum(flat_won) / points if points > 0 else None,
        "max_steps": max_steps,
        "seed": seed,
        "coast": coast,
        "distractors": distractors,
        "envs": envs,
        "seconds": seconds,
        "steps_per_s": steps / seconds if seconds > 0 else None,
    }


def _load_run(run: Path, tries: int = 3) -> tuple[dict[str, Any], Any]:
    """(record, policy) of a run's last checkpoint; retried when a live run replaces it meanwhile."""
    for attempt in range(tries):
        try:
            record, _ = load_checkpoint(run)
            return record, policy_from_checkpoint(run)
        except CorruptWeightsError:
            if attempt == tries - 1:
                raise
            time.sleep(2.0)
    raise AssertionError("unreachable")


def evaluate_run(
    run: str | Path, detectors: Sequence[str], write: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """Evaluate a training run's last checkpoint on each detector; write ``<run>/eval.json``.

    ``kwargs`` go to :func:`evaluate`. The file records which checkpoint was evaluated (its
    SHA-256 and frames), so a reader can tell a stale evaluation from a current one.
    """
    run = Path(run)
    record, policy = _load_run(run)
    result = {
        "run": str(run),
        "game": record["game"],
        "trained_on": record["detector"],
        "frames": int(record["frames"]),
        "target_frames": int(record["target_frames"]),
        "policy_sha256": record["policy_sha256"],
        "evaluated": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "results": {},
    }
    for detector in detectors:
        r = evaluate(policy, record["game"], detector, **kwargs)
        result["results"][detector] = r
        print(
            f"[agent_eval] {run} (trained on {record['detector']}, {record['frames']:,} frames) on "
            f"{detector}: {r['mean']:+.2f} +- {r['std']:.2f} over {r['episodes']} episodes "
            f"({r['truncated']} truncated, {r['steps_per_s']:.0f} steps/s)",
            file=sys.stderr,
        )
    if write:
        path = run / eval_file(kwargs.get("coast", 0), kwargs.get("distractors"))
        result["results"] = {**_earlier_results(path, record["policy_sha256"]), **result["results"]}
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return result


def _earlier_results(path: Path, policy_sha256: str) -> dict[str, Any]:
    """The results ``path`` holds for the same checkpoint: evaluating on one detector keeps the
    other detector's (a later checkpoint's evaluation replaces them all)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("policy_sha256") != policy_sha256:
        return {}
    results = earlier.get("results")
    return dict(results) if isinstance(results, dict) else {}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """The evaluation as agent.json records it: per detector, mean / std / episodes / truncated."""
    keep = ("mean", "std", "min", "max", "episodes", "truncated", "mean_length", "max_steps", "seed")
    n = sorted({r["episodes"] for r in result["results"].values()})
    return {
        "protocol": f"{'/'.join(map(str, n))} episodes per detector, deterministic policy, std with "
        "ddof=1 (moc-envs agent-eval)",
        "frames": result["frames"],
        "evaluated": result["evaluated"],
        "results": {d: {**{k: r[k] for k in keep}, **_points(r)} for d, r in result["results"].items()},
    }


def _points(r: dict[str, Any]) -> dict[str, Any]:
    """Mean points won / lost per episode and the share won (absent from older evaluations)."""
    if "points_won" not in r:
        return {}
    return {"mean_points_won": float(np.mean(r["points_won"])), "mean_points_lost": float(np.mean(r["points_lost"])),
            "won_share": r["won_share"]}


def export_run(
    run: str | Path, folder: str | Path, evaluation: dict[str, Any] | None, notes: Sequence[str] = ()
) -> Path:
    """Write a run's last checkpoint as a shipped agent folder, with ``evaluation`` in agent.json.

    ``evaluation``: :func:`evaluate_run`'s result for this very checkpoint (its SHA-256 must
    match), or None to ship without one (recorded as null). ``notes``: paragraphs for the card's
    Notes section (why this agent ships, what its evaluation means), kept in agent.json.
    """
    from moc_envs.agents import AGENT_FILE, save_agent

    run = Path(run)
    record, policy = _load_run(run)
    if evaluation is not None and evaluation.get("policy_sha256") != record["policy_sha256"]:
        raise CorruptWeightsError(
            f"the evaluation is of checkpoint {evaluation.get('policy_sha256')}, the run's last is "
            f"{record['policy_sha256']} (the run went on meanwhile): evaluate again, then export"
        )
    info = {**policy.info, "evaluation": _summary(evaluation) if evaluation is not None else None,
            "source_run": str(run), "policy_sha256_checkpoint": record["policy_sha256"],
            "notes": [str(n) for n in notes]}
    folder = save_agent(folder, record["game"], policy.hidden, policy.action, policy.normalisation,
                        policy.activation, info)
    atomic_write_text(folder / CARD_FILE, agent_card(json.loads((folder / AGENT_FILE).read_text())))
    write_manifest(folder, record["game"], written=[CARD_FILE])
    return folder


def record_evaluation(folder: str | Path, results: dict[str, dict[str, Any]]) -> Path:
    """Replace a shipped agent's evaluation (agent.json, its card, its manifest) with ``results``
    (per detector, :func:`evaluate`'s result for this very folder's policy).

    For a re-evaluation after the bundled learned detector changed: the evaluation then names the
    detector weights it played on (``learned_detector_sha256``).
    """
    from moc_envs.agents import AGENT_FILE
    from moc_envs.weights.manifest import sha256_file
    from moc_envs.weights.search import weights_dir

    folder = Path(folder)
    info = json.loads((folder / AGENT_FILE).read_text())
    summary = _summary({"frames": info["frames"], "evaluated": time.strftime("%Y-%m-%d %H:%M:%S %z"), "results": results})
    if "space" in results:
        summary["learned_detector_sha256"] = sha256_file(weights_dir(info["game"]) / "detector.safetensors")
    info["evaluation"] = summary
    atomic_write_text(folder / AGENT_FILE, json.dumps(finite_for_json(info), indent=2, allow_nan=False) + "\n")
    atomic_write_text(folder / CARD_FILE, agent_card(info))
    write_manifest(folder, info["game"], written=[AGENT_FILE, CARD_FILE])
    return folder


def agent_card(info: dict[str, Any]) -> str:
    """The Markdown card of a shipped agent, from its agent.json."""
    arch = info["architecture"]
    layers = " -> ".join(str(n) for n in [arch["input"], *arch["hidden"], arch["actions"]])
    names = {"ram": "RAM-oracle objects (detector=\"ram\")", "space": "learned objects (detector=\"space\")"}
    features = info.get("features", "slots")
    order = "nearest first" if features == "relative" else "in screen order"
    lines = [
        f"# {info['game']} agent: PPO on {names.get(info['detector'], info['detector'])}",
        "",
        f"**Status: {info['status']}.**" + (
            " Trained for part of its planned budget: its scores are those of a partially "
            "trained agent, not the final result." if info.get("partial") else ""),
        "",
        f"- Trained on: {names.get(info['detector'], info['detector'])} of `{info['env_id']}`, "
        f"{info['frames']:,} emulator frames ({info['env_steps']:,} env steps of 4 frames, sticky "
        "actions 0.25), seed " + str(info.get("seed")) + ".",
        f"- Policy: {info['algorithm']}; MLP {layers}, {arch['activation']}; "
        + (f"it reads the observation as seen from the player, each category's objects {order} "
           f"(features: {features}, `moc_envs.agent_features`), " if features != "slots" else "")
        + "the observation is standardised with the training run's running mean / variance (in agent.json).",
        f"- Hyperparameters: {info['hyperparameters']}.",
        "",
        "## Evaluation",
        "",
    ]
    ev = info.get("evaluation")
    if ev is None:
        lines.append("Not evaluated.")
    else:
        lines += [
            f"{ev['protocol']}; evaluated {ev['evaluated']} at {ev['frames']:,} frames"
            + (" (partial)" if info.get("partial") else "") + ".",
            "",
            "| played on | mean return | std | min | max | episodes | truncated | points won / lost per "
            "episode (share won) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for det, r in ev["results"].items():
            pts = (f"{r['mean_points_won']:.1f} / {r['mean_points_lost']:.1f} ({r['won_share']:.2f})"
                   if "won_share" in r and r["won_share"] is not None else "-")
            lines.append(f"| {names.get(det, det)} | {r['mean']:+.2f} | {r['std']:.2f} | {r['min']:+.0f} | "
                         f"{r['max']:+.0f} | {r['episodes']} | {r['truncated']} | {pts} |")
        if any(r["truncated"] for r in ev["results"].values()):
            cap = max(r["max_steps"] for r in ev["results"].values())
            lines += ["", f"Truncated episodes stopped at {cap:,} env steps ({cap * FRAMESKIP:,} frames) before "
                      "either side reached 21: their return counts only the points played by then."]
        if ev.get("learned_detector_sha256"):
            lines += ["", f"Learned objects: the bundled detector whose `detector.safetensors` has SHA-256 "
                      f"`{ev['learned_detector_sha256'][:16]}...`."]
        game = AGENT_GAMES.get(info["game"])
        if game is not None:
            lines += ["", f"Anchors (published, not measured here): {game.anchors_text}."]
    if info.get("notes"):
        lines += ["", "## Notes", ""]
        for note in info["notes"]:
            lines += [note, ""]
        lines.pop()
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import moc_envs.agents",
        f"policy = moc_envs.agents.load(\"{info['game']}\")   # NumPy in, action out; no torch, no pickle",
        "```",
        "",
        f"`moc-envs demo --game {info['game']} --agent` writes a GIF of it playing.",
        "",
    ]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="moc-envs agent-eval",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", action="append", default=[], help="agent run folder (repeatable)")
    p.add_argument("--agent", default=None, help="an exported agent folder to evaluate instead of a run")
    p.add_argument("--detectors", default="ram,space", help="comma-separated detectors to play on")
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, help="episodes per agent and detector")
    p.add_argument("--envs", type=int, default=8, help="episodes played at a time")
    p.add_argument("--workers", type=int, default=2, help="processes the envs are split over")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (the learned detector)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="env steps after which an episode is truncated")
    p.add_argument("--seed", type=int, default=10_000, help="seed of env i is seed + i")
    p.add_argument("--device", default="auto", help="torch device of the learned detector")
    p.add_argument("--coast", type=int, default=0,
                   help="steps the env keeps a missed object in the observation at its predicted box "
                   "(written to <run>/eval_coast<N>.json)")
    p.add_argument("--distractors", choices=DISTRACTOR_KINDS, default=None,
                   help="play on Noisy Atari frames: PermaKey's moving bars (written to <run>/eval_<kind>.json)")
    p.add_argument("--export", default=None, help="write the (single) --run's policy as an agent folder here")
    p.add_argument("--note", action="append", default=[],
                   help="with --export: a paragraph for the card's Notes section (repeatable)")
    p.add_argument("--use-eval", action="store_true",
                   help="with --export: ship with the run's eval.json (it must be of the run's last checkpoint) "
                   "instead of evaluating again")
    p.add_argument("--record", action="store_true",
                   help="with --agent: write this evaluation into the agent folder (agent.json, card, manifest)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    args = p.parse_args(argv)
    args.detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    if args.distractors is not None and (args.record or args.export):
        p.error("--distractors evaluates on noisy frames; an agent folder records clean evaluations only "
                "(drop --record / --export, or evaluate without --distractors)")
    bad = [d for d in args.detectors if d not in ("space", "ram")]
    if bad or not args.detectors:
        p.error(f"--detectors takes space and/or ram, got {bad or args.detectors}")
    if bool(args.run) == bool(args.agent):
        p.error("give one or more --run folders, or one --agent folder")
    if args.export and len(args.run) != 1:
        p.error(f"--export writes one agent: give exactly one --run, got {len(args.run)}")
    if args.record and not args.agent:
        p.error("--record writes into an exported agent folder: give --agent DIR (a run's results go to <run>/eval.json)")
    if args.record and args.coast:
        p.error("--record keeps the plain evaluation (drop --coast)")
    if args.note and not args.export:
        p.error("--note goes with --export (it is written into the exported agent's card)")
    if args.coast and args.export:
        p.error("--coast evaluates a variant of the env; ship with the plain evaluation (drop --coast)")
    if not 0 <= args.coast <= 30:
        p.error(f"--coast must be in 0..30 steps, got {args.coast}")
    if args.use_eval and not args.export:
        p.error("--use-eval goes with --export (it ships the run's existing evaluation)")
    for name in ("episodes", "envs", "workers", "threads", "max_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    from moc_envs.threads import set_torch_threads

    args = _parse(argv)
    set_torch_threads(args.threads)
    kwargs = {"episodes": args.episodes, "envs": args.envs, "workers": args.workers,
              "threads": args.threads, "seed": args.seed, "max_steps": args.max_steps,
              "device": args.device, "progress": args.progress, "coast": args.coast,
              "distractors": args.distractors}
    try:
        if args.agent:
            from moc_envs.agents import load_folder

            policy = load_folder(args.agent)
            out = {}
            for d in args.detectors:
                r = out[d] = evaluate(policy, policy.game, d, **kwargs)
                print(f"[agent_eval] {args.agent} on {d}: {r['mean']:+.2f} +- {r['std']:.2f} over "
                      f"{r['episodes']} episodes ({r['truncated']} truncated)", file=sys.stderr)
            if args.record:
                record_evaluation(args.agent, out)
            return out
        if args.use_eval:
            path = Path(args.run[0]) / EVAL_FILE
            if not path.is_file():
                raise MocEnvsError(f"--use-eval: {path} does not exist; evaluate the run first (drop --use-eval)")
            results = {args.run[0]: json.loads(path.read_text())}
        else:
            results = {run: evaluate_run(run, args.detectors, **kwargs) for run in args.run}
        if args.export:
            path = export_run(args.run[0], args.export, results[args.run[0]], notes=args.note)
            print(f"[agent_eval] exported {args.run[0]} to {path}", file=sys.stderr)
        return results
    except MocEnvsError as err:
        print(f"moc-envs agent-eval: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
