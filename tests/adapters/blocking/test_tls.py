"""TLS in memory for the blocking backend (adapters/blocking/tls.py)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from adapters.blocking.tls import TLSWire

from ..harness import client, running_server


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server, client_context


@pytest.fixture
def pair(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[tuple[TLSWire, TLSWire]]:
    """Two wires that completed their handshake over a socketpair."""
    server_context, client_context = contexts
    left, right = socket.socketpair()
    server = TLSWire(server_context, server_side=True)
    client_wire = TLSWire(client_context, server_side=False, server_hostname="127.0.0.1")
    thread = threading.Thread(target=server.handshake, args=(left, 5.0))
    thread.start()
    client_wire.handshake(right, 5.0)
    thread.join(5)
    try:
        yield server, client_wire
    finally:
        left.close()
        right.close()


def test_records_come_out_in_the_order_they_were_made(pair: tuple[TLSWire, TLSWire]) -> None:
    server, client_wire = pair
    wire = b"".join(client_wire.encrypt([b"one ", b"two"])) + b"".join(
        client_wire.encrypt([b" three"])
    )
    plaintext, closed = server.decrypt(wire)
    assert plaintext == b"one two three"
    assert not closed


def test_part_of_a_record_gives_nothing_until_the_rest_comes(
    pair: tuple[TLSWire, TLSWire],
) -> None:
    server, client_wire = pair
    wire = b"".join(client_wire.encrypt([b"x" * 1000]))
    assert server.decrypt(wire[:10]) == (b"", False)
    assert server.decrypt(wire[10:]) == (b"x" * 1000, False)


def test_a_corrupt_record_raises_ssl_error(pair: tuple[TLSWire, TLSWire]) -> None:
    server, client_wire = pair
    wire = bytearray(b"".join(client_wire.encrypt([b"secret"])))
    wire[-1] ^= 0xFF
    with pytest.raises(ssl.SSLError):
        server.decrypt(bytes(wire))


def test_a_handshake_with_a_silent_peer_times_out(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    left, right = socket.socketpair()
    with left, right, pytest.raises(TimeoutError):
        TLSWire(contexts[0], server_side=True).handshake(left, 0.2)


def test_an_untrusted_server_fails_the_handshake(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    left, right = socket.socketpair()
    server = TLSWire(contexts[0], server_side=True)
    thread = threading.Thread(target=lambda: _quietly(server, left))
    thread.start()
    untrusting = TLSWire(ssl.create_default_context(), server_side=False, server_hostname="x")
    with left, right, pytest.raises(ssl.SSLCertVerificationError):
        untrusting.handshake(right, 5.0)
    thread.join(5)


def _quietly(wire: TLSWire, sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # (ssl.SSLError is one)
        wire.handshake(sock, 5.0)


def test_a_tls_broadcast_starts_no_thread_per_peer(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """send_prepared to TLS peers writes without blocking, as to plain ones
    (it used to start a writer thread per TLS peer)."""
    server_context, client_context = contexts
    with running_server("blocking", ssl=server_context) as server:
        peers = 5
        clients = [
            client("asyncio", server.url("/prepared", scheme="wss"), ssl=client_context)
            for _ in range(peers)
        ]
        opened = [c.__enter__() for c in clients]
        try:
            for ws in opened:
                for _ in range(3):
                    assert ws.recv() == "prepared " * 100
            # each connection: a handler and a reader thread, nothing more
            # (and at most the one housekeeper of the process)
            ours = [t.name for t in threading.enumerate() if t.name.startswith("ws-")]
            assert set(ours) <= {"ws-conn", "ws-housekeeper", "ws-reader"}
            assert len([name for name in ours if name != "ws-housekeeper"]) == 2 * peers
        finally:
            for c in clients:
                c.__exit__(None, None, None)
