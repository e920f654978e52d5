# Quick start: `make demo` (set up, then play Pong and write demo-pong.gif)
# and `make test` (set up, then run the test suite). Both create the virtual
# environment $(VENV) when it is missing and install what they need once: a
# stamp file in the venv records the install, and it is redone only when
# pyproject.toml, setup.py or this Makefile is newer than the stamp (or the
# stamp is deleted). `make docs` builds the docs site into $(VENV)/site.
#
# Install order: torch first where the venv has none (so that torch>=2.3 is
# already satisfied and pip does not pull a CUDA build), then the package with
# its extras, then OCAtari without its declared dependencies (they would add
# the GUI build of OpenCV beside the headless one; the `oracle` extra holds
# what OCAtari imports).

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
OCATARI_VERSION ?= 2.2.1
GAME ?= Pong
STEPS ?= 300
# space: the learned detector (bundled weights/<Game>); ram: the RAM oracle
DETECTOR ?= space
# AGENT=1: the game's trained PPO agent plays (weights/<Game>/agent) instead of random actions
AGENT ?= 0
# `make train-games`: `moc-envs train` for each of GAMES in turn (each resumable: run it again to continue)
GAMES ?= Breakout Freeway Tennis SpaceInvaders MsPacman Seaquest Asterix Carnival
PRESET ?= auto

PY := $(VENV)/bin/python
DEPS := pyproject.toml setup.py Makefile
# `demo`: the package, the RAM oracle; `dev`: also training, video, docs and test tools, and
# `rllib` (Ray, which the `dev` extra leaves out for its size) so that the RLlib test runs.
DEV_EXTRAS := dev,rllib
DEMO_STAMP := $(VENV)/.moc-envs-demo.stamp
DEV_STAMP := $(VENV)/.moc-envs-dev.stamp

.PHONY: install install-dev demo test lint docs train-games

$(PY):
	$(PYTHON) -m venv $(VENV)

define install_with
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[$(1)]"
	$(PY) -m pip install --no-deps "ocatari==$(OCATARI_VERSION)"
endef

$(DEMO_STAMP): $(DEPS) | $(PY)
	$(call install_with,oracle)
	touch $@

# The dev install holds everything the demo needs, so it stamps both.
$(DEV_STAMP): $(DEPS) | $(PY)
	$(call install_with,$(DEV_EXTRAS))
	touch $(DEMO_STAMP) $@

install: $(DEMO_STAMP)

install-dev: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/moc-envs demo --game $(GAME) --steps $(STEPS) --detector $(DETECTOR)$(if $(filter 1,$(AGENT)), --agent)

test: $(DEV_STAMP)
	$(PY) -m pytest

train-games: $(DEV_STAMP)
	set -e; for game in $(GAMES); do $(VENV)/bin/moc-envs train --game $$game --preset $(PRESET); done

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

# The docs site, warnings as errors (broken links and anchors included), offline.
docs: $(DEV_STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir $(VENV)/site
