# Entry points: `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
STACK ?= tf215-cpu
NEWEST_VENV ?= .venv-tf221
PY := $(VENV)/bin/python
export PYTHON

.PHONY: setup setup-newest demo test test-newest lint fmt bench gpu-smoke container-test slurm-up slurm-down clean

setup:  ## create $(VENV) with the pinned primary stack (a no-op when up to date)
	bash scripts/setup_env.sh $(STACK) $(VENV)

setup-newest:
	bash scripts/setup_env.sh tf221-cpu $(NEWEST_VENV)

demo: setup  ## generate data + stand-in zoo folder, fine-tune 500 steps through the driver, export, predict
	$(PY) -m train.demo --out demo_out

# Two workers, one test file each at a time (module fixtures are shared runs): much of a
# test's time is single-threaded (imports, tracing, exports, waits), so 2 cores do ~2 files.
# --no-loadscope-reorder: files in tests/conftest.py's order (slowest first), not xdist's
# default of the files with the most tests first (which started the longest ones last).
test: setup lint  ## the full suite on the primary stack (slow end-to-end tests included)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=40

test-newest: setup-newest  ## the stack-sensitive tests (compat shims, end to end) on TF 2.21
	$(NEWEST_VENV)/bin/python -m pytest -m stack -n 2 --dist loadfile --no-loadscope-reorder

lint: setup
	$(PY) -m ruff check train tests scripts
	$(PY) -m ruff format --check train tests scripts

fmt: setup
	$(PY) -m ruff format train tests scripts
	$(PY) -m ruff check --fix train tests scripts

bench: setup  ## driver vs raw train_loop overhead (prints the steady-state steps/s ratio)
	$(PY) scripts/bench_overhead.py

gpu-smoke:  ## on a GPU machine: GPU stack, driver vs raw train_loop steps/s (< 10 min)
	bash scripts/gpu_smoke.sh

container-test:  ## root: build the Dockerfile on a local stand-in base with podman and run it
	bash scripts/container_test.sh

slurm-up:  ## start the one-node test Slurm the Slurm tests use (root; installs slurm-wlm)
	bash tests/slurm/slurm_up.sh

slurm-down:
	bash tests/slurm/slurm_down.sh

clean:
	rm -rf demo_out bench_out .pytest_cache .ruff_cache
