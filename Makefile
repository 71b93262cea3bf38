# The two commands of the README: `make demo` and `make test`. Each makes its own virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-slow test-ui lint format benchmark benchmark-scale clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || (echo "Python 3.11+ is needed (set PYTHON=...)"; exit 1)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/faceswap-flows demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not drill"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow or drill"

# The Prefect UI in headless Chromium: Debian's chromium (Playwright drives it, downloads no browser), then the test.
test-ui: $(STAMP)
	test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y chromium chromium-driver; }
	$(BIN)/python -c 'import playwright' 2>/dev/null || $(BIN)/python -m pip install --quiet 'playwright>=1.45,<2'
	$(BIN)/python -m pytest tests/test_ui.py -m ui -rs

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Each prints its figures with a baseline measured in the same run (BENCHMARKS.md). The callback, orchestration
# and scale benchmarks install PostgreSQL with apt-get when it is missing.
benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_storage.py --size-mb 1024
	cd benchmarks && $(abspath $(BIN))/python bench_callbacks.py
	cd benchmarks && $(abspath $(BIN))/python bench_orchestration.py --jobs 100 500

benchmark-scale: $(STAMP)
	cd benchmarks && $(abspath $(BIN))/python bench_scale.py --jobs 10000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache faceswap-media
