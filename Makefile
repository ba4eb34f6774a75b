# Two commands on a fresh machine: `make demo` and `make test`. Both (re)build .venv idempotently first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeq-installed

.PHONY: demo test test-fast bench lint system-deps venv clean

venv: $(STAMP)

# Re-install only when pyproject.toml changes; pip is pinned to the CPU torch wheel by its == pin.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Debian packages used by the ARM emulator, the C++ runner and the SSH test (root only; a no-op otherwise).
system-deps:
	@bash scripts/system-deps.sh

demo: venv
	$(VENV)/bin/edgeq demo

test: venv system-deps
	$(PY) -m ruff check edgeq tests bench
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not emulator" tests

bench: venv system-deps
	$(PY) -m bench.run

lint: venv
	$(PY) -m ruff check edgeq tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
