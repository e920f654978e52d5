"""The environments: the object-centric wrapper, its registration and argument checks, the
batched vector env and its worker processes, the Stable-Baselines3 adapter and rendering.

``moc_envs`` re-exports the public names; import from here to reach the modules themselves.
"""
