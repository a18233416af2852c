# The two first commands on a fresh machine:
#   make build-dataset      # the bundled demo region, offline (REGION=... for another)
#   make test               # lint, types and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
REGION ?= pipelines/regions/demo.yaml
ARGS   ?=
BASE   := $(VENV)/.installed-base
STAMP  := $(VENV)/.installed-test

.PHONY: build-dataset test test-quick lint bench clean help

help:
	@echo "make build-dataset [REGION=pipelines/regions/<name>.yaml] [ARGS='--workers 4 --overwrite']"
	@echo "make test | make test-quick | make bench | make clean"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The pipeline alone (no torch: the trainer's packages are the [train] extra), then its test tools.
$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(STAMP): $(BASE)
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $@

build-dataset: $(BASE)
	$(BIN)/triplet-builder build $(REGION) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

test-quick: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(BASE)
	$(BIN)/python -m bench.build_throughput

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
