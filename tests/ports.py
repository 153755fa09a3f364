"""Loopback ports for test servers (used by conftest, the device lab and bench/devices.py)."""

from __future__ import annotations

import random
import socket

# Ports handed out below the kernel's ephemeral range (32768-60999 on Linux):
# a port the kernel picked for us with bind(0) is also the pool it draws
# outgoing connections from, so between our close and the server's bind a
# client socket elsewhere in the suite could take it ("Address already in use").
_PORT_RANGE = (20000, 32700)
_given: set[int] = set()


def _bindable(port: int, kind: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, kind)
        except OSError:  # no IPv6 on this machine: nothing to collide with there
            continue
        try:
            with sock as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(udp: bool = False) -> int:
    """A loopback port free for TCP (and for UDP too with ``udp=True``) on IPv4 and IPv6.

    Never the same port twice in one test run, so two servers started by one
    test cannot be handed the same number before either has bound it.
    """
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _given:
            continue
        if _bindable(port, socket.SOCK_STREAM) and (not udp or _bindable(port, socket.SOCK_DGRAM)):
            _given.add(port)
            return port
    raise RuntimeError("no free loopback port found")
