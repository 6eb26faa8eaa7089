# The README's commands. `make demo` runs the main job on the embedded default; `make test` runs everything.
# Both install from uv.lock (the versions the tests passed with); `make upgrade` re-resolves on purpose.
PYTHON     ?= python3
UV_VERSION := 0.13.9
TOOLS      := .venv-tools
UV         := $(TOOLS)/bin/uv
UV_STAMP   := $(TOOLS)/.uv-$(UV_VERSION)
VENV       := .venv
BIN        := $(VENV)/bin
# uv takes the interpreter .python-version names from this machine (pyenv), never a downloaded one
export UV_PYTHON_DOWNLOADS := never
# --compile-bytecode: every library's .pyc made once at install (uv makes none by default, and where
# PYTHONDONTWRITEBYTECODE is set Python never caches them: each process then compiled xarray, dask and
# distributed again, 2 s of every cold start; benchmarks/start_bench.py)
SYNC       := $(UV) sync --locked --python $(PYTHON) --compile-bytecode

.PHONY: demo test lint bench bench-compare lock upgrade sync-demo sync-test system-packages clean

# uv itself, pinned here only, in a small environment of its own (a fresh machine has only Python and pip); the
# stamp names the version, so changing UV_VERSION installs it
$(UV_STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "stackcube needs Python >= 3.12 (pyenv: .python-version selects 3.12)")'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q uv==$(UV_VERSION)
	@rm -f $(TOOLS)/.uv-* && touch $@

# the demo needs what a plain `pip install` of stackcube installs and nothing more (--inexact: keeps a test set-up's extras)
sync-demo: $(UV_STAMP)
	@$(SYNC) --quiet --no-default-groups --inexact

sync-test: $(UV_STAMP)
	@$(SYNC) --quiet --all-extras

demo: sync-demo
	$(BIN)/stackcube demo --out demo-output

system-packages:
	@./scripts/install-system-packages.sh

test: sync-test system-packages lint
	$(BIN)/python -m pytest -n 2 --durations=15

lint: sync-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: sync-test system-packages
	$(BIN)/python -m benchmarks.header_bench
	$(BIN)/python -m benchmarks.cube_bench

bench-compare: $(UV_STAMP) system-packages
	@$(SYNC) --quiet --all-extras --group compare
	$(BIN)/python -m benchmarks.compare_bench

# after editing pyproject.toml's dependencies: uv.lock again, every other pin kept as it is
lock: $(UV_STAMP)
	$(UV) lock --python $(PYTHON)

# newest releases within pyproject.toml's ranges, then the whole test suite: commit uv.lock only if it passes
upgrade: $(UV_STAMP)
	$(UV) lock --upgrade --python $(PYTHON)
	$(MAKE) test

clean:
	rm -rf $(VENV) $(TOOLS) .venv-lazycogs .venv-rasteret demo-output .pytest_cache .hypothesis
