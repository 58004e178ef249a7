"""The gateway's operations endpoints on its public port: ``/metrics`` answers only clients in
``SAFIRI_METRICS_ALLOWED_NETWORKS`` (loopback and private networks by default: Prometheus on the
machine, in the cluster or on the compose network), so the public API does not publish the
suite's internals to the internet. ``/healthz`` and ``/readyz`` say nothing but up or not."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from safiri_web import Problem

__all__ = ["PROTECTED_PATHS", "operations_access"]

PROTECTED_PATHS = frozenset({"/metrics"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def operations_access(networks: Iterable[Network]) -> Middleware:
    allowed = tuple(networks)

    def trusted(remote: str | None) -> bool:
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in allowed)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PROTECTED_PATHS and not trusted(request.remote):
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                f"{request.path} is served to SAFIRI_METRICS_ALLOWED_NETWORKS only.",
            )
        return await handler(request)

    return middleware
