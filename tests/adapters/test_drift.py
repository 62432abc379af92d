"""The behaviours the three backends once drifted apart on, now decided
once in `adapters._driver`: each asserted the same on every backend.

- the server's shutdown, with `close_timeout` a number and None;
- where reading resumes after `max_queue` paused it (at half);
- pong accounting: a pong answers its ping and every earlier one, and a
  ping still waiting when the connection ends raises `ConnectionClosed`;
- what `HandshakeError` says about a refusal, garbage and a lost handshake;
- frames that come in the same write as the upgrade request.

The misbehaving peer is a raw socket on loopback, bounded by its timeouts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from adapters import ConnectionClosed, HandshakeError
from adapters._common import Settings, new_client_core, parse_uri
from adapters._driver import Driver
from wsproto_core.handshake import accept_token

from . import harness
from .harness import BACKENDS, client, running_server
from .test_features import KEY, masked, raw_upgrade, read_until_eof, unmasked_frames

backends = pytest.mark.parametrize("backend", BACKENDS)

SHUTDOWN_CLOSE = (0x88, b"\x03\xe9server shutting down")  # 1001, Server.close()'s reason


# -- raw-socket helpers ---------------------------------------------------------


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection ended after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One small unmasked frame from a server: (first byte, payload)."""
    first, second = recv_exactly(sock, 2)
    assert not second & 0x80, "a server's frames are not masked"
    assert second < 126
    return first, recv_exactly(sock, second)


def read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One small masked frame from a client: (first byte, unmasked payload)."""
    first, second = recv_exactly(sock, 2)
    assert second & 0x80, "a client's frames are masked"
    length = second & 0x7F
    assert length < 126
    mask = recv_exactly(sock, 4)
    body = recv_exactly(sock, length)
    return first, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def read_to_the_end(sock: socket.socket, limit: float = 10.0) -> bytes:
    """What the server sends until it ends the connection (an orderly
    close or a reset, both "the end"), within `limit` seconds."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def upgrade_with(port: int, extra: bytes, path: str = "/echo") -> socket.socket:
    """A raw client whose upgrade request and `extra` go in one sendall."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    sock.sendall(request + extra)
    head = b""
    while b"\r\n\r\n" not in head:  # byte by byte: what follows stays in the socket
        byte = sock.recv(1)
        assert byte, f"connection ended during the response head: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def wait_until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        time.sleep(0.005)


def holds_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` stays true for `seconds` (looked at every 10 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.01)
    return condition()


def read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        assert chunk, "the client left during its request"
        head += chunk
    return head


def accept_upgrade(conn: socket.socket) -> None:
    """Answer a client's upgrade request with 101 (no extension, no subprotocol)."""
    head = read_head(conn)
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_token(key).encode() + b"\r\n\r\n"
    )


@contextmanager
def raw_server(script: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback server that runs `script` on its one connection (in a
    thread, every read bounded by a 10 s timeout); yields its port. The
    script's failure is raised when the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                script(conn)
            except Exception as error:
                failures.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(15)
    assert not thread.is_alive(), "the raw server's script did not end"
    if failures:
        raise failures[0]


def only_connection(server: harness.RunningServer) -> Any:
    wait_until(lambda: len(server.server.connections) == 1, "the server has the connection")
    return next(iter(server.server.connections))


# -- 1. shutdown: close_timeout a number, and None --------------------------------


@backends
def test_shutdown_with_close_timeout_gives_up_on_a_silent_client(backend: str) -> None:
    """Server.close() sends 1001, waits close_timeout for the close frame
    that never comes, then ends the connection and returns."""
    with running_server(backend, close_timeout=0.5) as server:
        sock = raw_upgrade(server.port)
        only_connection(server)
        stopping = threading.Thread(target=server.stop, daemon=True)
        start = time.monotonic()
        stopping.start()
        with sock:
            data = read_to_the_end(sock)  # we never answer the close frame
        ended = time.monotonic() - start
        stopping.join(5)
        returned = time.monotonic() - start
        assert not stopping.is_alive(), "close() did not return"
        assert unmasked_frames(data) == [SHUTDOWN_CLOSE]
        assert 0.3 < ended < 4, ended  # it did wait for us, about close_timeout
        assert returned < 4, returned


@backends
def test_shutdown_without_close_timeout_waits_for_the_client(backend: str) -> None:
    """close_timeout=None: Server.close() waits as long as the client takes
    to answer the close frame, and returns promptly once it has."""
    with running_server(backend, close_timeout=None) as server:
        sock = raw_upgrade(server.port)
        only_connection(server)
        stopping = threading.Thread(target=server.stop, daemon=True)
        stopping.start()
        with sock:
            assert read_frame(sock) == SHUTDOWN_CLOSE
            stopping.join(1.0)
            assert stopping.is_alive(), "close() gave up on a client with close_timeout=None"
            sock.sendall(masked(0x8, b"\x03\xe9"))
            answered = time.monotonic()
            assert read_to_the_end(sock, 5) == b""  # nothing more, then the end
        stopping.join(5)
        assert not stopping.is_alive(), "close() did not return after the client answered"
        assert time.monotonic() - answered < 3


# -- 2. reading pauses at max_queue, resumes at max_queue // 2 ------------------


@backends
def test_reading_pauses_at_max_queue_and_resumes_at_half(backend: str) -> None:
    while not harness.TAKE_TOKENS.empty():
        harness.TAKE_TOKENS.get_nowait()
    harness.TAKEN.clear()

    def take(count: int) -> None:
        expected = len(harness.TAKEN) + count
        for _ in range(count):
            harness.TAKE_TOKENS.put(None)
        wait_until(lambda: len(harness.TAKEN) == expected, f"the handler took {expected}")

    with running_server(backend, max_queue=4, compression=None) as server:
        sock = raw_upgrade(server.port, "/take")
        driver = only_connection(server)._driver

        def queued() -> int:  # (the deque is made, and dropped, as fragments come and go)
            return len(driver.fragments)

        with sock:
            for i in range(4):  # one message per write, each read before the next
                sock.sendall(masked(0x1, f"m{i}".encode()))
                wait_until(lambda: queued() > i, f"{i + 1} messages queued")  # noqa: B023
                assert queued() == i + 1
            assert not driver.wants_data
            sock.sendall(masked(0x1, b"m4"))
            time.sleep(0.02)
            sock.sendall(masked(0x1, b"m5"))
            assert holds_for(lambda: queued() == 4, 0.3), "read past max_queue"

            take(1)  # 3 left: more than max_queue // 2, still paused
            assert holds_for(lambda: queued() == 3 and not driver.wants_data, 0.3), (
                f"resumed at {queued()} queued"
            )

            take(1)  # 2 left, max_queue // 2: reading resumes, m4 and m5 come in
            wait_until(lambda: queued() == 4, "m4 and m5 read after the resume")
            assert not driver.wants_data  # and it paused again at max_queue

            take(4)
            assert [f"m{i}" for i in range(6)] == harness.TAKEN


# -- 3. pong accounting ------------------------------------------------------------


@backends
def test_a_pong_answers_its_ping_and_every_earlier_one(backend: str) -> None:
    pings: list[tuple[int, bytes]] = []

    def answer_the_second_ping_only(conn: socket.socket) -> None:
        accept_upgrade(conn)
        pings.append(read_client_frame(conn))
        pings.append(read_client_frame(conn))
        payload = pings[1][1]
        conn.sendall(bytes([0x8A, len(payload)]) + payload)
        opcode, close = read_client_frame(conn)  # the client's close when done
        assert opcode == 0x88
        conn.sendall(bytes([0x88, len(close)]) + close)

    with (
        raw_server(answer_the_second_ping_only) as port,
        client(backend, f"ws://127.0.0.1:{port}/") as ws,
    ):
        results: list[object] = []

        def ping() -> None:
            try:
                results.append(ws.ping())
            except Exception as error:
                results.append(error)

        first = threading.Thread(target=ping, daemon=True)
        first.start()
        wait_until(lambda: len(pings) == 1, "the first ping reached the server")
        second = threading.Thread(target=ping, daemon=True)
        second.start()
        first.join(5)
        second.join(5)
        assert not first.is_alive(), "the first ping() is still waiting"
        assert not second.is_alive(), "the second ping() is still waiting"
        assert [opcode for opcode, _ in pings] == [0x89, 0x89]
        assert pings[0][1] != pings[1][1]
        assert len(results) == 2
        assert all(isinstance(rtt, float) and 0 <= rtt < 5 for rtt in results), results


@backends
def test_a_ping_pending_when_the_connection_ends_raises(backend: str) -> None:
    def leave_after_the_ping(conn: socket.socket) -> None:
        accept_upgrade(conn)
        assert read_client_frame(conn)[0] == 0x89
        # no pong, no close frame: the connection just ends

    with raw_server(leave_after_the_ping) as port, client(backend, f"ws://127.0.0.1:{port}/") as ws:
        with pytest.raises(ConnectionClosed) as caught:
            ws.ping()
        assert caught.value.code == 1006


# -- 4. handshake errors -------------------------------------------------------------

FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"

# (server's answer, then close? , expected status, expected body)
ANSWERS = {
    "403-with-length": (FORBIDDEN + b"not for you\n", False, 403, b"not for you\n"),
    "403-until-eof": (b"HTTP/1.1 403 Forbidden\r\n\r\ngo away", True, 403, b"go away"),
    "garbage": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", False, None, b""),
    "closed-mid-head": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs", True, None, b""),
    "closed-at-once": (b"", True, None, b""),
}


def reason_by_the_driver(answer: bytes, then_close: bool) -> HandshakeError:
    """The HandshakeError the driver makes of the same bytes: what every
    backend must raise."""
    settings = Settings()
    driver = Driver(new_client_core(parse_uri("ws://127.0.0.1:1/"), settings), settings)
    driver.output()
    if answer:
        driver.received(answer, 0.0)
    if then_close and driver.outcome is None:
        driver.eof(0.0)
    assert driver.outcome is not None
    return driver.outcome


@backends
@pytest.mark.parametrize("answer", list(ANSWERS))
def test_handshake_errors_say_the_same_on_every_backend(backend: str, answer: str) -> None:
    reply, then_close, status, body = ANSWERS[answer]

    def respond(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(reply)
        if not then_close:  # the client must end it on its own, without our EOF
            conn.settimeout(6)
            while conn.recv(4096):
                pass

    with (
        raw_server(respond) as port,
        pytest.raises(HandshakeError) as caught,
        client(backend, f"ws://127.0.0.1:{port}/", open_timeout=5),
    ):
        pass
    error = caught.value
    expected = reason_by_the_driver(reply, then_close)
    assert (error.status, error.body) == (status, body)
    assert (error.status, error.reason, error.body) == (
        expected.status,
        expected.reason,
        expected.body,
    )
    assert "timed out" not in error.reason


# -- 5. frames that come with the upgrade request ------------------------------------


@backends
def test_a_frame_sent_with_the_upgrade_request_is_echoed(backend: str) -> None:
    with (
        running_server(backend) as server,
        upgrade_with(server.port, masked(0x1, b"early bird")) as sock,
    ):
        assert read_frame(sock) == (0x81, b"early bird")
        sock.sendall(masked(0x8, b"\x03\xe8"))
        assert read_frame(sock) == (0x88, b"\x03\xe8")
        assert read_until_eof(sock)[0] == b""


@backends
def test_a_reserved_opcode_sent_with_the_upgrade_request_fails_with_1002(backend: str) -> None:
    with running_server(backend) as server, upgrade_with(server.port, masked(0x3, b"")) as sock:
        frames = unmasked_frames(read_to_the_end(sock))
    assert len(frames) == 1, frames
    assert frames[0][0] == 0x88
    assert frames[0][1][:2] == b"\x03\xea"


@backends
def test_a_message_before_a_violation_is_answered_before_the_close(backend: str) -> None:
    """A text frame and a reserved opcode right behind the request: the
    handler's echo goes out first, then the 1002 close."""
    with running_server(backend) as server:
        early = masked(0x1, b"first") + masked(0x3, b"")
        with upgrade_with(server.port, early) as sock:
            frames = unmasked_frames(read_to_the_end(sock))
    assert [first for first, _ in frames] == [0x81, 0x88], frames
    assert frames[0][1] == b"first"
    assert frames[1][1][:2] == b"\x03\xea"
