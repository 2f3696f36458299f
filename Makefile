# Two entry points: `make render` (the bundled default scene) and `make test`.
# Each creates the virtual environment on first use and installs what it needs.
# torch is installed first at a pinned CPU build so that the range in pyproject.toml
# is already satisfied and pip does not fetch a multi-gigabyte CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
SPP ?= 64

.PHONY: install render test lint bench clean

$(BIN)/tracer: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" || $(BIN)/pip install -q "torch>=2.1"
	$(BIN)/pip install -q -e ".[dev,ray]"
	@touch $@

install: $(BIN)/tracer

render: install
	$(BIN)/tracer render scenes/spheres.toml --spp $(SPP) --out renders/spheres.exr

test: install
	$(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/ruff check tracer flows tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_render.py

clean:
	rm -rf $(VENV) renders/*.exr renders/*.png renders/*.json
