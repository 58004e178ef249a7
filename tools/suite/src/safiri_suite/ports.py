"""Loopback ports for the processes a suite starts, chosen so two never meet.

A port the kernel calls free now may be taken before its process binds it: by another port
this process hands out for something else (a suite picks a dozen at once: services, replicas,
RabbitMQ nodes, HAProxy, Redis), or by an outgoing connection's ephemeral port. So ports are
chosen below the kernel's ephemeral range (``net.ipv4.ip_local_port_range``), where no
outgoing connection is ever given one, and never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port"]

_HANDED_OUT: set[int] = set()
_LOCK = threading.Lock()
_LOWEST = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port nobody listens on now, outside the ephemeral range, not handed out
    before by this process."""
    high = _ephemeral_low() - 1
    with _LOCK:
        if high > _LOWEST + 1000:
            for _ in range(200):
                port = random.randint(_LOWEST, high)
                if port not in _HANDED_OUT and _bindable(port):
                    _HANDED_OUT.add(port)
                    return port
        for _ in range(200):  # no room below the ephemeral range: let the kernel choose
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise OSError("no free loopback port found")
