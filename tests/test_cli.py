"""The moc-envs demo command and the cheap import path."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from moc_envs.cli import main


def test_demo_writes_gif_and_tables(tmp_path, capsys) -> None:
    out = tmp_path / "pong.gif"
    assert (
        main(["demo", "--game", "Pong", "--steps", "30", "--detector", "ram", "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert (
        "slot  category" in text and "player_y" in text and "labels within 1 of RAM: 100.0%" in text
    )
    with Image.open(out) as gif:
        # 30 steps, one frame in two; PIL may merge identical neighbours.
        assert 1 < gif.n_frames <= 15 and gif.size == (480, 630)


def test_demo_without_weights_explains(tmp_path, monkeypatch, capsys) -> None:
    # Every game ships weights: an empty MOC_ENVS_WEIGHTS root and an empty bundled root stand
    # in for a game without any.
    import moc_envs.weights.search

    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(moc_envs.weights.search, "weights_root", lambda: tmp_path)
    game = "Tennis"
    assert main(["demo", "--game", game, "--steps", "5", "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert f"No trained SPACE+MOC detector for {game}" in err and "moc-envs train-detector" in err


def test_import_stays_cheap() -> None:
    code = "import sys, moc_envs; print(sorted(m for m in ('torch', 'ocatari', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_subcommand_with_its_line(capsys) -> None:
    import argparse

    import pytest

    from moc_envs.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    lines = {c.dest: c.help for c in sub._choices_actions}
    assert {"demo", "list"} <= set(lines)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, line in lines.items():
        assert f"{name} {' '.join(line.split())}" in text, f"--help does not list {name}"
    assert "`" not in text  # plain text, no reStructuredText markup


def test_version_and_demo_defaults(capsys) -> None:
    import pytest

    from moc_envs import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"moc-envs {__version__}"
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "(default: Pong)" in text and "(default: 200)" in text and "--threads" in text


def test_list_shows_every_game_and_its_source(capsys) -> None:
    from moc_envs.games import game_names
    from moc_envs.weights.search import bundled_games

    assert main(["list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(game_names()) <= set(rows)
    shipped = set(bundled_games())
    assert "Pong" in shipped and all(rows[g][1] == ("bundled" if g in shipped else "none") for g in game_names())


def test_train_help_shows_its_options_and_defaults(capsys, option_help) -> None:
    import pytest

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: moc-envs train")
    options = option_help(text)
    for flag, default in (("--preset", "auto"), ("--threads", "1"), ("--nproc", "1"), ("--seed", "0")):
        assert f"(default: {default})" in options[flag], flag
    for flag in ("--game", "--out", "--minutes", "--redo", "--data"):
        assert flag in options
    assert "(default: runs/<game>)" in options["--out"] and "(default: none" in options["--minutes"]
    assert "pipeline.json" in text and "the dataset stage included" in options["--minutes"]
    assert "the teacher plans for 70% of it" in text and "too small" in text  # resume and the budget are explained


def test_train_without_the_training_code_says_what_to_install(monkeypatch, capsys) -> None:
    import sys

    from moc_envs.cli import registered_commands

    target = registered_commands()[0]["train"].module  # the module the trainers' registry names
    monkeypatch.setitem(sys.modules, target, None)  # as if trainers could not be imported
    assert main(["train", "--game", "Pong"]) == 2
    err = capsys.readouterr().err
    assert "'moc-envs train' needs the training code" in err and 'pip install -e ".[train]"' in err


VERBS = {
    "demo", "list", "manifest", "train", "dataset", "background", "raw-frames", "train-detector", "distill",
    "classifier", "evaluate", "metrics", "unmatched", "export", "card", "label-offsets", "extents", "held-out", "hud", "readouts", "agent",
    "agent-eval", "bench",
}  # fmt: skip
BENCHMARK_NAMES = {
    "all", "speed", "detection", "noisy", "probe", "agents", "flicker", "games", "transfer", "train-speed",
    "ddp-speed", "backends", "hud", "labels", "ablation", "label-cost",
}  # fmt: skip


def _resolves(command) -> bool:
    import importlib

    return callable(getattr(importlib.import_module(command.module), command.function, None))


def test_every_registered_verb_resolves() -> None:
    from benchmarks.commands import BENCHMARKS
    from moc_envs.cli import BUILTIN_COMMANDS, Command, registered_commands

    commands, problems = registered_commands()
    assert problems == {}
    assert set(commands) | set(BUILTIN_COMMANDS) | {"demo", "list"} == VERBS
    assert set(BENCHMARKS) == BENCHMARK_NAMES
    every = [*commands.values(), *BUILTIN_COMMANDS.values(), *(Command(*b) for b in BENCHMARKS.values())]
    unresolved = [c for c in every if not _resolves(c)]
    assert unresolved == []


def test_the_registries_import_nothing_heavy() -> None:
    # Loading the entry points happens on every `moc-envs` call: no torch, no training code.
    code = (
        "import sys; from moc_envs.cli import registered_commands; v, p = registered_commands(); "
        "assert not p, p; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'trainers', 'benchmarks') and m not in ('trainers', 'trainers.commands', "
        "'benchmarks', 'benchmarks.commands')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_verb(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")}
    assert VERBS <= listed
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")}
    assert BENCHMARK_NAMES <= listed


@pytest.mark.parametrize(
    "argv",
    [*([verb] for verb in sorted(VERBS - {"bench"})), *(["bench", n] for n in sorted(BENCHMARK_NAMES))],
    ids=" ".join,
)
def test_a_verb_help_is_its_own_with_its_defaults(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: moc-envs {' '.join(argv)} ")
    if argv not in (["manifest"], ["list"]):  # no option with a default
        assert "(default:" in text


def test_a_verb_runs_under_its_own_name(capsys) -> None:
    # The verb's own parser reports errors as `moc-envs <verb>`, and its exit status comes back.
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "games", "--no-such-option"])
    assert exit_.value.code == 2
    assert "usage: moc-envs bench games" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "no-such-benchmark"])
    assert exit_.value.code == 2
    assert "invalid choice: 'no-such-benchmark'" in capsys.readouterr().err


def test_without_the_registry_the_error_says_what_to_install(monkeypatch, capsys) -> None:
    import moc_envs.cli

    monkeypatch.setattr(moc_envs.cli, "entry_points", lambda group: [])  # trainers not installed
    assert main(["train", "--game", "Pong"]) == 2
    err = capsys.readouterr().err
    assert "'moc-envs train' is not a command of this install" in err
    assert "no entry point 'trainers' in group moc_envs.commands" in err and 'pip install -e ".[train]"' in err
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "The training and benchmark commands are not installed" in out and "dataset" not in out
    assert main(["list"]) == 0  # the runtime's own verbs still work


def test_a_broken_registry_is_named_not_raised(monkeypatch, capsys) -> None:
    from importlib.metadata import EntryPoint

    import moc_envs.cli

    broken = [
        EntryPoint("trainers", "json:loads", "moc_envs.commands"),  # not a mapping
        EntryPoint("benchmarks", "benchmarks.commands:BENCHMARKS", "moc_envs.commands"),
    ]
    monkeypatch.setattr(moc_envs.cli, "entry_points", lambda group: broken)
    commands, problems = moc_envs.cli.registered_commands()
    assert "speed" in commands and "bench" not in commands
    assert set(problems) == {"trainers"} and "must name a mapping" in problems["trainers"]
    assert main(["dataset"]) == 2
    assert "json:loads" in capsys.readouterr().err
