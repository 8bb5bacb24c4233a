# One virtual environment, refreshed when pyproject.toml changes.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# The CPU wheel first: pip then finds torch satisfied and never fetches a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rrn train digits-demo

bench: $(STAMP)
	$(PY) -m benchmarks --device cpu --sizes tiny A1 --threads 2 --repeats 3

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools hubconf.py
	$(VENV)/bin/ruff format --check src tests benchmarks tools hubconf.py

clean:
	rm -rf $(VENV) build src/*.egg-info
