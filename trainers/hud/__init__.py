"""The learned HUD reader: scores, lives, clocks and bars fitted from frames and RAM
(``moc-envs hud``; the reader itself is :mod:`moc_envs.hud`)."""
