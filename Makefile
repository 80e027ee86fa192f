# Two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= audio,litert,tfmot,plot,hub,jax,dev
STAMP := $(VENV)/.installed-$(shell echo "$(EXTRAS)" | tr ',' '-')
PYTEST_ARGS ?=
# The core suite again on the JAX backend: tracing, surgery oracle, criteria,
# planner and PruningCallback (TensorFlow-only cases skip themselves).
JAX_TESTS := tests/test_walk.py tests/test_graph.py tests/test_handlers.py \
	tests/test_surgery.py tests/test_criteria.py tests/test_scoring.py \
	tests/test_plan.py tests/test_callbacks.py tests/test_latency.py

.PHONY: demo test lint sysdeps venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

# Debian packages used by the demo and some tests: installed when we are root and apt
# exists, otherwise reported (the tests that need them skip with a clear message).
sysdeps:
	@bash scripts/sysdeps.sh

demo: venv sysdeps
	$(PY) -m keras_filterprune demo

lint: venv
	$(VENV)/bin/ruff check keras_filterprune tests benchmarks
	$(VENV)/bin/ruff format --check keras_filterprune tests benchmarks

test: venv sysdeps lint
	$(PY) -m pytest -n auto --durations=15 $(PYTEST_ARGS)
	$(PY) -m pytest -n auto --nbmake --nbmake-timeout=300 notebooks
	KERAS_BACKEND=jax $(PY) -m pytest -n auto $(JAX_TESTS)

bench: venv sysdeps
	$(PY) benchmarks/bench_criteria.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo_output
