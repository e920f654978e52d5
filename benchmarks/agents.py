"""Agents: SB3 PPO on MOC objects (learned detector, RAM oracle) vs CNN PPO on pixels, same budget.

``python -m benchmarks.agents [--game Pong] [--steps 100000] [--quick]``

Three runs with the same PPO hyperparameters (SB3 zoo's Atari PPO: 8 envs,
n_steps 128, 4 epochs, batch 256, lr 2.5e-4, clip 0.1, ent_coef 0.01) and the
same number of env steps (each step is 4 emulator frames, sticky actions 0.25):

- ``objects (learned)``: ``MlpPolicy`` on ``MOC/<Game>-v0`` with the learned
  detector, 8 envs in one :class:`~moc_envs.vector.MocVectorEnv` (batched
  detection) through :class:`moc_envs.sb3.SB3VecEnv`; "not available: no
  weights for <Game>" without weights;
- ``objects (ram)``: the same on ``detector="ram"`` (RAM-oracle objects);
  both object agents see their observation through SB3's ``VecNormalize``
  (running mean / std of each feature, rewards untouched): positions in [0, 1]
  and velocities of a few hundredths are otherwise too small for the MLP to
  learn from quickly (without it neither object agent moved at 100k steps);
- ``pixels (CNN)``: ``CnnPolicy`` on ``ALE/<Game>-v5`` frames with SB3's Atari
  preprocessing (``make_atari_env``: no-op reset, max-and-skip 4, 84x84 grey,
  fire reset) and 4 stacked frames.

Learning: the returns and lengths of the episodes that ended in the first and
in the last quarter of the budget (:func:`verdict`), the mean reward per env
step of each rollout, and the curve of episode returns against env steps.
Writes ``agents.json`` / ``.md`` / ``.png``. The anchors (published scores at
10M frames and more) are listed beside ours; a CPU budget is far smaller.
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
    line_plot,
    markdown_table,
    not_available,
    torch_threads,
    write_results,
)

__all__ = ["PPO_KWARGS", "train_agent", "verdict", "run", "main"]

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

ANCHORS = (
    ("SCoBots, object-centric (RAM objects), Pong", "17.2"),
    ("Deep PPO on pixels, Pong (SCoBots paper)", "16.4"),
    ("OCAtari object-centric PPO, 10M frames, Pong", "0.4-0.66 human-normalised"),
    ("Human / random, Pong", "14.6 / -20.7"),
)


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

    from moc_envs.sb3 import SB3VecEnv
    from moc_envs.vector import make_vec

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
) -> dict[str, Any]:
    """Train the three agents and (when ``out``) write the files."""
    from tqdm import tqdm

    from moc_envs.games import get_game

    name = get_game(game).name
    runs: dict[str, dict[str, Any]] = {}
    labels = {"learned": "objects (learned), MlpPolicy", "ram": "objects (ram oracle), MlpPolicy",
              "pixels": "pixels, CnnPolicy"}
    for kind in tqdm(("learned", "ram", "pixels"), desc="agents", unit="agent"):
        if kind == "learned":
            note = not_available(name) if learned_weights(name) is None else learned_objects_note(name, device)
            if note:
                # Training on an all-zero observation would only measure a blind policy.
                runs[labels[kind]] = {"note": note}
                continue
        runs[labels[kind]] = {**train_agent(kind, name, steps, seed, n_envs, device, ppo_overrides), "note": ""}
    result = {"game": name, "steps": steps, "n_envs": n_envs, "seed": seed, "ppo": {**PPO_KWARGS, **(ppo_overrides or {})}, "runs": runs,
              "anchors": [{"what": a, "value": v} for a, v in ANCHORS]}
    if out is not None:
        _write(result, out)
    return result


def _write(result: dict[str, Any], out: Path) -> None:
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
    anchors = markdown_table(["anchor (published, 10M+ frames)", "score"], ANCHORS)
    body = (
        f"Game: {result['game']}; {result['steps']:,} env steps per agent (4 frames each), "
        f"{result['n_envs']} envs, seed {result['seed']}, PPO settings {result['ppo']}; object agents "
        "see their observation through VecNormalize (running mean / std per feature, rewards untouched). "
        "First / last quarter: the episodes that ended in the first / last quarter of the budget "
        "(random play in Pong scores about -20.7). Episode lengths are in env steps of 4 frames for "
        "every agent (longer Pong episodes mean longer rallies, an earlier sign of learning than the "
        "score). Reward per 1k steps is the mean reward per env step over the first / last quarter "
        "of the rollouts, times 1000. Verdict: learning when the last quarter's episodes return at "
        "least 1 point more or last at least 20% longer than the first quarter's.\n\n"
        f"{table}\n\n## Anchors\n\n{anchors}\n\n![learning curves](agents.png)\n"
    )
    curves = {}
    for label, r in result["runs"].items():
        eps = r.get("episodes") or []
        if len(eps) >= 2:
            steps = np.asarray([e[0] for e in eps])
            ret = np.asarray([e[1] for e in eps])
            w = max(1, min(10, len(ret)))
            smooth = np.convolve(ret, np.ones(w) / w, mode="valid")
            curves[label] = (steps[w - 1 :].tolist(), smooth.tolist())
    line_plot(out / "agents.png", curves, "env steps", "episode return (rolling mean of 10 episodes)",
              f"{result['game']}: PPO learning curves")
    write_results(out, "agents", result, body, "Agents benchmark")


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
        prog="python -m benchmarks.agents",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_args(p)
    p.add_argument("--game", default="Pong", help="game")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per agent (2M+ on a GPU)")
    p.add_argument("--n-envs", type=int, default=8, help="parallel envs per agent")
    args = p.parse_args(argv)
    torch_threads(args.threads)
    overrides = None
    if args.quick:
        args.steps, args.n_envs = 256, 2
        overrides = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
    result = run(args.game, args.steps, args.seed, args.n_envs, args.device, args.out, overrides)
    for label, r in result["runs"].items():
        print(f"{label:<34} {r['note'] or verdict(r)}")
    return result


if __name__ == "__main__":
    main()
