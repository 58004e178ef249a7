"""Cluster mode's own infrastructure: RabbitMQ nodes of the suite's own, clustered, and HAProxy.

**RabbitMQ.** Debian's RabbitMQ runs extra nodes beside the machine's broker, never joining
it: each node has its own name (``safiri-<id>-<n>@localhost``), ports (AMQP, Erlang
distribution, Prometheus), and its own data, log, feature-flag and plugin files in a
directory the ``rabbitmq`` user owns. The nodes find each other by classic peer discovery
(each lists the others), so they form one cluster as they boot; the queues Safiri declares
are quorum queues, replicated on every node. Each node runs in the foreground as a child of
``safiri up`` (as the ``rabbitmq`` user), so stopping the suite stops them.

**Redis.** The gateway replicas count each client's rate limit in one place, a redis-server
of the suite's own.

**HAProxy.** One process in front of every replicated service: the gateway, ticketing and
payment each keep their usual port (8080, 8081, 8082) on HAProxy, which balances round-robin
over the replicas that answer ``/readyz``; and one AMQP front over the RabbitMQ nodes (TCP,
health-checked), so a client whose node went away reconnects through it to a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port

__all__ = [
    "ClusterError",
    "HAProxyBackend",
    "RabbitNode",
    "haproxy_config",
    "rabbitmq_cluster",
    "rabbitmqctl_command",
    "running_haproxy",
    "running_redis",
]

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_USER = "rabbitmq"


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class RabbitNode:
    name: str  # safiri-<id>-<n>@localhost
    amqp_port: int
    dist_port: int
    prometheus_port: int
    base: Path

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[0]


@dataclass
class RunningNode:
    node: RabbitNode
    process: asyncio.subprocess.Process


def _node_config(node: RabbitNode, peers: Sequence[RabbitNode]) -> str:
    lines = [
        f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}",
        f"prometheus.tcp.port = {node.prometheus_port}",
        "prometheus.tcp.ip = 127.0.0.1",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{i} = {p.name}" for i, p in enumerate(peers, 1)),
        # Quorum queues need a majority: with three nodes one may go, the other two go on.
        "cluster_partition_handling = pause_minority",
        "log.console = true",
        "log.console.level = warning",
        "log.file = false",
    ]
    return "\n".join(lines) + "\n"


def _prepare(node: RabbitNode, peers: Sequence[RabbitNode]) -> dict[str, str]:
    """The node's directory (owned by rabbitmq) and the environment that points it there."""
    user = pwd.getpwnam(RABBITMQ_USER)
    os.chown(node.base.parent, user.pw_uid, user.pw_gid)
    for sub in ("mnesia", "log", "etc"):
        (node.base / sub).mkdir(parents=True, exist_ok=True)
    (node.base / "etc" / "rabbitmq.conf").write_text(_node_config(node, peers))
    (node.base / "etc" / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
    (node.base / "etc" / "rabbitmq-env.conf").write_text("")  # not the machine's env file
    for path in [node.base, *node.base.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": user.pw_dir,  # the rabbitmq user's Erlang cookie, shared by its CLI tools
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(node.amqp_port),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(node.base / "log"),
        "RABBITMQ_FEATURE_FLAGS_FILE": str(node.base / "feature_flags"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "etc" / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(node.base / "etc" / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(node.base / "etc" / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


async def _as_rabbitmq(
    *argv: str, env: Mapping[str, str], log: Path | None = None
) -> asyncio.subprocess.Process:
    if shutil.which("runuser") is None:
        raise ClusterError("runuser (util-linux) is needed to start RabbitMQ nodes as rabbitmq")
    out = log.open("ab") if log is not None else asyncio.subprocess.DEVNULL
    try:
        return await asyncio.create_subprocess_exec(
            "runuser",
            "-u",
            RABBITMQ_USER,
            "--",
            *argv,
            env=dict(env),
            cwd=str(env.get("RABBITMQ_MNESIA_BASE", "/")),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def rabbitmqctl_command(node: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """``rabbitmqctl -q -n NODE ARGS`` run as the rabbitmq user (whose Erlang cookie the
    nodes share), and the environment it needs (no rabbitmq-env.conf of the machine's)."""
    user = pwd.getpwnam(RABBITMQ_USER)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": user.pw_dir,
        "LANG": "C.UTF-8",
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    argv = ["runuser", "-u", RABBITMQ_USER, "--", str(RABBITMQ_BIN / "rabbitmqctl")]
    return [*argv, "-q", "-n", node, *args], env


async def ctl(node: RabbitNode, *args: str, timeout: float = 60.0) -> str:
    """``rabbitmqctl -n NODE ARGS`` as the rabbitmq user, returning what it printed."""
    argv, env = rabbitmqctl_command(node.name, *args)
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ClusterError(f"rabbitmqctl -n {node.name} {' '.join(args)}: timed out") from None
    text = out.decode(errors="replace").strip()
    if process.returncode:
        raise ClusterError(f"rabbitmqctl -n {node.name} {' '.join(args)}: {text}")
    return text


def plan_nodes(count: int, run_id: str, base: Path) -> list[RabbitNode]:
    return [
        RabbitNode(
            name=f"safiri-{run_id}-{n}@localhost",
            amqp_port=free_port(),
            dist_port=free_port(),
            prometheus_port=free_port(),
            base=base / f"rabbit-{n}",
        )
        for n in range(1, count + 1)
    ]


async def start_node(node: RabbitNode, peers: Sequence[RabbitNode]) -> asyncio.subprocess.Process:
    env = _prepare(node, peers)
    return await _as_rabbitmq(
        str(RABBITMQ_BIN / "rabbitmq-server"), env=env, log=node.base / "console.log"
    )


async def wait_node(
    node: RabbitNode, process: asyncio.subprocess.Process, timeout: float = 120.0
) -> None:
    """Until the node's AMQP port accepts connections (its boot is complete)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if process.returncode is not None:
            log = node.base / "console.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ClusterError(f"RabbitMQ node {node.name} exited {process.returncode}:\n{tail}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", node.amqp_port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        except OSError:
            pass
        if loop.time() > deadline:
            raise ClusterError(f"RabbitMQ node {node.name} not up after {timeout:g} s")
        await asyncio.sleep(0.25)


async def stop_node(process: asyncio.subprocess.Process, grace: float = 60.0) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        await process.wait()


@contextlib.asynccontextmanager
async def rabbitmq_cluster(
    count: int, run_id: str, base: Path, *, keep_data: bool = False
) -> AsyncIterator[list[RunningNode]]:
    """``count`` RabbitMQ nodes of the run's own, clustered; stopped (and their data removed
    unless ``keep_data``) on exit."""
    nodes = plan_nodes(count, run_id, base)
    running: list[RunningNode] = []
    try:
        for node in nodes:
            running.append(RunningNode(node, await start_node(node, nodes)))
        await asyncio.gather(*(wait_node(r.node, r.process) for r in running))
        await ctl(nodes[0], "await_online_nodes", str(count), "--timeout", "120", timeout=150)
        yield running
    finally:
        await asyncio.gather(*(stop_node(r.process) for r in running))
        if not keep_data:
            shutil.rmtree(base, ignore_errors=True)


# ---- HAProxy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HAProxyBackend:
    name: str  # gateway, ticketing, payment, amqp
    listen_port: int
    servers: tuple[int, ...]  # loopback ports
    mode: str = "http"  # or "tcp"
    health: str = "/readyz"
    public_prefix: str | None = None  # a public entry: only paths under it are routed


def haproxy_config(backends: Sequence[HAProxyBackend], stats_port: int | None = None) -> str:
    out = [
        "global",
        "  maxconn 4096",
        "defaults",
        # On loopback a connect is instant; a refused one is retried after min(this, 1 s).
        "  timeout connect 300ms",
        "  timeout client 60s",
        "  timeout server 60s",
        # A replica that refused the connection or closed it unanswered (it is restarting, or
        # shutting down) is skipped: the request is sent to another one. A purchase repeated
        # that way is harmless, it carries its Idempotency-Key end to end.
        "  retries 2",
        "  option redispatch 1",  # every retry to another replica, at once
        "  retry-on conn-failure empty-response",
        "",
    ]
    for b in backends:
        out += [
            f"frontend {b.name}",
            f"  bind 127.0.0.1:{b.listen_port}",
            f"  mode {b.mode}",
        ]
        if b.public_prefix:
            # The public entry routes the API only: /metrics and the health endpoints are
            # for Prometheus and the supervisor, which reach each replica directly.
            problem = (
                '{"type": "about:blank", "title": "Not Found", "status": 404,'
                ' "detail": "Only the API is served here."}'
            )
            out += [
                f"  acl api path_beg {b.public_prefix}",
                "  http-request return status 404 content-type application/problem+json"
                f" string '{problem}' if !api",
            ]
        out += [
            f"  default_backend {b.name}_replicas",
            "",
            f"backend {b.name}_replicas",
            f"  mode {b.mode}",
            "  balance roundrobin",
        ]
        if b.mode == "http":
            out += [
                f"  option httpchk GET {b.health}",
                "  http-reuse safe",
                # Keep the whole request, so that one sent to a replica that closed on its
                # way out can be sent again to another (retry-on needs the body in hand).
                "  option http-buffer-request",
            ]
        for i, port in enumerate(b.servers):
            out.append(f"  server {b.name}-{i} 127.0.0.1:{port} check inter 1s fall 2 rise 1")
        out.append("")
    if stats_port is not None:
        out += [
            "frontend stats",
            f"  bind 127.0.0.1:{stats_port}",
            "  mode http",
            "  http-request return status 200 if { path /healthz }",
            "  stats enable",
            "  stats uri /stats",
            "",
        ]
    return "\n".join(out)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def running_haproxy(
    backends: Sequence[HAProxyBackend], workdir: Path, stats_port: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Debian's HAProxy in the foreground with ``backends``; stopped on exit."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise ClusterError("haproxy is not installed (Debian: apt-get install -y haproxy)")
    config = _write(workdir / "haproxy.cfg", haproxy_config(backends, stats_port))
    with (workdir / "haproxy.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            "-db",
            "-f",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        await _until_listening(process, stats_port, "haproxy", workdir / "haproxy.log")
        yield process
    finally:
        await _terminate(process)


# ---- Redis (the gateway replicas' shared rate limits) ------------------------------------------


@contextlib.asynccontextmanager
async def running_redis(workdir: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """Debian's redis-server of the suite's own on a free port (nothing kept on disk)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ClusterError(
            "redis-server is not installed (Debian: apt-get install -y redis-server)"
        )
    port = free_port()
    _write(workdir / "redis.conf", f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\n')
    process = await asyncio.create_subprocess_exec(
        binary,
        str(workdir / "redis.conf"),
        "--dir",
        str(workdir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await _until_listening(process, port, "redis-server")
        yield process, port
    finally:
        await _terminate(process)


async def _until_listening(
    process: asyncio.subprocess.Process,
    port: int,
    what: str,
    log: Path | None = None,
    timeout: float = 15.0,
) -> None:
    """Until ``port`` accepts a connection; ``ClusterError`` if ``process`` exits first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if process.returncode is not None:
            raise ClusterError(f"{what} exited {process.returncode}: {_tail(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise ClusterError(f"{what} did not start listening on {port}") from None
            await asyncio.sleep(0.05)


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-2000:] if log and log.exists() else ""


async def _terminate(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()
