"""Weights lookup, and a regular (non-editable) install carrying weights/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from moc_envs import weights_dir, weights_root

REPO = Path(__file__).resolve().parents[1]


def test_checkout_weights_by_default(monkeypatch) -> None:
    monkeypatch.delenv("MOC_ENVS_WEIGHTS", raising=False)
    assert weights_root() == REPO / "weights"
    assert weights_dir("pong") == REPO / "weights" / "Pong"


def test_env_var_overrides(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MOC_ENVS_WEIGHTS", str(tmp_path))
    assert weights_root() == tmp_path.resolve()
    assert weights_dir("SPACEINVADERS") == tmp_path.resolve() / "SpaceInvaders"


def test_regular_install_ships_weights(tmp_path) -> None:
    """Build the wheel, install it into a temp folder, and find weights/ inside it."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("moc_envs-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "MOC_ENVS_WEIGHTS"}
    env["PYTHONPATH"] = str(site)
    code = (
        "import moc_envs, moc_envs.weights as w; print(moc_envs.__file__); print(w.weights_root())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(site)), out  # the installed copy, not the checkout
    root = Path(out[1])
    assert root == site / "moc_envs" / "_weights"
    expected = {
        p.relative_to(REPO / "weights")
        for p in (REPO / "weights").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    installed = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
    assert expected and expected <= installed
