"""Stage 2, the detector: SPACE+MOC training (losses, configurations, derived settings, DDP)
and distillation into the lean encoder (``moc-envs train-detector``, ``moc-envs distill``)."""
