# fleetcore: the two commands of the README, and the ones around them.
#   make demo    a control server and six agents on this machine: a new commit rolls
#                out canary -> early -> general (no Docker needed; Ctrl-C stops it all)
#   make test    the whole suite with coverage against real git, Docker, PostgreSQL,
#                OpenBao, mosquitto, HAProxy and Chromium, then the core alone (test-core)
#   make dev     .venv with the core, every plugin under plugins/ and the test plugin
#   make lint    ruff check, ruff format --check and the import-layer contracts
#   make types   mypy, strict
#   make bench   the benchmarks in benchmarks/ (figures in docs/benchmarks.md)
#   make clean   remove the virtual environments and coverage/test caches
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/fleetcore-*)
COV_FLOOR ?= 87
# Most tests wait on real services (health checks, report intervals), not on the
# CPU: three workers finish the suite sooner even on two cores. WORKERS=0 runs
# it in one process.
WORKERS ?= 3

.PHONY: demo test dev system-deps docker test-core lint types bench clean

demo: dev
	$(BIN)/fleetcore demo

test: system-deps-tests dev docker
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup --cov --cov-report=term \
	  --cov-fail-under=$(COV_FLOOR) --durations=30 $(PYTEST_ARGS)
	$(MAKE) test-core

# The core alone, without any plugin: it must list none, and name the
# missing one when configuration selects it.
test-core: system-deps
	test -x .venv-core/bin/pytest || ($(PYTHON) -m venv .venv-core && \
	  .venv-core/bin/pip install -q --upgrade pip && .venv-core/bin/pip install -q -e . pytest)
	.venv-core/bin/pytest -p no:cacheprovider -c tests/core_only/pytest.ini tests/core_only

dev: system-deps $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) tests/_plugin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,server,postgres]' $(addprefix -e ,$(PLUGINS)) -e tests/_plugin
	touch $@

system-deps:
	scripts/system-deps.sh

system-deps-tests:
	scripts/system-deps.sh --tests

docker:
	scripts/start-docker.sh

lint: dev
	$(BIN)/ruff check src plugins tests benchmarks
	$(BIN)/ruff format --check src plugins tests benchmarks
	$(BIN)/lint-imports

types: dev
	$(BIN)/mypy

bench: dev
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-core .coverage .coverage.* htmlcov .pytest_cache .tox .nox
