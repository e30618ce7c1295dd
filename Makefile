# The README's two commands:  `make run` (set up + full pipeline)  and  `make test` (set up + tests).
# TF=gpu installs the CUDA build of TensorFlow instead of the CPU one.
VENV ?= .venv
TF ?= cpu
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
LOCK := requirements/lock-$(TF).txt

.PHONY: setup run test lint lock clean
setup: $(VENV)/.installed-$(TF)

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
	$(BIN)/ruff check ser tests

# Re-pin every dependency after editing pyproject.toml.
lock:
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra cpu --extra dev -o requirements/lock-cpu.txt
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra gpu --extra dev -o requirements/lock-gpu.txt

clean:
	rm -rf $(VENV)
