# README's two commands (`make demo`, `make test`) must work on a fresh machine:
# every install step lives here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup bytecode test test-fast lint typecheck pytest demo bench clean

setup: $(STAMP)

# Re-installs only when the project's metadata changes, so a second `make setup` is instant.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "quorumkeep needs Python >= 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed; installing Debian's python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	@command -v etcd >/dev/null || { \
	  echo "etcd not found (the replicated ledger and its tests need it); installing Debian's etcd-server"; \
	  apt-get update -qq && apt-get install -y -qq etcd-server; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Where the environment says PYTHONDONTWRITEBYTECODE (this sandbox does), no process writes
# bytecode, so every process the suite, the demo or a benchmark starts would compile
# quorumkeep's sources again (about 0.3 s of CPU each, ~1,000 processes per suite). Written
# once here; compileall only recompiles what changed.
bytecode: setup
	@$(BIN)/python -m compileall -q src

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: setup
	$(BIN)/mypy

# Three workers for the two cores of CI: about a third of a worker's time is spent waiting
# on the processes it started (sockets, timers, restarts), which a third worker fills
# (measured: 286 s with two, 216 s with three, 214 s with four). Each test file runs on one
# worker in file order (module-wide devnets and ledgers are shared by the tests of their
# file); each worker starts its processes through a fork server (tests/conftest.py).
XDIST := -n 3 --dist loadfile

pytest: bytecode
	$(BIN)/python -m pytest -q $(XDIST)

# The linters run beside the suite (a few seconds of CPU, otherwise waited for first).
test: setup
	@$(MAKE) --no-print-directory -j3 lint typecheck pytest

# The fast loop: no process is started (tests/conftest.py fails a test that starts one
# without the slow marker).
test-fast: bytecode
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

demo: bytecode
	$(BIN)/quorumkeep devnet demo

bench: bytecode
	$(BIN)/quorumkeep bench crypto --json
	$(BIN)/quorumkeep bench ers --json
	$(BIN)/quorumkeep bench ledger --json
	$(BIN)/quorumkeep bench ledger --store etcd --json
	$(BIN)/quorumkeep bench network --nodes 4 --threshold 3 --requests 500 --json
	$(BIN)/quorumkeep bench recovery --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
