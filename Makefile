# Two commands: `make demo` and `make test` (which builds the docs: `make docs`).
# Each creates .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= audio,litert,tfmot,plot,hub,jax,dev,docs
STAMP := $(VENV)/.installed-$(shell echo "$(EXTRAS)" | tr ',' '-')
PYTEST_ARGS ?=
# The core suite again on the JAX and PyTorch backends: tracing, surgery oracle,
# criteria, planner, PruningCallback, recovery, distillation, sensitivity, profile
# and export (TensorFlow-only cases skip themselves).
BACKEND_TESTS := tests/test_walk.py tests/test_graph.py tests/test_handlers.py tests/test_inner.py \
	tests/test_surgery.py tests/test_criteria.py tests/test_scoring.py \
	tests/test_plan.py tests/test_callbacks.py tests/test_latency.py \
	tests/test_recovery.py tests/test_distillation.py tests/test_sensitivity.py \
	tests/test_profile.py tests/test_export.py
# PyTorch's CPU build (~200 MB; the default Linux wheel on PyPI is a CUDA build of
# several GB). Installed into .venv by `make test` only.
TORCH ?= torch==2.13.0
TORCH_STAMP := $(VENV)/.installed-torch

.PHONY: demo test test-slow backends lint docs sysdeps venv torch clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

# Optional: when the wheel cannot be installed here, the PyTorch run is skipped
# with a message (the TensorFlow and JAX runs still decide the result).
torch: venv
	@test -f $(TORCH_STAMP) || { $(PY) -m pip install -q "$(TORCH)" && touch $(TORCH_STAMP); } \
		|| echo "make: could not install $(TORCH): the PyTorch backend run is skipped"

# Debian packages used by the demo and some tests: installed when we are root and apt
# exists, otherwise reported (the tests that need them skip with a clear message).
sysdeps:
	@bash scripts/sysdeps.sh

demo: venv sysdeps
	$(PY) -m keras_filterprune demo

lint: venv
	$(VENV)/bin/ruff check keras_filterprune tests benchmarks docs/hooks.py docs/griffe_doctest.py
	$(VENV)/bin/ruff format --check keras_filterprune tests benchmarks docs/hooks.py docs/griffe_doctest.py

# The documentation site, into site/: every warning fails the build (mkdocs.yml).
docs: venv
	NO_MKDOCS_2_WARNING=1 TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/mkdocs build --strict --clean

# `make test`: lint, the site, the suite without the cases marked `slow` (large
# keras.applications models, multi-process training, LiteRT timing and conversion
# at their default settings, end-to-end runs), the notebooks, and the core suite on
# JAX and PyTorch: about 15 minutes on a quiet 2-core machine.
# `make test-slow`: the `slow` cases, on each backend. CI (.ci/run) runs both.
test: venv sysdeps lint torch docs
	$(PY) -m pytest -n auto -m "not slow" --durations=15 $(PYTEST_ARGS)
	$(PY) -m pytest -n auto --nbmake --nbmake-timeout=1800 notebooks
	$(MAKE) --no-print-directory backends MARK="not slow"

test-slow: venv sysdeps torch docs
	$(PY) -m pytest -n auto -m slow --durations=15 $(PYTEST_ARGS)
	$(MAKE) --no-print-directory backends MARK="slow"

# The core suite on JAX and PyTorch, the cases selected by MARK (pytest's exit
# status 5, "no test selected", is not a failure here).
MARK ?= not slow
backends:
	KERAS_BACKEND=jax $(PY) -m pytest -n auto -m "$(MARK)" $(BACKEND_TESTS) \
		|| test $$? -eq 5
	@if test -f $(TORCH_STAMP); then \
		echo "KERAS_BACKEND=torch $(PY) -m pytest -n auto -m \"$(MARK)\" $(BACKEND_TESTS)"; \
		KERAS_BACKEND=torch $(PY) -m pytest -n auto -m "$(MARK)" $(BACKEND_TESTS) \
			|| test $$? -eq 5; \
	else echo "make: PyTorch is not installed: the PyTorch backend run is skipped"; fi

bench: venv sysdeps
	$(PY) benchmarks/bench_criteria.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo_output site
