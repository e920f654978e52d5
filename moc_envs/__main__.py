"""``python -m moc_envs`` runs the ``moc-envs`` command line."""

from __future__ import annotations

from moc_envs.cli import main

raise SystemExit(main())
