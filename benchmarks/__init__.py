"""The benchmarks: speed, detection quality, probes, agents and the rest, each ``moc-envs bench
<name>`` (``moc-envs bench all`` runs the four headline ones and times them). Their results,
JSON beside Markdown and plots, are written to ``benchmarks/results`` of the checkout."""
