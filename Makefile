# Two commands work on a fresh machine: `make demo` and `make test`.
# Each target creates .venv when it is missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch lies on this disk; a bare `pip install torch` would pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
SKSVD_DATA_HOME ?= $(shell [ -d ../shared/data ] && cd ../shared/data && pwd)
export SKSVD_DATA_HOME

.PHONY: demo test lint bench bench-quick docs clean

$(VENV)/.torch:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU present: installing torch from the package index"; $(PIP) install -q "torch>=2.2"; \
	else $(PIP) install -q "$(TORCH_SPEC)"; fi
	touch $@

$(VENV)/.core: $(VENV)/.torch pyproject.toml
	$(PIP) install -q -e ".[plot,image,dev,dask]"
	touch $@

$(VENV)/.bench: $(VENV)/.core
	$(PIP) install -q -e ".[plot,image,dev,dask,bench]"
	touch $@

demo: $(VENV)/.core
	$(PY) -m sksvd.demo

test: $(VENV)/.core
	$(PY) -m pytest -q -p no:cacheprovider tests
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -p no:cacheprovider --doctest-modules sksvd

lint: $(VENV)/.core
	$(PY) -m ruff check sksvd tests benchmarks

bench: $(VENV)/.bench
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: $(VENV)/.bench
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

$(VENV)/.docs: $(VENV)/.core
	$(PIP) install -q -e ".[plot,image,dev,docs]"
	touch $@

# The HTML documentation, warnings as errors (docs/_build/html/index.html). Writes only
# under docs/_build: the table of docs/errors.md is regenerated there and compared with the
# committed page, which `$(PY) docs/gen_errors.py` rewrites when the code's messages change.
docs: $(VENV)/.docs
	mkdir -p docs/_build
	$(PY) docs/gen_errors.py docs/_build/errors.md
	@cmp -s docs/_build/errors.md docs/errors.md || { diff docs/errors.md docs/_build/errors.md | head -20; \
		echo "docs/errors.md is stale: run $(PY) docs/gen_errors.py (it rewrites docs/errors.md)"; exit 1; }
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) demo_output .pytest_cache
