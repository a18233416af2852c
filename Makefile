# The two first commands on a fresh machine:
#   make build-dataset      # the bundled demo region, offline (REGION=... for another)
#   make test               # lint, types and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
REGION ?= pipelines/regions/demo.yaml
CONFIG ?= model/configs/tiny.yaml
DATA   ?= out/demo
CHECKPOINT ?=
ARGS   ?=
BASE   := $(VENV)/.installed-base
TRAIN  := $(VENV)/.installed-train
STAMP  := $(VENV)/.installed-test
BENCH  := $(VENV)/.installed-bench

.PHONY: build-dataset train eval preview verify test test-quick coverage mutation lint bench bench-remote bench-train clean help

help:
	@echo "make build-dataset [REGION=pipelines/regions/<name>.yaml] [ARGS='--workers 4 --overwrite']"
	@echo "make train [CONFIG=model/configs/tiny.yaml] [DATA=out/demo] [ARGS='--stage 2 --resume DIR']"
	@echo "make eval CHECKPOINT=out/train/tiny/stage2/final [DATA=out/demo]"
	@echo "make preview [DATA=out/demo] | make verify [DATA=out/demo]   (all of these: triplet-builder --help)"
	@echo "make test | make test-quick | make coverage | make mutation | make bench | make bench-remote | make bench-train | make clean"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The pipeline alone (no torch: the trainer's packages are the [train] extra), then its test tools.
$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

# The trainer's packages. torch==2.13.0 first unless a torch is already there (a CPU build where the
# package index offers one, the CUDA build from PyPI elsewhere); then the rest of the [train] extra.
$(TRAIN): $(BASE)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[train]"
	@touch $@

# the example stage plugin too (plugins/landcover_fractions): its tests find it through its entry point
$(STAMP): $(TRAIN) plugins/landcover_fractions/pyproject.toml
	$(BIN)/python -m pip install -q -e ".[train,test]"
	$(BIN)/python -m pip install -q --no-deps -e plugins/landcover_fractions
	@touch $@

# `make bench` builds with the osm stage from a generated .osm.pbf: the pipeline and its [osm] extra
$(BENCH): $(BASE)
	$(BIN)/python -m pip install -q -e ".[osm]"
	@touch $@

build-dataset: $(BASE)
	$(BIN)/triplet-builder build $(REGION) $(ARGS)

# build-dataset, train, eval, preview and verify run the one CLI, `triplet-builder` (pipelines/cli.py);
# train and eval are `python -m model.train` / `python -m model.eval` through it
# stage 1 then stage 2 on the shards in DATA (the demo's are built first when missing)
train: $(TRAIN)
	@test -f $(DATA)/manifest.json || [ "$(DATA)" != "out/demo" ] || $(MAKE) build-dataset
	$(BIN)/triplet-builder train --config $(CONFIG) --data $(DATA) $(ARGS)

eval: $(TRAIN)
	@test -n "$(CHECKPOINT)" || { echo "usage: make eval CHECKPOINT=DIR [DATA=out/demo]"; exit 2; }
	$(BIN)/triplet-builder eval --checkpoint $(CHECKPOINT) --data $(DATA) $(ARGS)

# a look at a build (DATA=out/demo): the HTML page, and the check against its manifest
preview: $(BASE)
	$(BIN)/triplet-builder preview $(DATA) $(ARGS)

verify: $(BASE)
	$(BIN)/triplet-builder verify $(DATA) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

test-quick: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# line coverage of the quick subset, subprocesses included (the CLI, Dask workers): [tool.coverage] in
# pyproject.toml; the figure is in README (Testing)
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest -q -m "not slow"
	$(BIN)/python -m coverage combine -q
	$(BIN)/python -m coverage report

# planted bugs in the critical paths (bench/mutants_*.py, gathered by bench/mutants.py), each against its targeted tests in a temporary
# copy of the repository; the summary is in bench/RESULTS.md (Mutation check)
mutation: $(STAMP)
	$(BIN)/python -m bench.mutation $(ARGS)

bench: $(BENCH)
	$(BIN)/python -m bench.build_throughput --fact-stages
	$(BIN)/python -m bench.checker_speed
	$(BIN)/python -m bench.aef_block_reads
	$(BIN)/python -m bench.png_level
	$(BIN)/python -m bench.malloc_trim
	$(BIN)/python -m bench.worker_scaling
	$(BIN)/python -m bench.scaling
	$(BIN)/python -m bench.memory

# remote sources against loopback servers with 200 ms latency per request
bench-remote: $(STAMP)
	$(BIN)/python -m bench.remote_cog
	$(BIN)/python -m bench.remote_earthengine
	$(BIN)/python -m bench.remote_llm

# the trainer on CPU: data reader against the step rate, TLM overhead, 1 and 2 gloo ranks (the GPU's figures:
# bash bench/gpu_check.sh on a GPU machine)
bench-train: $(STAMP)
	$(BIN)/python -m bench.train_data_reader
	$(BIN)/python -m bench.train_tlm_overhead --threads 1 --repeats 40
	$(BIN)/python -m bench.train_ddp_scaling

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
