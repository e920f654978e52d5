# Quick start: `make demo` (set up, then play Pong and write demo-pong.gif)
# and `make test` (set up, then run the test suite). Both create the virtual
# environment $(VENV) when it is missing, install torch first where the venv
# has none (so torch>=2.3 is already satisfied), then this package.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
GAME ?= Pong
STEPS ?= 300
# space: the learned detector (bundled weights/<Game>); ram: the RAM oracle
DETECTOR ?= space

PY := $(VENV)/bin/python

.PHONY: install demo test lint

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[dev]"

demo: install
	$(VENV)/bin/moc-envs demo --game $(GAME) --steps $(STEPS) --detector $(DETECTOR)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
