"""Runnable examples that use moc_envs with other engines (``python -m examples.<name>``).

Not installed with the package: run them from a checkout. Each one names the extra it needs.
"""
