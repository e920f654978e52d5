"""``python -m benchmarks.backends``: the same as ``moc-envs bench backends``."""

from benchmarks.backends import main

main()
