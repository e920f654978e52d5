"""Stage 3, categories: fit the z_what -> category classifier shipped beside a detector
(``moc-envs classifier``)."""
