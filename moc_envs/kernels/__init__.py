"""Compiled kernels of the detector's CPU hot path (numba).

At the batch sizes an env runs, the work after the image encoder is a few boxes a frame, and
NumPy's fixed cost per call (several microseconds, a few dozen calls a box) was most of a
learned env step (issue 30). These kernels do the same arithmetic in loops that numba compiles
once per machine (``cache=True``: the compiled code is kept beside this package, or in numba's
user cache where that folder is read-only):

- :mod:`moc_envs.kernels.boxes`: duplicate suppression, the drawn-box test and the pixel-tight
  boxes with their object colours, exactly the results of
  :mod:`moc_envs.perception.postprocess`'s readable NumPy functions;
- :mod:`moc_envs.kernels.glimpses`: the bilinear glimpse crop of
  :func:`moc_envs.model.decode_np.crop_glimpses_np`, in the same float32 operations;
- :mod:`moc_envs.kernels.resize`: the detector's input, OpenCV's area resize and the division
  to [0, 1] in one pass, bit for bit;
- :mod:`moc_envs.kernels.nearest`: which (row, centroid) pairs the classifier measures exactly
  (:func:`moc_envs.perception.classifier.centroid_distances`);
- :mod:`moc_envs.kernels.lines`: the thin vertical lines a readout follows (SpaceInvaders' shot,
  :func:`moc_envs.readouts.shot.thin_lines`).

Tests compare every kernel with its NumPy reference on real frames.
"""
