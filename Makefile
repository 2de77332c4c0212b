# The two commands: `make demo` and `make test`. Both create .venv on first use.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -m "not slow"

.PHONY: demo test test-all lint bench install clean

install: $(STAMP)

# torch first: pinned to the CPU build (any other spec pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/llmctr demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest --durations=15

lint: $(STAMP)
	$(BIN)/ruff check platform tests benchmarks jobs

bench: $(STAMP)
	$(BIN)/python -m benchmarks.ml1m_deepfm

clean:
	rm -rf artifacts .pytest_cache
