# Quick start: `make run` and `make test` on a machine with python3 and nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run try test test-fast lint bench fuzz clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m bot

# The real bot against the fake Bot API, chatted with in this terminal: no token, no network.
try: $(VENV)/.installed
	$(PY) -m bot try

test: $(VENV)/.installed-dev
	$(PY) -m pytest

# Unit, storage and in-process dispatcher tests: the quick loop while working (about 4 minutes
# on 2 cores, the PostgreSQL half included).
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not slow" -q

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:randomly tests/test_layers.py

# Benchmarks print their figures and their baseline; no test asserts speed. The report runs
# each of them (bench/bench_*.py) and writes bench/RESULTS.md; about 40 minutes on 2 cores.
bench: $(VENV)/.installed-dev
	$(PY) -m bench.report

# Hypothesis against the conversation: 10,000 random examples (`make test` runs 25 fixed).
fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=10000 $(PY) -m pytest tests/test_fuzz.py -q -p no:randomly

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
