# One place for every command; CI runs `make test` and `make build` through .ci/run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY313 := $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13 || echo python3)
PY311 := $(shell PYENV_VERSION=3.11.7 pyenv which python3.11 2>/dev/null || command -v python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
SAM := .venv-sam/bin/sam
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} PYENV_VERSION=3.11.7:3.12.1:3.13.0
export PYTHONPATH := layers/payments:.

# bandit skips, each with its reason (also in docs/decisions.md, 2026-12-06 security scans; a skip
# of one line is `# nosec BXXX # reason` on that line: bandit reads test ids up to the next #).
#   B101 assert: every assert narrows a type for mypy right after the check that guarantees it
#        (no input is validated by an assert); Lambda never runs Python with -O.
BANDIT_SKIPS := B101
# local/ and bench/ are developer tools, never deployed (the ePay simulator, the local stack,
# benchmarks). On top of B101 they may:
#   B105 hold the bank's published sandbox credentials and moto's dummy keys ("testing"),
#   B311 draw chaos faults from a seeded random.Random (reproducible runs, not cryptography),
#   B404/B603 start fixed programs (java for DynamoDB Local, python for cold-import samples)
#        with argument lists, never a shell,
#   B506 load YAML with TemplateLoader, a yaml.SafeLoader subclass (bandit cannot tell).
BANDIT_DEV_SKIPS := B101,B105,B311,B404,B506,B603

.PHONY: help setup run test unit integration lint format typecheck scan validate build bench bench-smoke bench-chaos bench-dispatch bench-reconciler bench-invoices bench-local deploy clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: requirements-dev.txt layers/payments/requirements.txt
	test -x $(BIN)/python || $(PY313) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# The Python client (clients/python), editable in the app venv: the e2e tests import it.
$(BIN)/.client-installed: clients/python/pyproject.toml $(BIN)/.installed
	$(BIN)/pip install -q -e clients/python
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

.venv-sam/.installed:
	test -x .venv-sam/bin/python || $(PY311) -m venv .venv-sam
	.venv-sam/bin/pip install -q aws-sam-cli==1.170.0 cfn-lint==1.58.0
	touch $@

# checkov pins dozens of its own dependencies: a venv of its own keeps them out of the app's.
.venv-scan/.installed: requirements-scan.txt
	test -x .venv-scan/bin/python || $(PY311) -m venv .venv-scan
	.venv-scan/bin/pip install -q -r requirements-scan.txt
	touch $@

setup: $(BIN)/.installed $(BIN)/.client-installed node_modules/.installed  ## create the venv and install DynamoDB Local

run: setup  ## serve the API on http://127.0.0.1:3000 (ePay simulator, DynamoDB Local, moto)
	$(BIN)/python -m local.run

# The tiers run on TEST_WORKERS processes (pytest-xdist), a module's tests on one of them (its
# stack fixtures start once). The schema tier runs after them in one process: schemathesis gives
# its cases one node id, which xdist would run once (docs/decisions.md).
TEST_WORKERS ?= 2

test: setup .venv-sam/.installed lint typecheck scan  ## lint, typecheck, scan, then every test tier (on TEST_WORKERS processes; the schema tier after)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope --ignore=tests/schema
	$(BIN)/pytest tests/schema

unit: setup  ## unit tests only (no sockets)
	$(BIN)/pytest tests/unit -q

integration: setup  ## integration tests only
	$(BIN)/pytest tests/integration -q

lint: setup  ## ruff lint and format check, import rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup  ## apply ruff's formatting and fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup  ## mypy strict on the layer, each function (each has its own app.py), the local stack and the benchmarks
	$(BIN)/mypy layers/payments/payments
	for dir in functions/*/; do $(BIN)/mypy "$$dir"app.py || exit 1; done
	$(BIN)/mypy local bench
	cd clients/python && ../../$(BIN)/mypy

scan: setup .venv-scan/.installed  ## security scanners: checkov (template.yaml, config files; .checkov.yaml) and bandit
	.venv-scan/bin/checkov
	$(BIN)/bandit -q -r layers functions --skip $(BANDIT_SKIPS)
	$(BIN)/bandit -q -r local bench --skip $(BANDIT_DEV_SKIPS)

validate: setup .venv-sam/.installed  ## cfn-lint (pinned) and sam validate --lint
	$(BIN)/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint

build: .venv-sam/.installed  ## sam build (layer and functions, arm64, python3.13)
	$(SAM_ENV) $(SAM) build

bench: setup  ## every target of bench/ in one run, then one table (cold import, warm overhead, cost, reconciler, local stack)
	$(BIN)/python bench/targets.py

bench-smoke: setup  ## every bench/ script in smoke mode, numbers unchecked (part of `make test`)
	$(BIN)/pytest tests/bench -q

bench-chaos: setup  ## the chaos scenario at scale (2,000 charges): final states vs the ledger
	$(BIN)/python bench/chaos_bench.py

bench-dispatch: setup  ## renewal dispatcher throughput per shard against moto, shards for 1M in 15 min
	$(BIN)/python bench/dispatch_bench.py

bench-reconciler: setup  ## reconciler: time per check, per-shard and fanned-out rates, 100,000 due charges projected
	$(BIN)/python bench/reconciler_bench.py

bench-invoices: setup  ## invoice space to exhaustion on DynamoDB Local, 1 vs 4 terminals (~1 h; reduced rings)
	$(BIN)/python -u bench/invoice_space_bench.py --slots 6000 --terminals 1,4 --workers 8 --after-days 20

bench-local: setup  ## POST /charges over HTTP on the stack `make run` starts, concurrency 1, 8, 32 (~3 min, warm-up included)
	$(BIN)/python bench/local_stack_bench.py

deploy: build  ## sam deploy --guided (needs AWS credentials)
	$(SAM_ENV) $(SAM) deploy --guided

clean:  ## remove build output and caches
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache test-artifacts
