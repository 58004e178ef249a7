"""A suite of the experiment's own: the four processes on free ports, a RabbitMQ vhost and
databases named for the run (removed afterwards), and a Prometheus scraping them.

It is what the tests use, and ``safiri chaos run --self-contained``: nothing of a running
``make up`` is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safiri_suite.suite import (
    BACKUP_SIMULATOR,
    Suite,
    SuiteConfig,
    drop_databases,
    isolated_config,
    own_vhost,
)

from .prometheus import experiment_prometheus

__all__ = ["SelfContained", "self_contained_suite"]


@dataclass(frozen=True)
class SelfContained:
    """How the run's suite is reached: configuration and secret overrides for the experiment."""

    configuration: dict[str, Any]
    secrets: dict[str, Any]


@contextlib.asynccontextmanager
async def self_contained_suite(
    run_dir: Path, configuration: Mapping[str, Any]
) -> AsyncIterator[SelfContained]:
    """The suite and Prometheus for one run, set up from the experiment's configuration."""
    c = configuration
    run_id = uuid.uuid4().hex[:10]
    api_key = secrets.token_urlsafe(16)
    env = {
        "SAFIRI_HOLD_TTL_SECONDS": str(c.get("hold_ttl_seconds", 30)),
        "SAFIRI_PROVIDER_TIMEOUT_SECONDS": str(c.get("provider_timeout_seconds", 5)),
        # An open breaker lets one trial call through after this long; it bounds recovery.
        "SAFIRI_PROVIDER_BREAKER_RESET_SECONDS": str(c.get("breaker_reset_seconds", 5)),
        "SAFIRI_RECONCILE_AFTER_SECONDS": str(c.get("reconcile_after_seconds", 10)),
        "SAFIRI_RECONCILE_INTERVAL_SECONDS": str(c.get("reconcile_interval_seconds", 1)),
        "SAFIRI_MPESA_SIM_CALLBACK_DELAY": str(c.get("simulator_callback_delay", 0.1)),
        "SAFIRI_SWEEP_INTERVAL_SECONDS": "0.5",
        "SAFIRI_QUEUE_POLL_SECONDS": "1",
        # Trips departing tomorrow onwards are on sale: seed one day more than are bought.
        "SAFIRI_SEED_DAYS": str(int(c.get("trip_days", 13)) + 1),
    }
    # An unanswered push is reconciled by STK query well inside the short form's seat hold.
    for key, variable in _OPTIONAL_ENV.items():
        if c.get(key) is not None:
            env[variable] = str(c[key])
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        env["OTEL_SDK_DISABLED"] = "true"  # no trace store runs: don't export to nowhere
    replicas, nodes = int(c.get("replicas", 1)), int(c.get("rabbitmq_nodes", 1))
    async with contextlib.AsyncExitStack() as stack:
        # Cluster mode brings RabbitMQ nodes of its own; otherwise a vhost on the machine's.
        amqp_url = (
            ""
            if nodes > 1
            else await stack.enter_async_context(own_vhost(f"safiri-chaos-{run_id}"))
        )
        config = isolated_config(
            api_key=api_key,
            database_prefix=f"safiri_chaos_{run_id}",
            amqp_url=amqp_url,
            log_dir=run_dir / "logs",
            extra_env=env,
            # The backup payment route's simulator, for experiments that switch to it.
            backup_provider=str(c.get("backup_provider", "")).lower() in ("true", "1", "yes"),
        )
        config.replicas, config.rabbitmq_nodes = replicas, nodes
        config.state_path = run_dir / "suite-state.json"
        try:
            async with Suite(config) as suite:
                _describe(run_dir, config)
                async with experiment_prometheus(
                    suite.scrape_targets(), run_dir, c
                ) as prometheus_url:
                    yield SelfContained(
                        configuration={
                            **_urls(config, prometheus_url),
                            "suite_state": str(config.state_path),
                            # No trace store runs beside a suite of the run's own: the
                            # experiment's spans go where OTEL_* says, or nowhere.
                            "otlp_endpoint": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                        },
                        secrets={"api_key": api_key},
                    )
        finally:
            await drop_databases(config)


_SERVICES = ("gateway", "ticketing", "payment", "mpesa-simulator")
_OPTIONAL_ENV = {
    "reconcile_after_seconds": "SAFIRI_RECONCILE_AFTER_SECONDS",
    "reconcile_interval_seconds": "SAFIRI_RECONCILE_INTERVAL_SECONDS",
}


def _describe(run_dir: Path, config: SuiteConfig) -> None:
    """suite.json: where the run's own suite lived (its vhost and databases are removed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    described = {
        "vhost": config.amqp_url.rsplit("/", 1)[-1],
        "amqp_url": config.amqp_url,
        "replicas": config.replicas,
        "rabbitmq_nodes": config.rabbitmq_nodes,
        "databases": config.databases,
        "ports": {s: config.port(s) for s in _SERVICES}
        | ({BACKUP_SIMULATOR: config.backup_port} if config.backup_port else {}),
        "environment": config.extra_env,
    }
    (run_dir / "suite.json").write_text(json.dumps(described, indent=2) + "\n")


def _urls(config: SuiteConfig, prometheus_url: str) -> dict[str, Any]:
    def http(service: str) -> str:
        return f"http://127.0.0.1:{config.port(service)}"

    backup = {"backup_simulator_url": http(BACKUP_SIMULATOR)} if config.backup_port else {}
    flags = {"flags_file": str(config.flags_file)} if config.flags_file else {}
    return {
        **backup,
        **flags,
        "gateway_url": http("gateway"),
        "ticketing_url": http("ticketing"),
        "payment_url": http("payment"),
        "simulator_url": http("mpesa-simulator"),
        "prometheus_url": prometheus_url,
        "ticketing_database_url": config.database_url("ticketing"),
        "payment_database_url": config.database_url("payment"),
        "gateway_database_url": config.database_url("gateway"),
        "amqp_url": config.amqp_url,
    }
