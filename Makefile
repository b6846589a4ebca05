# The project's two commands: `make run` and `make test`. Both install what is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The CPU build of torch lies on this kind of machine's disk; an unpinned torch
# would pull a 5 GB CUDA build. Users with a GPU install their own torch first.
TORCH   ?= torch==2.13.0
HOST    ?= $(or $(QEC_HOST),127.0.0.1)
PORT    ?= $(or $(QEC_PORT),8000)

.PHONY: run test install chromium bench bench-gpu clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium for the browser tests (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP)
	$(BIN)/python -m assistant serve --host $(HOST) --port $(PORT)

# The store's contract tests also run on a throwaway PostgreSQL when one can start.
test: $(STAMP) chromium
	QEC_TEST_POSTGRES_URL="$${QEC_TEST_POSTGRES_URL:-$$(bash tests/support/start_postgres.sh)}" \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/backends.py

# Needs an NVIDIA GPU with a CUDA torch in .venv; `bench/gpu.py --smoke` runs in make test.
bench-gpu: $(STAMP)
	$(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) .pytest_cache
