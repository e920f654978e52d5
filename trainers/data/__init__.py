"""Stage 1, data: play the game and record frames, the background image, motion targets and
OCAtari RAM ground truth; read a built dataset back (``moc-envs dataset``)."""
