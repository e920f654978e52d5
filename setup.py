"""Package list for setuptools; all other metadata is in pyproject.toml.

weights/ (the trained detectors) is not a Python package, so a find directive
cannot include it; it is added explicitly as ``moc_envs._weights`` so that a
regular ``pip install .`` carries the weights.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["moc_envs*", "trainers*", "benchmarks*"]), "moc_envs._weights"])
