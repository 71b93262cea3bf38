# The two commands of the README: `make demo` and `make test`. Each makes its own virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test test-fast test-slow test-ui ci-deps dist lint format benchmark benchmark-scale scale-stack scale-drill clean

# Two installs, each remembered by its stamp: the demo's (the package, the sandbox and the photos: about 140
# packages) and the tests' (all that and the dev tools: pytest, moto, Playwright, ...). A newer pyproject.toml
# installs again.
$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || (echo "Python 3.11+ is needed (set PYTHON=...)"; exit 1)
	@echo "== making the virtualenv $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "== installing faceswap-flows with the sandbox and the photos (no dev tools) into $(VENV):"
	@echo "   about 140 packages (Prefect, OpenCV, dlib, scikit-image); usually 1 to 3 minutes (pip's progress below)"
	$(BIN)/python -m pip install --progress-bar on -e '.[sandbox,photos]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "== installing faceswap-flows with the dev tools (pytest, moto, Playwright, ...) into $(VENV):"
	@echo "   about 185 packages, 1.6 GB; usually 2 to 5 minutes (pip's progress below)"
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	@echo "== starting the demo: Prefect server, sandbox, receiver, media server, then one face swap"
	$(BIN)/faceswap-flows demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -rfEs

# About 50 s: models, pricing, the client against a scripted stand-in, tokens, options, blocks, packaging; no
# Prefect server, sandbox or video (tests/conftest.py marks them `fast`). `make test` runs them and everything else.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m fast

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow or drill"

# The Prefect UI in headless Chromium: Debian's chromium (Playwright, a dev dependency, drives it and downloads no
# browser), then the test.
test-ui: $(STAMP)
	test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; }
	$(BIN)/python -m pytest tests/test_ui.py -m ui -rfEs

# What the optional checks need, from Debian's packages: chromium for tests/test_ui.py, exiftool for the label checks,
# postgresql, redis-server and nginx-light for tests/test_multi_server.py (.ci/run installs them; on a laptop without
# them `make test` skips those tests).
ci-deps:
	command -v exiftool >/dev/null && test -x /usr/bin/chromium && test -x /usr/bin/redis-server && test -x /usr/sbin/nginx \
		&& ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			chromium libimage-exiftool-perl postgresql redis-server nginx-light; }

# The wheel and the sdist, in dist/.
dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .

# lint-imports: the layer contracts of pyproject.toml's [tool.importlinter] (`make test` checks them in tests/test_layout.py)
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-logo

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

# Prefect's self-hosted multi-server topology on loopback (PostgreSQL, Redis messaging, 2 API servers behind nginx,
# 1 services process, 2 process workers, sandbox, 2 receivers behind nginx, media server), up until Ctrl-C (docs/scale.md).
scale-stack: $(STAMP)
	cd benchmarks && $(abspath $(BIN))/python multi_server.py

# The nothing-dropped drill on that topology (tests/test_multi_server.py runs it with 200 + 6 jobs).
scale-drill: $(STAMP)
	cd benchmarks && $(abspath $(BIN))/python scale_drill.py --jobs 200 --trigger-jobs 6 --kill-api 8 --kill-receiver 0.3

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache faceswap-media dist build
