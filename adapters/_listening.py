"""Listening sockets, made the same way for every backend: one per address
the host name resolves to (all interfaces for None or ""), IPv6 sockets
IPv6-only so that both families can share a port, SO_REUSEADDR always and
SO_REUSEPORT on request (several worker processes on one port). Each
backend resolves the name its own way (without blocking its loop) and
wraps the sockets in its own listener type."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

# What getaddrinfo returns, one entry per address.
AddressInfo = tuple[int, int, int, str, Any]


def bind_all(infos: Sequence[AddressInfo], *, reuse_port: bool) -> list[socket.socket]:
    """Non-blocking listening sockets for `infos`, which getaddrinfo gave
    for (host or None, port, type=SOCK_STREAM, flags=AI_PASSIVE); OSError
    if none could be made."""
    listeners: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                if len(infos) > 1:
                    continue  # a family this host lacks (IPv6 disabled), as asyncio skips it
                raise
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    if not listeners:
        raise OSError(f"nothing to listen on for {infos!r}")
    return listeners


def listen(host: str | None, port: int, *, reuse_port: bool) -> list[socket.socket]:
    """`bind_all` with a blocking name lookup (the blocking backend's)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return bind_all(infos, reuse_port=reuse_port)


def no_delay(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm, as asyncio and trio do for their sockets.

    A frame goes out as a header and a payload (two writes, to spare a copy
    of a large payload); with Nagle on, the payload's last partial segment
    waits for the peer's delayed ACK, some 40 ms per message."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
