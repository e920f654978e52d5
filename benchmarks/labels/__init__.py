"""Benchmarks of ``info["labels"]`` against RAM, label by label (``moc-envs bench hud``:
:mod:`benchmarks.labels.hud`)."""
