"""The ``moc-envs`` command line: ``moc-envs demo --game Pong``, ``moc-envs list``, and every
stage of training and every benchmark as ``moc-envs <verb>`` (``moc-envs train --game Breakout``,
``moc-envs dataset``, ``moc-envs bench speed`` ...).

The runtime never imports the training code or the benchmarks: their verbs come from a registry
that those packages provide as entry points of the group ``moc_envs.commands`` (see
``pyproject.toml``). Each entry point names a plain mapping ``verb -> (module, function, help)``;
the module is imported only when its verb runs, and its function is called as
``function(argv, prog="moc-envs <verb>")`` (``prog`` only where the function takes it).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from moc_envs.games import game_names, get_game
from moc_envs.threads import add_threads_argument

__all__ = [
    "BUILTIN_COMMANDS",
    "COMMAND_GROUP",
    "DESCRIPTION",
    "Command",
    "build_parser",
    "call_command",
    "main",
    "registered_commands",
    "run_demo",
    "run_group",
]

# The entry-point group through which the trainers and the benchmarks provide their verbs.
COMMAND_GROUP = "moc_envs.commands"

# What to install for the verbs the runtime itself does not have, quoted by every such error.
_INSTALL_HINT = (
    'From a source checkout: pip install -e ".[train]" and OCAtari (make install-dev does both; '
    "see the README)"
)


class Command(NamedTuple):
    """One verb of the registry: ``module.function(argv[, prog])`` runs it; ``help`` is its line."""

    module: str
    function: str
    help: str


# The runtime's own verbs that live in a module of their own (demo and list are below).
BUILTIN_COMMANDS: dict[str, Command] = {
    "manifest": Command(
        "moc_envs.weights.manifest", "main",
        "record every file of a weights folder you trust in its manifest.json",
    ),  # fmt: skip
}


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

# The verbs of the training code and of the benchmarks, for the error when they are absent.
_PROVIDERS = {
    "trainers": "the training code (the trainers package)",
    "benchmarks": "the benchmarks (the benchmarks package)",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and shows every option's default."""


def _version() -> str:
    from moc_envs import __version__

    return f"moc-envs {__version__}"


def _as_command(provider: str, verb: object, value: object) -> Command:
    """A registry entry checked: a verb name and (module, function, help), else a ValueError."""
    ok_verb = isinstance(verb, str) and verb and not verb.startswith("-") and verb.split() == [verb]
    ok_value = (
        isinstance(value, tuple | list)
        and len(value) == 3
        and all(isinstance(v, str) and v for v in value)
    )
    if not (ok_verb and ok_value):
        raise ValueError(
            f"entry point {provider!r} of {COMMAND_GROUP}: expected verb -> (module, function, "
            f"help), got {verb!r} -> {value!r}"
        )
    return Command(*value)  # type: ignore[misc]


def registered_commands() -> tuple[dict[str, Command], dict[str, str]]:
    """The verbs the installed packages provide, and why each provider that gave none failed.

    Reads the entry points of :data:`COMMAND_GROUP` (loading one imports only its small
    registry module, never the code of its verbs). Returns ``(verbs, problems)``: ``verbs``
    maps each verb to its :class:`Command`; ``problems`` maps a provider (``trainers``,
    ``benchmarks``) that is missing or whose registry could not be read to the reason.
    """
    verbs: dict[str, Command] = {}
    problems: dict[str, str] = {}
    found = sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name)
    for ep in found:
        try:
            registry = ep.load()
            if not isinstance(registry, Mapping):
                raise ValueError(
                    f"entry point {ep.name!r} of {COMMAND_GROUP} ({ep.value}) must name a mapping "
                    f"verb -> (module, function, help), got {type(registry).__name__}"
                )
            entries = {verb: _as_command(ep.name, verb, value) for verb, value in registry.items()}
        except Exception as err:  # a broken provider must not break demo, list or the others
            problems[ep.name] = f"{type(err).__name__}: {err}"
            continue
        for verb, command in entries.items():
            if verb in verbs or verb in BUILTIN_COMMANDS or verb in ("demo", "list"):
                problems[ep.name] = f"entry point {ep.name!r} of {COMMAND_GROUP} repeats verb {verb!r}"
                continue
            verbs[verb] = command
    names = {ep.name for ep in found}
    for provider in _PROVIDERS:
        if provider not in names:
            problems[provider] = f"no entry point {provider!r} in group {COMMAND_GROUP}"
    return verbs, problems


def _missing_verb(verb: str, problems: Mapping[str, str]) -> str:
    """The error for a verb that is absent because a provider of verbs is not installed."""
    what = " and ".join(_PROVIDERS.get(name, f"the {name} commands") for name in problems)
    why = "; ".join(problems.values())
    return (
        f"moc-envs: error: 'moc-envs {verb}' is not a command of this install: the training and "
        f"benchmark commands come from {what}, which this install lacks ({why}). {_INSTALL_HINT}"
    )


@contextmanager
def _argv0(prog: str) -> Iterator[None]:
    """``sys.argv[0]`` as ``prog`` for a function that takes no ``prog`` (argparse's default)."""
    saved = sys.argv[0] if sys.argv else None
    if sys.argv:
        sys.argv[0] = prog
    else:
        sys.argv.append(prog)
    try:
        yield
    finally:
        if saved is None:
            sys.argv.clear()
        else:
            sys.argv[0] = saved


def call_command(prog: str, command: Command, argv: Sequence[str]) -> int:
    """Run ``command`` with ``argv`` as ``prog`` (``moc-envs <verb>``); its exit status.

    The command's module is imported only now. A module that cannot be imported (the training
    code or its dependencies are not installed) is a short error naming what to install, as is a
    :class:`moc_envs.errors.MocEnvsError` the command raises; exit status 2 for both. A command
    that returns an int returns it as the exit status; any other result is success (0).
    """
    from moc_envs.errors import MocEnvsError

    try:
        module = importlib.import_module(command.module)
    except ImportError as err:
        what = _PROVIDERS.get(command.module.partition(".")[0], f"the module {command.module}")
        print(
            f"moc-envs: error: '{prog}' needs {what} and its dependencies, which this install "
            f"lacks ({err}). {_INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    function = getattr(module, command.function, None)
    if not callable(function):
        print(
            f"moc-envs: error: '{prog}' is registered as {command.module}:{command.function}, "
            "which is not a function of that module (reinstall the package)",
            file=sys.stderr,
        )
        return 2
    try:
        takes_prog = "prog" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        takes_prog = False
    try:
        if takes_prog:
            result: Any = function(list(argv), prog=prog)
        else:
            with _argv0(prog):
                result = function(list(argv))
    except MocEnvsError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _add_verbs(sub: Any, prog: str, commands: Mapping[str, Command]) -> None:
    """One pass-through subparser per verb: its own parser, run later, owns options and --help."""
    for verb, command in commands.items():
        parser = sub.add_parser(
            verb,
            help=command.help,
            description=f'Run "{prog} {verb} --help" for its options.',
            add_help=False,
        )
        parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run_group(
    prog: str,
    commands: Mapping[str, Command],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> int:
    """A command line of verbs only (``moc-envs bench <name>``): run ``argv[0]``'s command.

    ``prog --help`` lists every verb with its line; ``prog <verb> ARGS`` imports the verb's
    module and calls it as ``prog <verb>`` (:func:`call_command`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in commands:
        return call_command(f"{prog} {argv[0]}", commands[argv[0]], argv[1:])
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="NAME", title="commands")
    _add_verbs(sub, prog, commands)
    args = parser.parse_args(argv)  # --help, or a usage error: both exit here
    return call_command(f"{prog} {args.command}", commands[args.command], args.args)


def build_parser(
    commands: Mapping[str, Command] | None = None, problems: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The ``moc-envs`` argument parser with every subcommand.

    ``commands``: the registered verbs and ``problems``: the providers of verbs that are
    missing (None for both: :func:`registered_commands`). The verbs' subcommands only pass
    their arguments through: each verb's own parser holds its options and ``--help``.
    """
    if commands is None:
        commands, problems = registered_commands()
    epilog = None
    if problems:
        epilog = (
            "The training and benchmark commands are not installed "
            f"({'; '.join(problems.values())}). {_INSTALL_HINT}"
        )
    parser = argparse.ArgumentParser(
        prog="moc-envs", description=DESCRIPTION, epilog=epilog, formatter_class=_HelpFormatter
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
    # Every other verb is handed to its own main before this parser runs (see main): its
    # options, defaults and --help live there, and its module is imported only then.
    _add_verbs(sub, "moc-envs", {**BUILTIN_COMMANDS, **commands})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moc-envs`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands, problems = registered_commands()
    verbs = {**BUILTIN_COMMANDS, **commands}
    if argv and argv[0] in verbs:
        return call_command(f"moc-envs {argv[0]}", verbs[argv[0]], argv[1:])
    if argv and not argv[0].startswith("-") and argv[0] not in ("demo", "list") and problems:
        print(_missing_verb(argv[0], problems), file=sys.stderr)
        return 2
    parser = build_parser(commands, problems)
    args = parser.parse_args(argv)
    if args.command in verbs:  # reached only through unusual argument orders
        return call_command(f"moc-envs {args.command}", verbs[args.command], args.args)
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
