"""Raw aio-pika publish-confirm-consume-ack through a quorum queue: on the machine's single
RabbitMQ node, and on a cluster of three nodes of the run's own (through HAProxy, as Safiri's
services reach it), alternating, in one run.

    .venv/bin/python bench/quorum_queue_rate.py [--rounds 2] [--messages 20000]

Each measurement is bench/raw_amqp.py (one process, publisher confirms, prefetch 32, a manual
ack per message, a payload the size of payment.requested) in a subprocess of its own. A quorum
queue on three nodes replicates every message to a majority before it confirms: the ratio
3-node / 1-node is what replication costs one queue. Writes bench/results/quorum_queue_rate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ROOT, run_metadata, vhost

from safiri_suite.cluster import HAProxyBackend, rabbitmq_cluster, running_haproxy
from safiri_suite.suite import free_port


def raw(url: str, messages: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "raw_amqp.py"), url, "--messages", str(messages)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    started = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    name = f"safiri-bench-quorum-{tag}"
    vhost("add_vhost", name)
    one_node = f"amqp://guest:guest@127.0.0.1:5672/{name}"
    rounds: list[dict[str, Any]] = []
    try:
        base = Path(tempfile.mkdtemp(prefix="safiri-rabbitmq-"))
        async with rabbitmq_cluster(3, tag, base) as nodes:
            port = free_port()
            ports = tuple(n.node.amqp_port for n in nodes)
            backend = HAProxyBackend("amqp", port, ports, mode="tcp")
            async with running_haproxy([backend], base / "haproxy", free_port()):
                three_nodes = f"amqp://guest:guest@127.0.0.1:{port}/"
                for n in range(args.rounds):
                    one = await asyncio.to_thread(raw, one_node, args.messages)
                    three = await asyncio.to_thread(raw, three_nodes, args.messages)
                    rounds.append(
                        {
                            "round": n,
                            "one_node": one,
                            "three_nodes": three,
                            "ratio": round(three["msgs_per_second"] / one["msgs_per_second"], 3),
                        }
                    )
                    print(json.dumps(rounds[-1]), flush=True)
    finally:
        vhost("delete_vhost", name)
    report = {
        "benchmark": "raw aio-pika msgs/s through one quorum queue (publisher confirms, prefetch"
        " 32, manual acks): the machine's single node vs a 3-node cluster behind HAProxy",
        **run_metadata(
            variant={
                "one_node": "the machine's RabbitMQ node",
                "three_nodes": "a 3-node cluster of the run's own, through HAProxy",
            },
            when=started,
        ),
        "parameters": vars(args),
        "rounds": rounds,
        "mean_one_node": round(statistics.mean(r["one_node"]["msgs_per_second"] for r in rounds)),
        "mean_three_nodes": round(
            statistics.mean(r["three_nodes"]["msgs_per_second"] for r in rounds)
        ),
        "ratios": [r["ratio"] for r in rounds],
    }
    out = ROOT / "results" / "quorum_queue_rate.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
