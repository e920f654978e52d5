"""The ``moc-envs`` command line: ``moc-envs demo --game Pong``, ``moc-envs list``,
``moc-envs train --game Breakout`` (which delegates to :mod:`trainers.pipeline.run`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moc_envs.games import game_names, get_game
from moc_envs.threads import add_threads_argument

__all__ = ["DESCRIPTION", "build_parser", "main", "run_demo", "run_train"]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _positive_int(text: str) -> int:
    """argparse type of ``demo --steps``: an int >= 1, else the demo parser's own usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _write_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    from moc_envs.weights.atomic import atomic_path

    images = [Image.fromarray(f) for f in frames]
    # atomic (a reader never sees half a GIF) and never through a planted symlink
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=int(1000 / fps),
            loop=0,
        )


def _agent_banner(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``frame`` under a dark band holding ``lines`` (the agent, its score); the game stays uncovered."""
    import cv2

    line_h = max(14, frame.shape[1] // 24)
    band = np.full((line_h * len(lines) + 6, frame.shape[1], 3), 24, dtype=frame.dtype)
    scale = line_h / 40
    for i, text in enumerate(lines):
        cv2.putText(band, text, (6, line_h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, frame], axis=0)


def _agent_label(info: dict[str, object]) -> str:
    """How the demo names the agent: trained on which objects, for how long."""
    frames = info.get("frames")
    budget = f"{frames / 1e6:.1f}M frames" if isinstance(frames, int | float) else "? frames"
    partial = ", partial" if info.get("partial") else ""
    return f"PPO agent trained on {info.get('detector', '?')} objects, {budget}{partial}"


def run_demo(
    game: str,
    steps: int = 200,
    detector: str = "space",
    out: Path | None = None,
    seed: int = 0,
    device: str = "auto",
    every: int = 2,
    threads: int | None = None,
    agent: bool = False,
) -> dict[str, float]:
    """Play ``steps`` steps, print objects and labels, write an annotated GIF.

    A random agent plays, or with ``agent`` the game's trained agent
    (:func:`moc_envs.agents.load`) from the detected objects, its score shown on every frame.
    Returns a summary: steps, mean objects per step, the share of estimated localisation
    labels within 1 of the RAM value, and the points won / lost and the return. ``threads``:
    torch CPU threads of the learned detector (None: one).
    """
    import gymnasium as gym
    from tqdm import tqdm

    from moc_envs.envs.registration import env_id

    spec = get_game(game)
    policy = None
    if agent:
        from moc_envs.agents import load

        policy = load(spec.name)  # before the env: a missing agent fails fast
        label = _agent_label(policy.info)
        print(f"Agent: {label}; {policy.info.get('status', '')}")
    learned = {"device": device, "threads": threads} if detector == "space" else {}
    env = gym.make(
        env_id(spec.name), detector=detector, ram_labels=True, render_mode="rgb_array", **learned
    )
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    frames: list[np.ndarray] = []
    n_objects = agree = compared = 0
    won = lost = 0.0
    for t in tqdm(range(steps), desc=f"{spec.name} demo", unit="step", disable=None):
        action = policy(obs) if policy is not None else env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        won += max(float(reward), 0.0)
        lost += max(-float(reward), 0.0)
        n_objects += len(info["objects"])
        for name, value in info["labels"].items():
            compared += 1
            agree += abs(value - info["ram_labels"][name]) <= 1
        if t % every == 0:
            frame = env.render()
            if policy is not None:
                frame = _agent_banner(
                    frame, [label, f"plays on {detector} objects: won {won:g}, lost {lost:g}"]
                )
            frames.append(frame)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()

    rows = [
        [
            str(d.slot),
            d.category,
            f"{d.x:.0f}",
            f"{d.y:.0f}",
            f"{d.w:.0f}",
            f"{d.h:.0f}",
            f"{d.score:.2f}",
        ]
        for d in sorted(info["objects"], key=lambda d: (d.slot < 0, d.slot))
    ]
    print(f"\nObjects after step {steps} ({detector} detector):")
    print(_table(rows, ["slot", "category", "x", "y", "w", "h", "score"]))
    label_rows = [
        [name, str(info["labels"].get(name, "-")), str(info["ram_labels"][name])]
        for name in spec.localization_labels
    ]
    if label_rows:
        print("\nAtariARI localisation labels (estimated from objects vs RAM):")
        print(_table(label_rows, ["label", "estimate", "ram"]))
    summary = {
        "steps": float(steps),
        "objects_per_step": n_objects / max(steps, 1),
        "label_agreement": agree / compared if compared else float("nan"),
        "points_won": won,
        "points_lost": lost,
        "return": won - lost,
    }
    print(
        f"\n{summary['objects_per_step']:.1f} objects per step; "
        f"labels within 1 of RAM: {summary['label_agreement']:.1%} of {compared}"
    )
    print(f"{'Agent' if policy is not None else 'Random agent'}: won {won:g}, lost {lost:g} in {steps} steps")
    if out is not None and frames:
        _write_gif(frames, out, fps=15)
        print(f"Annotated GIF: {out}")
    return summary


DESCRIPTION = """\
Object-centric Atari environments from pixels: a learned SPACE+MOC detector finds
the game's objects in every frame: gym.make("MOC/Pong-v0").
Run "moc-envs COMMAND --help" for a command's options and their defaults."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows every option's default."""


def _version() -> str:
    from moc_envs import __version__

    return f"moc-envs {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The ``moc-envs`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="moc-envs", description=DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )
    demo = sub.add_parser(
        "demo",
        help="play a game with a random (or the trained) agent and show the objects",
        description="Play a game with a random agent (--agent: the game's trained PPO agent,\n"
        "acting on the detected objects), print the last step's objects and the estimated\n"
        "labels beside the RAM values, and write an annotated GIF (with --agent, the score).",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("--game", default="Pong", help=f"one of: {', '.join(game_names())}")
    demo.add_argument(
        "--steps", type=_positive_int, default=200, help="environment steps to play (>= 1)"
    )
    demo.add_argument(
        "--detector",
        default="space",
        choices=["space", "ram"],
        help="learned detector or RAM oracle",
    )
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda")
    demo.add_argument(
        "--out", type=Path, default=None, help="GIF path; None writes demo-<game>[-agent].gif"
    )
    demo.add_argument(
        "--agent",
        action="store_true",
        help="play the trained agent (weights/<Game>/agent, moc_envs.agents.load) instead of random actions",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the env and the random agent")
    add_threads_argument(demo)
    sub.add_parser(
        "list",
        help="every registered game, where its weights come from, its card's figures",
        description="List every registered MOC/<Game>-v0 id, the weights folder the learned\n"
        "detector would load (MOC_ENVS_WEIGHTS search path, then the bundled weights) and the\n"
        "headline figures of its card.",
        formatter_class=_HelpFormatter,
    )
    # `moc-envs train ...` is handed to trainers.pipeline.run before this parser runs (see main):
    # its options, defaults and --help live there, and trainers is imported only then.
    train = sub.add_parser(
        "train",
        help="train a detector for a game: gameplay to shipped weights, card and verdict in one command",
        description="Train a detector for a game. Run \"moc-envs train --help\" for its options.",
        formatter_class=_HelpFormatter,
        add_help=False,
    )
    train.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def run_train(argv: Sequence[str]) -> int:
    """``moc-envs train ARGS``: :func:`trainers.pipeline.run.main`, imported only now."""
    try:
        from trainers.pipeline.run import main as pipeline_main
    except ImportError as err:
        print(
            f"moc-envs: error: 'moc-envs train' needs the training code (the trainers package) and its "
            f"dependencies, which this install lacks ({err}). From a source checkout: "
            'pip install -e ".[train]" and OCAtari (make install-dev does both; see the README)',
            file=sys.stderr,
        )
        return 2
    return pipeline_main(list(argv), prog="moc-envs train")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moc-envs`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        return run_train(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":  # reached only through unusual argument orders
        return run_train(args.args)
    from moc_envs.errors import MocEnvsError

    try:
        if args.command == "list":
            from moc_envs.weights.search import format_weights_table

            print(format_weights_table())
            return 0
        spec = get_game(args.game)
        suffix = "-agent" if args.agent else ""
        out = args.out or Path(f"demo-{spec.name.lower()}{suffix}.gif")
        run_demo(
            spec.name, args.steps, args.detector, out, args.seed, args.device,
            threads=args.threads, agent=args.agent,
        )  # fmt: skip
    except MocEnvsError as err:
        print(f"moc-envs: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
