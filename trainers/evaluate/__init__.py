"""Stage 4, evaluation and export: detection and latent metrics, label calibration, the model
card and the exported weights folder (``moc-envs evaluate``, ``export``, ``card``, ``label-offsets``)."""
