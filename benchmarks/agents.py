"""Agents: PPO on MOC objects trained to 10M frames, their evaluation, and a same-budget comparison.

``moc-envs bench agents [--runs runs/agents/pong_ram runs/agents/pong_space]
[--game Pong] [--steps 100000] [--quick]``

Two parts, one report (``agents.json`` / ``.md`` / ``.png``):

1. **Long runs** (:mod:`trainers.agents.train`, 10M frames each, hours on a CPU, run in the
   background): each run folder's ``checkpoint.json`` gives its learning curve (the return of
   every training episode against frames) and its speed; its ``eval.json``
   (:mod:`trainers.agents.evaluate`: 30 episodes, deterministic policy, on RAM-oracle and on learned
   objects) gives the evaluation table, marked stale when it is of an earlier checkpoint than
   the run's last. A run short of its budget is labelled "partial". The game's published anchors
   (:data:`AGENT_GAMES`: SCoBots on RAM objects, deep PPO on pixels, OCAtari's object PPO, human)
   stand beside them, marked as published, not measured here. Nothing is trained in this part.
2. **Same budget, short** (``--steps`` env steps per agent, 100k by default; ``--steps 0`` carries
   the previous report's rows over, saying so): three runs with the same PPO hyperparameters
   (SB3 zoo's Atari PPO: 8 envs, n_steps 128, 4 epochs, batch 256, lr 2.5e-4, clip 0.1,
   ent_coef 0.01), each step 4 emulator frames, sticky actions 0.25:

   - ``objects (learned)``: ``MlpPolicy`` on ``MOC/<Game>-v0`` with the learned detector, 8 envs
     in one :class:`~moc_envs.envs.vector.MocVectorEnv` (batched detection) through
     :class:`moc_envs.envs.sb3.SB3VecEnv`; "not available: no weights for <Game>" without weights;
   - ``objects (ram)``: the same on ``detector="ram"`` (RAM-oracle objects); both object agents
     see their observation through SB3's ``VecNormalize`` (running mean / std of each feature,
     rewards untouched): positions in [0, 1] and velocities of a few hundredths are otherwise
     too small for the MLP to learn from quickly (without it neither object agent moved at 100k
     steps);
   - ``pixels (CNN)``: ``CnnPolicy`` on ``ALE/<Game>-v5`` frames with SB3's Atari preprocessing
     (``make_atari_env``: no-op reset, max-and-skip 4, 84x84 grey, fire reset) and 4 stacked
     frames.

   Learning: the returns and lengths of the episodes that ended in the first and in the last
   quarter of the budget (:func:`verdict`), the mean reward per env step of each rollout, and
   the curve of episode returns against env steps.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    Timer,
    add_common_args,
    learned_objects_note,
    learned_weights,
    markdown_table,
    not_available,
    torch_threads,
    write_results,
)
from trainers.agents.targets import AGENT_GAMES, AgentGame, agent_game

ANCHORS = AGENT_GAMES["Pong"].anchors
DEFAULT_RUNS = AGENT_GAMES["Pong"].runs
TARGET = AGENT_GAMES["Pong"].target

__all__ = ["PPO_KWARGS", "AGENT_GAMES", "AgentGame", "agent_game", "ANCHORS", "DEFAULT_RUNS", "TARGET", "long_run", "train_agent", "verdict", "run", "main"]

PPO_KWARGS: dict[str, Any] = {
    # rl-baselines3-zoo's Atari PPO settings (learning-rate schedules left out).
    "n_steps": 128,
    "n_epochs": 4,
    "batch_size": 256,
    "learning_rate": 2.5e-4,
    "clip_range": 0.1,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
}

DETECTOR_NAMES = {"ram": "RAM-oracle objects", "space": "learned objects"}


def long_run(folder: str | Path) -> dict[str, Any] | None:
    """What a :mod:`trainers.agents.train` run folder says of itself; None when it has no checkpoint.

    Its learning curve (every training episode's end frame and return), frames done and
    planned, speed, and its ``eval.json`` when that is of the run's last checkpoint (else the
    evaluation is kept under ``stale_evaluation``).
    """
    import json

    from moc_envs.perception.distractors import DISTRACTOR_KINDS
    from trainers.agents.evaluate import EVAL_FILE, eval_file
    from trainers.agents.train import FRAMESKIP, read_checkpoint

    folder = Path(folder)
    record = read_checkpoint(folder)
    if record is None:
        return None
    episodes = record.get("episodes") or []
    returns = [e[1] for e in episodes]
    speeds = [s[1] for s in record.get("speed") or []]
    out: dict[str, Any] = {
        "run": str(folder),
        "game": record["game"],
        "detector": record["detector"],
        "frames": int(record["frames"]),
        "target_frames": int(record["target_frames"]),
        "partial": int(record["frames"]) < int(record["target_frames"]),
        "episodes": len(episodes),
        "curve_frames": [int(e[0]) * FRAMESKIP for e in episodes],
        "curve_returns": returns,
        "last_100_return": float(np.mean(returns[-100:])) if returns else None,
        "best_100_return": _best_window(returns, 100),
        "steps_per_s": float(np.median(speeds)) if speeds else None,
        "wall_hours": float(record.get("wall_seconds", 0.0)) / 3600,
        "hyperparameters": record.get("hyperparameters"),
        "distractors": record.get("distractors"),
        "features": record.get("features", "slots"),
        "evaluation": None,
    }
    path = folder / EVAL_FILE
    if path.is_file():
        evaluation = json.loads(path.read_text())
        if evaluation.get("policy_sha256") == record.get("policy_sha256"):
            out["evaluation"] = evaluation
        else:
            out["stale_evaluation"] = evaluation
    # Evaluations in an env that coasts missed objects (moc-envs agent-eval --coast N), current only.
    out["coasted"] = {}
    for path in sorted(folder.glob("eval_coast*.json")):
        evaluation = json.loads(path.read_text())
        results = evaluation.get("results", {})
        coast = next((r.get("coast") for r in results.values() if r.get("coast")), None)
        # eval_coast<N>_<kind>.json matches the pattern too: those frames carried bars.
        clean = not any(r.get("distractors") for r in results.values())
        if coast and clean and evaluation.get("policy_sha256") == record.get("policy_sha256"):
            out["coasted"][int(coast)] = evaluation
    # Evaluations on frames with distractor bars (moc-envs agent-eval --distractors K), current only.
    out["noisy"] = {}
    for kind in DISTRACTOR_KINDS:
        path = folder / eval_file(distractors=kind)
        if path.is_file():
            evaluation = json.loads(path.read_text())
            if evaluation.get("policy_sha256") == record.get("policy_sha256"):
                out["noisy"][kind] = evaluation
    return out


def _best_window(values: list[float], n: int) -> float | None:
    if len(values) < n:
        return None
    return float(np.max(np.convolve(values, np.ones(n) / n, mode="valid")))


def _make_env(kind: str, game: str, n_envs: int, seed: int, device: str) -> Any:
    from stable_baselines3.common.vec_env import VecMonitor

    if kind == "pixels":
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        from moc_envs.games import get_game

        # Frameskip in AtariWrapper (max over the last two frames), so the ALE itself skips none.
        venv = make_atari_env(get_game(game).ale_id, n_envs=n_envs, seed=seed, env_kwargs={"frameskip": 1})
        return VecFrameStack(venv, 4)
    from stable_baselines3.common.vec_env import VecNormalize

    from moc_envs.envs.make import make_vec
    from moc_envs.envs.sb3 import SB3VecEnv

    detector = "space" if kind == "learned" else "ram"
    # The RAM oracle runs on the CPU: only the learned detector takes a device.
    extra = {"allow_unclassified": True, "device": device} if kind == "learned" else {}
    venv = SB3VecEnv(make_vec(f"MOC/{game}-v0", n_envs, detector=detector,
                              autoreset_mode="SameStep", **extra))
    venv.seed(seed)
    # Monitor first, so that episode returns are the game's own rewards.
    return VecNormalize(VecMonitor(venv), norm_obs=True, norm_reward=False)


def train_agent(
    kind: str, game: str, steps: int, seed: int, n_envs: int = 8, device: str = "auto",
    ppo_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train PPO (``kind``: "learned", "ram" or "pixels") for ``steps`` env steps; return its curves."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class Curves(BaseCallback):
        """Per-rollout mean reward per step and finished-episode returns."""

        def __init__(self) -> None:
            super().__init__()
            self.rollout_steps: list[int] = []
            self.rollout_reward: list[float] = []
            self.episodes: list[tuple[int, float, int]] = []
            self._sum = 0.0
            self._n = 0
            self.skip = 4 if kind == "pixels" else 1

        def _on_step(self) -> bool:
            self._sum += float(np.sum(self.locals["rewards"]))
            self._n += len(self.locals["rewards"])
            for info in self.locals["infos"]:
                if "episode" in info:
                    ep = info["episode"]
                    # SB3's Atari Monitor sits under the frame skip and counts frames.
                    self.episodes.append((self.num_timesteps, float(ep["r"]), int(ep["l"]) // self.skip))
            return True

        def _on_rollout_end(self) -> None:
            if self._n:
                self.rollout_steps.append(self.num_timesteps)
                self.rollout_reward.append(self._sum / self._n)
            self._sum, self._n = 0.0, 0

    torch.manual_seed(seed)
    env = _make_env(kind, game, n_envs, seed, device)
    policy = "CnnPolicy" if kind == "pixels" else "MlpPolicy"
    model = PPO(policy, env, seed=seed, device="cpu" if kind != "learned" else "auto", verbose=0,
                **{**PPO_KWARGS, **(ppo_overrides or {})})
    curves = Curves()
    with Timer() as timer:
        model.learn(total_timesteps=steps, callback=curves, progress_bar=False)
    env.close()
    r = np.asarray(curves.rollout_reward)
    k = max(1, len(r) // 4)
    first_q, last_q = _quarter_episodes(curves.episodes, int(model.num_timesteps))
    return {
        "policy": policy,
        "steps": int(model.num_timesteps),
        "seconds": timer.seconds,
        "steps_per_s": model.num_timesteps / timer.seconds,
        "rollout_steps": curves.rollout_steps,
        "rollout_reward_per_step": r.tolist(),
        "episodes": curves.episodes,
        "first_quarter_reward_per_1k": float(r[:k].mean() * 1000) if len(r) else None,
        "last_quarter_reward_per_1k": float(r[-k:].mean() * 1000) if len(r) else None,
        "episodes_finished": len(curves.episodes),
        # Episodes that ended in the first / last quarter of the budget.
        "first_quarter_return": _mean([e[1] for e in first_q]),
        "last_quarter_return": _mean([e[1] for e in last_q]),
        # Longer Pong episodes mean longer rallies: an earlier sign of learning than the score.
        "first_quarter_episode_length": _mean([e[2] for e in first_q]),
        "last_quarter_episode_length": _mean([e[2] for e in last_q]),
    }


def _quarter_episodes(
    episodes: list[tuple[int, float, int]], steps: int
) -> tuple[list[tuple[int, float, int]], list[tuple[int, float, int]]]:
    """The episodes that finished in the first and in the last quarter of ``steps``."""
    return [e for e in episodes if e[0] <= steps / 4], [e for e in episodes if e[0] > 3 * steps / 4]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def run(
    game: str = "Pong", steps: int = 100_000, seed: int = 0, n_envs: int = 8, device: str = "auto",
    out: Path | None = None, ppo_overrides: dict[str, Any] | None = None,
    runs: Sequence[str | Path] | None = None,
) -> dict[str, Any]:
    """Read the long runs, train the three same-budget agents (``steps`` > 0), write the files.

    ``runs``: the long-run folders (None: the game's, :data:`AGENT_GAMES`). ``steps=0`` trains
    nothing and carries the same-budget rows of ``<out>/agents.json`` over.
    """
    from tqdm import tqdm

    from moc_envs.games import get_game

    name = get_game(game).name
    spec = agent_game(name)
    long_runs = _long_runs(spec.runs if runs is None else runs, out)
    result: dict[str, Any] = {
        "game": name,
        "long_runs": long_runs,
        "target": spec.target,
        "target_verdict": target_verdict(long_runs, name),
        "anchors": [{"what": a, "value": v, "source": src} for a, v, src in spec.anchors],
    }
    if steps > 0:
        short: dict[str, dict[str, Any]] = {}
        labels = {"learned": "objects (learned), MlpPolicy", "ram": "objects (ram oracle), MlpPolicy",
                  "pixels": "pixels, CnnPolicy"}
        for kind in tqdm(("learned", "ram", "pixels"), desc="agents", unit="agent"):
            if kind == "learned":
                note = not_available(name) if learned_weights(name) is None else learned_objects_note(name, device)
                if note:
                    # Training on an all-zero observation would only measure a blind policy.
                    short[labels[kind]] = {"note": note}
                    continue
            short[labels[kind]] = {**train_agent(kind, name, steps, seed, n_envs, device, ppo_overrides), "note": ""}
        result.update(steps=steps, n_envs=n_envs, seed=seed, ppo={**PPO_KWARGS, **(ppo_overrides or {})},
                      runs=short, short_budget_source="measured in this run of the benchmark")
    else:
        result.update(_previous_short_budget(out))
    if out is not None:
        _write(result, out)
    return result


def _long_runs(runs: Sequence[str | Path], out: Path | None) -> list[dict[str, Any]]:
    """Each run folder's record; a folder that is gone (runs/ is not committed) keeps the row the
    earlier ``<out>/agents.json`` holds for it, marked ``carried_over``."""
    import json

    path = None if out is None else out / "agents.json"
    old = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    earlier = {r["run"]: r for r in old.get("long_runs", [])}
    when = (old.get("machine") or {}).get("date", "?")
    found = []
    for folder in runs:
        record = long_run(folder)
        if record is None and str(folder) in earlier:
            record = {**earlier[str(folder)]}
            record.setdefault("carried_over", f"carried over from agents.json of {when} (its run folder is not here)")
        if record is not None:
            found.append(record)
    return found


def _previous_short_budget(out: Path | None) -> dict[str, Any]:
    """The same-budget part of an earlier ``agents.json`` in ``out`` (for ``--steps 0``)."""
    import json

    path = None if out is None else out / "agents.json"
    if path is None or not path.is_file():
        return {"runs": {}, "short_budget_source": "not run (--steps 0, no earlier agents.json)"}
    old = json.loads(path.read_text())
    machine = old.get("short_budget_machine") or old.get("machine") or {}
    when = f"{machine.get('date', '?')} (commit {machine.get('commit') or '?'})"
    return {
        **{k: old[k] for k in ("steps", "n_envs", "seed", "ppo") if k in old},
        "runs": old.get("runs", {}),
        "short_budget_machine": machine,
        "short_budget_source": old.get("short_budget_source", "")
        if old.get("short_budget_source", "").startswith("carried over")
        else f"carried over from the benchmark run of {when} (--steps 0 trained nothing now)",
    }


def target_verdict(long_runs: list[dict[str, Any]], game: str = "Pong") -> str:
    """Whether ``game``'s target is met, not met, or not yet measurable, from the evaluations."""
    spec = agent_game(game)
    # The target is about clean 10M-frame runs; shorter comparisons (Noisy Atari) stay out of it.
    # Of several such runs per detector (other observations, settings), the best evaluated one on
    # its own objects stands: the best learned-objects agent against the best RAM oracle.
    clean = [r for r in long_runs if not r.get("distractors") and r.get("target_frames", r["frames"]) >= 10_000_000]

    def best(detector: str) -> dict[str, Any] | None:
        runs = [r for r in clean if r["detector"] == detector]
        scored = [r for r in runs if detector in ((r.get("evaluation") or {}).get("results") or {})]
        if not scored:
            return runs[-1] if runs else None
        return max(scored, key=lambda r: r["evaluation"]["results"][detector]["mean"])

    space, ram = best("space"), best("ram")
    if space is None or space.get("evaluation") is None:
        return "not measured: no evaluation of a learned-objects agent at its last checkpoint"
    s = space["evaluation"]["results"].get("space")
    if s is None:
        return "not measured: the learned-objects agent was not evaluated on learned objects"
    budget = f"{space['frames']:,} frames" + (" (partial run)" if space["partial"] else "")
    text = f"learned-objects agent {s['mean']:+.1f} on learned objects after {budget}"
    met = s["mean"] >= spec.learned_min
    if ram is not None and ram.get("evaluation") is not None and "ram" in ram["evaluation"]["results"]:
        r = ram["evaluation"]["results"]["ram"]
        gap = r["mean"] - s["mean"]
        text += f"; RAM-oracle agent {r['mean']:+.1f} on RAM objects after {ram['frames']:,} frames (gap {gap:+.1f})"
        met = met and gap <= (spec.gap * abs(r["mean"]) if spec.relative else spec.gap)
    else:
        text += "; no RAM-oracle evaluation to compare with"
        met = False
    return ("met: " if met else "not met: ") + text


def _cell(evaluation: dict[str, Any] | None, detector: str) -> str:
    if evaluation is None or detector not in evaluation["results"]:
        return "-"
    r = evaluation["results"][detector]
    trunc = f", {r['truncated']} truncated" if r["truncated"] else ""
    return f"{r['mean']:+.1f} ± {r['std']:.1f} (n={r['episodes']}{trunc})"


def _long_runs_markdown(result: dict[str, Any]) -> str:
    runs = result["long_runs"]
    if not runs:
        return ("No long run found (" + ", ".join(agent_game(result["game"]).runs) + "): start them with "
                "`moc-envs agent` (see the README's Agents section).")
    rows = []
    for r in runs:
        status = (f"partial: {r['frames']:,} of {r['target_frames']:,} frames" if r["partial"]
                  else f"complete: {r['frames']:,} frames")
        ev = r["evaluation"]
        stale = r.get("stale_evaluation")
        note = "" if ev is not None else (
            f"evaluation of an earlier checkpoint ({stale['frames']:,} frames): "
            f"{_cell(stale, 'ram')} on RAM, {_cell(stale, 'space')} on learned" if stale else "not evaluated yet")
        if r.get("carried_over"):
            note = f"{note}; {r['carried_over']}" if note else r["carried_over"]
        hp = r.get("hyperparameters") or {}
        settings = f"{hp['learning_rate']:g} / {hp['n_epochs']}" if {"learning_rate", "n_epochs"} <= set(hp) else "-"
        settings += " / " + "-".join(str(h) for h in hp.get("hidden", [64, 64]))
        coasted = "; ".join(f"coast {n}: {_cell(e, 'space')}" for n, e in sorted(r.get("coasted", {}).items()))
        noisy = "; ".join(f"{k}: {_cell(e, 'space')}" for k, e in sorted(r.get("noisy", {}).items()))
        trained_on = DETECTOR_NAMES.get(r["detector"], r["detector"])
        if r.get("distractors"):
            trained_on += f", bars ({r['distractors']})"
        if r.get("features", "slots") != "slots":
            trained_on += f", {r['features']} features"
        rows.append([r["run"], trained_on, settings, status, r["steps_per_s"],
                     r["wall_hours"], r["episodes"], r["last_100_return"], _cell(ev, "ram"), _cell(ev, "space"),
                     coasted or "-", noisy or "-", note])
    table = markdown_table(
        ["run", "trained on", "Adam lr / epochs / MLP", "budget", "train steps/s (median)", "wall hours", "training episodes",
         "training return, last 100 episodes", "eval on RAM-oracle objects", "eval on learned objects",
         "eval on learned objects, missed objects coasted", "eval on learned objects, frames with bars", "note"],
        rows, digits=1,
    )
    return (
        "Each agent: SB3 PPO, MlpPolicy (tanh, hidden sizes in the MLP column; 64-64 unless `--hidden`) on the flat object observation, "
        "`moc-envs agent` (hyperparameters in `trainers.agents.train.PPO_DEFAULTS`; the runs before "
        "lr 7.5e-4 and 8 epochs became the defaults used CleanRL's 2.5e-4 and 4). Evaluation: "
        "`moc-envs agent-eval`, 30 episodes per cell with the deterministic policy, mean ± "
        "standard deviation (ddof=1); each agent plays on the objects it was trained on and on the "
        "other detector's (cross-evaluation: what the detector's errors cost). Coasted: the same "
        "policy on learned objects in an env made with `coast=N`, which keeps a missed object in the "
        "observation for up to N steps at the box its velocity predicts "
        "(`moc-envs agent-eval --coast N`, eval_coast<N>.json; training never coasted). With bars: the same "
        "policy on learned objects with PermaKey's moving bars on every frame (Noisy Atari; `moc-envs agent-eval "
        "--distractors both`, eval_both.json); \"bars\" in \"trained on\": trained on such frames (`moc-envs agent "
        "--distractors both`). The shipped detectors paint the bars over before detecting (the bar filter, "
        "docs/user-guide.md). \"relative features\" in \"trained on\": the policy reads the player's box, then "
        "every object as seen from it, each category's nearest first (`moc-envs agent --features relative`, "
        "`moc_envs.agent_features`). The verdict weighs the best evaluated clean 10M-frame run of each "
        "detector.\n\n"
        f"{table}\n\n**{result['target']}** Verdict: {result['target_verdict']}."
    )


def _write(result: dict[str, Any], out: Path) -> None:
    anchors = markdown_table(["anchor", f"{result['game']} score", "source"], agent_game(result["game"]).anchors)
    body = (
        f"Game: {result['game']}.\n\n## Agents trained to 10M frames\n\n{_long_runs_markdown(result)}\n\n"
        f"## Anchors (published, not measured here)\n\n{anchors}\n\n"
        "![learning curves](agents.png)\n\n"
        f"## Same budget, short: objects vs pixels\n\n{_short_markdown(result)}\n"
    )
    _plot(result, out / "agents.png")
    write_results(out, "agents", result, body, "Agents benchmark")


def _short_markdown(result: dict[str, Any]) -> str:
    if not result.get("runs"):
        return f"Not run: {result.get('short_budget_source', '')}."
    rows = []
    for label, r in result["runs"].items():
        if "steps" not in r:
            rows.append([label, None, None, None, None, None, None, None, None, None, r["note"]])
            continue
        rows.append([label, r["steps"], r["steps_per_s"], r["episodes_finished"],
                     r["first_quarter_return"], r["last_quarter_return"],
                     r["first_quarter_episode_length"], r["last_quarter_episode_length"],
                     r["first_quarter_reward_per_1k"], r["last_quarter_reward_per_1k"], verdict(r)])
    table = markdown_table(
        ["agent", "env steps", "train steps/s", "episodes finished",
         "mean return, first quarter", "mean return, last quarter",
         "mean episode length, first quarter", "mean episode length, last quarter",
         "reward per 1k steps, first quarter", "reward per 1k steps, last quarter", "verdict"],
        rows,
    )
    return (
        f"{result['short_budget_source'].capitalize()}. "
        f"{result['steps']:,} env steps per agent (4 frames each), "
        f"{result['n_envs']} envs, seed {result['seed']}, PPO settings {result['ppo']}; object agents "
        "see their observation through VecNormalize (running mean / std per feature, rewards untouched). "
        "First / last quarter: the episodes that ended in the first / last quarter of the budget "
        "(random play in Pong scores about -20.7). Episode lengths are in env steps of 4 frames for "
        "every agent (longer Pong episodes mean longer rallies, an earlier sign of learning than the "
        "score). Reward per 1k steps is the mean reward per env step over the first / last quarter "
        "of the rollouts, times 1000. Verdict: learning when the last quarter's episodes return at "
        "least 1 point more or last at least 20% longer than the first quarter's.\n\n"
        f"{table}"
    )


def _rolling(x: list[float], y: list[float], w: int) -> tuple[list[float], list[float]]:
    if len(y) < 2:
        return [], []
    w = max(1, min(w, len(y)))
    smooth = np.convolve(np.asarray(y, float), np.ones(w) / w, mode="valid")
    return list(x[w - 1 :]), smooth.tolist()


def _plot(result: dict[str, Any], path: Path) -> Path:
    """Long runs (return vs frames, anchors dashed) and the same-budget runs, side by side."""
    from benchmarks.common import _pyplot, _save_figure

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for r in result["long_runs"]:
        x, y = _rolling(r["curve_frames"], r["curve_returns"], 20)
        label = f"{Path(r['run']).name}: {DETECTOR_NAMES.get(r['detector'], r['detector'])} ({r['frames'] / 1e6:.1f}M frames" + (
            ", partial)" if r["partial"] else ")")
        if x:
            left.plot(np.asarray(x) / 1e6, y, label=label)
    spec = agent_game(result["game"])
    for (name, value), style in zip(spec.lines.items(), ("C3--", "C4--", "C5:", "C7:"), strict=True):
        left.axhline(value, color=style[:2], linestyle=style[2:], linewidth=1, label=f"{name} (published)")
    left.set_xlabel("emulator frames (millions)")
    left.set_ylabel("training episode return (rolling mean of 20)")
    left.set_title(f"{result['game']}: PPO on objects, long runs")
    left.set_ylim(*spec.ylim)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    for label, r in (result.get("runs") or {}).items():
        eps = r.get("episodes") or []
        x, y = _rolling([e[0] for e in eps], [e[1] for e in eps], 10)
        if x:
            right.plot(x, y, label=label)
    right.set_xlabel("env steps")
    right.set_ylabel("episode return (rolling mean of 10)")
    right.set_title(f"same budget ({result.get('steps', 0):,} env steps)")
    right.grid(alpha=0.3)
    if right.lines:
        right.legend(fontsize=7)
    return _save_figure(plt, fig, path)


def verdict(run: dict[str, Any]) -> str:
    """Whether a run learned: its last quarter's episodes against its first quarter's."""
    r0, r1 = run.get("first_quarter_return"), run.get("last_quarter_return")
    l0, l1 = run.get("first_quarter_episode_length"), run.get("last_quarter_episode_length")
    if None in (r0, r1, l0, l1):
        return "too few episodes to judge"
    gain, longer = r1 - r0, l1 / l0 - 1.0
    text = f"return {gain:+.1f}, episodes {100 * longer:+.0f}% longer"
    if gain >= 1.0 or longer >= 0.2:
        return "learning: " + text
    return "no clear learning at this budget: " + text


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="moc-envs bench agents",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--game", default="Pong", choices=sorted(AGENT_GAMES), help="game")
    p.add_argument("--runs", nargs="*", default=None,
                   help="long-run folders of trainers.agents.train to report (default: the game's, AGENT_GAMES)")
    p.add_argument("--steps", type=int, default=100_000,
                   help="env steps per agent of the same-budget part (0: carry the previous rows over)")
    p.add_argument("--n-envs", type=int, default=8, help="parallel envs per agent")
    args = p.parse_args(argv)
    if args.steps < 0:
        p.error(f"--steps must be >= 0, got {args.steps}")
    torch_threads(args.threads)
    overrides = None
    if args.quick:
        args.steps, args.n_envs = 256, 2
        overrides = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
    result = run(args.game, args.steps, args.seed, args.n_envs, args.device, args.out, overrides, args.runs)
    for r in result["long_runs"]:
        print(f"{r['run']:<34} {r['frames']:,} frames, last 100 training episodes {r['last_100_return']}")
    for label, r in result["runs"].items():
        print(f"{label:<34} {r['note'] or verdict(r)}")
    print(result["target_verdict"])
    return result


if __name__ == "__main__":
    main()
