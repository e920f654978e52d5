"""The README and the docs site: a short README whose links resolve, an API reference that covers
every module, the extras that keep Ray out of `dev`, and a strict offline build of the site."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
# Modules that are not API: the command line's parser, the trainers' registry of its verbs, and
# `python -m` shims.
NOT_API = {"moc_envs.cli", "trainers.commands"}


def _links(markdown: str) -> list[str]:
    """Targets of the Markdown links of ``markdown`` that point into the repository."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [
        t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")
    ]


def test_readme_is_short_and_its_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    lines = text.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"
    missing = [t for t in _links(text) if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_lists_every_game_with_its_card_figures() -> None:
    text = (ROOT / "README.md").read_text()
    games = sorted(p.parent.name for p in (ROOT / "weights").glob("*/card.json"))
    assert len(games) == 11
    for game in games:
        card = json.loads((ROOT / "weights" / game / "card.json").read_text())
        held_out, moving = card["ship"]["f1_held_out"], card["evaluation"]["detector"]["moving"]["f1"]
        row = re.search(rf"^\| {game} \| ([0-9.]+) \|(.*)$", text, re.M)
        assert row, f"README.md has no row for {game} in its games table"
        assert row.group(1) == f"{held_out:.3f}", (
            f"{game}: README says held-out F1 {row.group(1)}, its card {held_out:.3f}"
        )
        cells = [c.strip() for c in row.group(2).split("|")]
        assert f"{moving:.3f}" in cells, f"{game}: README's row lacks the card's test-split F1 {moving:.3f}"
        assert ("yes" if card["ship"]["meets_held_out_bar"] else "no") in cells


def _modules(package: str) -> set[str]:
    out = set()
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__" or any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_api_reference_covers_every_module() -> None:
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), re.M))
    modules = (_modules("moc_envs") | _modules("trainers")) - NOT_API
    assert not modules - documented, f"not in docs/api/*.md: {sorted(modules - documented)}"
    assert not documented - modules, (
        f"docs/api/*.md names modules that do not exist: {sorted(documented - modules)}"
    )


def test_dev_extra_leaves_out_ray_and_make_installs_it() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    nested = {r for r in extras["dev"] if r.startswith("moc-envs[")}
    assert nested and not any("rllib" in r for r in nested), "the dev extra must not pull in rllib"
    assert any("docs" in r for r in nested) and "docs" in extras and "rllib" in extras
    assert re.search(r"^DEV_EXTRAS := dev,rllib$", (ROOT / "Makefile").read_text(), re.M)


def test_docs_build_strict_offline(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    # Proxies that lead nowhere: a plugin that fetched anything (a remote inventory) would fail.
    nowhere = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": nowhere, "HTTPS_PROXY": nowhere, "http_proxy": nowhere,
           "https_proxy": nowhere, "NO_PROXY": "", "no_proxy": ""}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "envs" / "index.html").is_file()
