# Safiri's front door. `make demo` runs the main job; `make test` runs every test tier.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
UV_VERSION := 0.13.8
PY := .venv/bin/python
PYTEST := .venv/bin/pytest

.PHONY: help demo up test test-unit test-integration test-deploy test-e2e bench-telemetry chaos-outage lint format docs deps venv clean

help:
	@echo "make demo              start the suite, buy tickets twice (one payment fails), print, stop"
	@echo "make up                run the suite in the foreground until Ctrl-C (gateway :8080)"
	@echo "make test              every test tier (unit, integration, e2e)"
	@echo "make test-unit | test-integration | test-deploy | test-e2e"
	@echo "make lint              ruff check, ruff format --check, mypy"
	@echo "make bench-telemetry   purchases/s with telemetry on vs off (bench/results/)"
	@echo "make chaos-outage      the provider-outage game day, full form (chaos/README.md)"

venv: .venv/.synced

.venv/.synced: pyproject.toml uv.lock $(wildcard */*/pyproject.toml)
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --frozen --quiet
	@touch $@

deps:
	@bash scripts/deps.sh

demo: venv deps
	.venv/bin/safiri demo

up: venv deps
	.venv/bin/safiri up

# The tests install what they need on a fresh machine (Debian packages, as root).
test: venv
	@bash scripts/deps.sh --install --test
	$(PYTEST) tests

test-unit: venv
	$(PYTEST) tests/unit

test-integration: venv
	@bash scripts/deps.sh --install --test
	$(PYTEST) tests/integration

test-deploy: venv
	@bash scripts/deps.sh --install --test
	$(PYTEST) tests/deploy

test-e2e: venv
	@bash scripts/deps.sh --install --test
	$(PYTEST) tests/e2e

# Purchases/s with telemetry on vs OTEL_SDK_DISABLED=true, alternating; writes bench/results/.
bench-telemetry: venv deps
	$(PY) bench/purchase_throughput.py --orders 400 --concurrency 16 --rounds 3

# Game day: the provider-outage experiment in its full form (20 rps, shipped alert rules).
chaos-outage: venv deps
	.venv/bin/safiri chaos run chaos/provider-outage.json --self-contained

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libs/telemetry/src libs/messaging/src libs/web/src services/*/src simulators/*/src src

# Regenerate docs/metrics.md from the metric definitions (a test fails when it is stale).
docs: venv
	$(PY) -m safiri.metrics_reference > docs/metrics.md

format: venv
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
