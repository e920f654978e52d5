"""``python -m trainers.pipeline``: the same command as ``moc-envs train``."""

from trainers.pipeline.cli import main

raise SystemExit(main(prog="python -m trainers.pipeline"))
