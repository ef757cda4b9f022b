# AgriBridge: `make demo` serves the demo, `make test` runs everything. Both set themselves up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest test-pg15 bench lock clean install

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.9,<1"
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

## demo: embedded PostgreSQL + demo data + API on http://127.0.0.1:$(PORT) (PORT=… to change)
demo: $(STAMP)
	$(BIN)/market demo --port $(PORT)

## test: lint, format check, type check and the whole test suite
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

## test-pg15: the suite against the PostgreSQL 15 server on 127.0.0.1:5432
test-pg15: $(STAMP)
	MARKET_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres $(BIN)/pytest

## bench: benchmarks, printed as ratios against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python -m bench

## lock: re-resolve requirements.lock (with dev tools) and requirements-runtime.lock (the image)
lock:
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile --quiet pyproject.toml --python-version 3.11 -o requirements-runtime.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
