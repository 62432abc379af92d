"""`serve(..., stats=ServerStats())`: every kind of refused handshake is
counted under the status the client was sent, on every backend, against a
real server on loopback."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from adapters import HandshakeError, ServerStats

from .harness import BACKENDS, client, running_server
from .test_features import KEY, read_until_eof

backends = pytest.mark.parametrize("backend", BACKENDS)


def upgrade_request(extra: str = "", version: str = "13") -> bytes:
    return (
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def answer_to(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return read_until_eof(sock)[0]


def wait_for(stats: ServerStats, expected: dict[int, int]) -> dict[int, int]:
    """The counters once they reach `expected` (a connection's end is
    counted on the server's side of the exchange, a moment after the
    client has seen it), or as they are after 10 s."""
    deadline = time.monotonic() + 10
    while (seen := stats.handshake_failures()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


@backends
def test_refusals_are_counted_by_the_status_sent(backend: str) -> None:
    stats = ServerStats()
    with running_server(
        backend, stats=stats, origins=["https://ok.example"], max_connections_per_ip=1
    ) as server:
        assert answer_to(server.port, upgrade_request(version="8")).startswith(b"HTTP/1.1 426 ")
        assert answer_to(server.port, b"GET /echo HTTP/1.1\r\nHost\r\n\r\n").startswith(
            b"HTTP/1.1 400 "
        )
        forbidden = upgrade_request("Origin: https://evil.example\r\n")
        assert answer_to(server.port, forbidden).startswith(b"HTTP/1.1 403 ")
        allowed = {"origin": "https://ok.example"}
        with client("blocking", server.url(), **allowed):
            with (
                pytest.raises(HandshakeError) as caught,
                client("blocking", server.url(), **allowed),
            ):
                pass
            assert caught.value.status == 503
        assert wait_for(stats, {426: 1, 400: 1, 403: 1, 503: 1}) == {
            426: 1,
            400: 1,
            403: 1,
            503: 1,
        }


@backends
def test_a_request_not_whole_in_time_counts_as_timed_out(backend: str) -> None:
    stats = ServerStats()
    with running_server(backend, stats=stats, open_timeout=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\n")  # and nothing more
            assert read_until_eof(sock)[0] == b""
        assert wait_for(stats, {ServerStats.TIMED_OUT: 1}) == {ServerStats.TIMED_OUT: 1}


@backends
def test_a_peer_that_leaves_before_its_request_is_whole_is_no_refusal(backend: str) -> None:
    """A load balancer's TCP check, a port scan, a client that gave up:
    nothing was refused. (Counted, they would drown the real refusals.)"""
    stats = ServerStats()
    with running_server(backend, stats=stats) as server:
        socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost\r\n\r\n")
            assert read_until_eof(sock)[0].startswith(b"HTTP/1.1 400 ")
        assert wait_for(stats, {400: 1}) == {400: 1}
    assert stats.handshake_failures() == {400: 1}  # (closed: every connection has ended)


@backends
def test_one_connection_over_the_total_is_counted_as_503(backend: str) -> None:
    stats = ServerStats()
    with running_server(backend, stats=stats, max_connections=1) as server:
        with client("blocking", server.url()):
            with pytest.raises(HandshakeError) as caught, client("blocking", server.url()):
                pass
            assert caught.value.status == 503
        assert wait_for(stats, {503: 1}) == {503: 1}


def test_accepted_connections_and_plain_http_are_not_failures() -> None:
    stats = ServerStats()
    with running_server("asyncio", stats=stats) as server:
        with client("blocking", server.url()) as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
        assert answer_to(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 426 "  # no http_handler: a plain request is told to upgrade
        )
    assert stats.handshake_failures() == {}


def test_counting_from_many_threads_loses_nothing() -> None:
    stats = ServerStats()

    def refuse() -> None:
        for _ in range(10_000):
            stats.refused(400)

    threads = [threading.Thread(target=refuse) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.handshake_failures() == {400: 40_000}
