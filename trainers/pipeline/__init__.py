"""The whole pipeline, gameplay to shipped weights, as one resumable command (``moc-envs train``)."""
