# The README's commands. `make demo` runs the main job on the embedded default; `make test` runs everything.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-compare system-packages clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "stackcube needs Python >= 3.12 (pyenv: .python-version selects 3.12)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	@touch $@

demo: $(STAMP)
	$(BIN)/stackcube demo --out demo-output

system-packages:
	@./scripts/install-system-packages.sh

test: $(STAMP) system-packages lint
	$(BIN)/python -m pytest -n 2 --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP) system-packages
	$(BIN)/python -m benchmarks.header_bench
	$(BIN)/python -m benchmarks.cube_bench

clean:
	rm -rf $(VENV) .venv-lazycogs .venv-rasteret demo-output .pytest_cache .hypothesis

bench-compare: $(STAMP) system-packages
	$(BIN)/python -m pip install -q -e ".[compare]"
	$(BIN)/python -m benchmarks.compare_bench
