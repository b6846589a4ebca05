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

# Installs follow requirements.lock, the versions the tests passed with (torch aside:
# it is machine-specific). pyproject.toml keeps ranges; `make lock` refreshes the lock.
LOCK    := requirements.lock
# The lock is resolved against the CPU build, so CUDA's packages stay out of it.
TORCH_FOR_LOCK ?= torch==2.13.0+cpu

.PHONY: run test install chromium bench bench-gpu lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -r $(LOCK)
	$(BIN)/pip install --no-deps -e .
	touch $(STAMP)

lock: | $(BIN)/python
	$(BIN)/pip install -q pip-tools
	echo "$(TORCH_FOR_LOCK)" > $(VENV)/torch-for-lock.txt
	$(BIN)/pip-compile --quiet --extra dev --extra postgres --unsafe-package torch \
	  --strip-extras --no-emit-index-url --no-emit-find-links \
	  -c $(VENV)/torch-for-lock.txt -o $(LOCK) pyproject.toml

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
