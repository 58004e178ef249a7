# Safiri's front door. `make demo` runs the main job; `make test` runs every test tier.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
UV_VERSION := 0.13.8
PY := .venv/bin/python
PYTEST := .venv/bin/pytest

.PHONY: mutation k8s-rules help demo up up-cluster test test-unit test-integration test-deploy test-e2e test-cluster bench-telemetry bench-throughput bench-report chaos-outage lint format docs deps venv clean load-baseline load-spike load-sustained load-mixed

help:
	@echo "make demo              start the suite, buy tickets twice (one payment fails), print, stop"
	@echo "make up                run the suite, Prometheus and Alertmanager until Ctrl-C (gateway :8080)"
	@echo "make up-cluster        the same with 2 replicas of each service (HAProxy) and 3 RabbitMQ nodes"
	@echo "make test              every test tier (unit, integration, e2e)"
	@echo "make test-unit | test-integration | test-deploy | test-e2e | test-cluster"
	@echo "make lint              ruff check, ruff format --check, mypy"
	@echo "make mutation          mutation testing of the proofs (~5 min; docs/mutation.md)"
	@echo "make bench-telemetry   purchases/s with telemetry on vs off (bench/results/)"
	@echo "make bench-throughput  highest sustained purchases/s (p99 POST <= 50 ms) vs raw aio-pika msgs/s"
	@echo "make bench-report      render the write-ups' benchmark tables from bench/results/*.json"
	@echo "make chaos-outage      the provider-outage game day, full form (chaos/README.md)"
	@echo "make load-baseline     Locust: 10 purchases/s for 2 min, then metrics vs database and latency gates (load/README.md)"
	@echo "make load-spike        Locust: 10/s, a 30 s spike of 100/s, 10/s (1 min), then the check"
	@echo "make load-sustained    Locust: 50 purchases/s for 5 min, then the check"
	@echo "make load-mixed        Locust: browse and buy at 20/s for 2 min, some payments fail, then the check"

venv: .venv/.synced

# The newest CPython of this machine that every dependency supports (scripts/python.sh); a
# venv made by another interpreter is replaced.
.venv/.synced: pyproject.toml uv.lock $(wildcard */*/pyproject.toml) scripts/python.sh
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --frozen --quiet --python "$$(bash scripts/python.sh)"
	@touch $@

deps:
	@bash scripts/deps.sh

demo: venv deps
	.venv/bin/safiri demo

# The suite, with Prometheus and Alertmanager (Debian's, installed when missing) on the rules.
up: venv
	@bash scripts/deps.sh --install --monitoring
	.venv/bin/safiri up

# Cluster mode: 2 replicas of each service behind HAProxy, 3 RabbitMQ nodes of the suite's own.
up-cluster: venv
	@bash scripts/deps.sh --install --cluster
	.venv/bin/safiri up --replicas 2 --rabbitmq-nodes 3

# The tests install what they need on a fresh machine (Debian packages, as root).
# Two parts: what isolates itself runs on both cores (pytest-xdist, a module's tests kept on one
# worker so its suite starts once), then the tests marked serial run alone (they stop the shared
# broker or database, run RabbitMQ nodes of their own, or judge latency under load).
test: venv
	@bash scripts/deps.sh --install --test
	$(PYTEST) tests -m "not serial" -n 2 --dist loadscope
	$(PYTEST) tests -m serial

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

# Cluster mode: 2 replicas of each service behind HAProxy on 3 RabbitMQ nodes of the run's own.
test-cluster: venv
	@bash scripts/deps.sh --install --test
	$(PYTEST) tests/cluster

# Purchases/s with telemetry on vs OTEL_SDK_DISABLED=true, alternating; then CPU per purchase
# with both suites running at once (--together); writes bench/results/ (telemetry_overhead.md).
bench-telemetry: venv deps
	$(PY) bench/purchase_throughput.py --orders 1000 --concurrency 16 --rounds 5
	$(PY) bench/purchase_throughput.py --orders 800 --rounds 5 --together --name telemetry_overhead_together

# The benchmark tables of the write-ups (bench/results/*.md, READMEs, docs/) rendered from
# bench/results/*.json; runs no benchmark. tests/unit/test_bench_render.py fails when stale.
bench-report: venv
	$(PY) bench/render.py

# Game day: the provider-outage experiment in its full form (20 rps, shipped alert rules).
chaos-outage: venv deps
	.venv/bin/safiri chaos run chaos/provider-outage.json --self-contained

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libs/contracts/src libs/flags/src libs/telemetry/src libs/messaging/src libs/web/src services/*/src simulators/*/src tools/*/src src
	.venv/bin/lint-imports --no-cache

# Mutation testing of the proofs, not part of `make test` (3-5 minutes on 2 cores): mutmut
# over the invariant checker (from tools/chaos) and libs/telemetry's redaction and HTTP metric helpers
# (from libs/telemetry, so that its modules keep their names; mutants/tests there links to the
# unit tests), each against its unit tests as [tool.mutmut] in the pyproject.toml says; then each
# alert rule's thresholds and `for` moved, against the promtool tests. Every run starts clean
# (mutmut would reuse results in mutants/); docs/mutation.json records the outcome and
# docs/mutation.md why each survivor is left. `mutmut show NAME` (in the area's directory) prints
# a mutant. PROMETHEUS=<dir> mutates another copy of the rules and their tests.
PROMETHEUS ?= deploy/prometheus
mutation: venv
	@start=$$(date +%s); set -e; \
	rm -rf mutants tools/chaos/mutants libs/telemetry/mutants; mkdir -p mutants; \
	mkdir -p tools/chaos/mutants; ln -s ../../../tests tools/chaos/mutants/tests; \
	(cd tools/chaos && ../../.venv/bin/mutmut run); \
	mkdir -p libs/telemetry/mutants; ln -s ../../../tests libs/telemetry/mutants/tests; \
	(cd libs/telemetry && ../../.venv/bin/mutmut run); \
	$(PY) scripts/mutate_alert_rules.py --prometheus $(PROMETHEUS) --json mutants/alert_rules.json; \
	$(PY) scripts/mutation_report.py --alerts mutants/alert_rules.json \
		--seconds $$(( $$(date +%s) - start )) --out docs/mutation.json

# Regenerate docs/metrics.md from the metric definitions (a test fails when it is stale).
docs: venv
	$(PY) -m safiri.metrics_reference > docs/metrics.md

# The production overlay's PrometheusRule, generated from deploy/prometheus/rules (a test fails
# when it is stale).
k8s-rules: venv
	$(PY) scripts/k8s_prometheusrule.py > deploy/k8s/overlays/production/prometheusrule.yaml

format: venv
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

# Load scenarios (Locust), the seed-004 lengths, each against a suite of its own (its gateway's
# rate limit sized for the scenario); every run ends with the check that tickets_sold_total rose
# by the tickets in the database, the error ratio and the scenario's latency gates (POST /orders
# p99, order to final state p99): load/README.md.
load-baseline: venv deps
	.venv/bin/safiri load baseline --self-contained

load-spike: venv deps
	.venv/bin/safiri load spike --self-contained

load-sustained: venv deps
	.venv/bin/safiri load sustained --self-contained

load-mixed: venv deps
	.venv/bin/safiri load mixed --self-contained

# Highest sustained purchases/s (open loop, p99 POST /orders <= 50 ms) as a ratio of raw
# aio-pika msgs/s on the same broker; writes bench/results/sustained_rate.json.
bench-throughput: venv deps
	$(PY) bench/sustained_rate.py
