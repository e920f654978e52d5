"""Fitting readouts (:mod:`moc_envs.readouts`) from play, with RAM as the teacher: ``moc-envs readouts``."""
