"""Server and client features that need a misbehaving peer: timeouts, a
dead peer, limits, backpressure, plain HTTP, TLS. The misbehaving peer is a
raw socket; every server binds to loopback on a free port."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import trustme

from adapters import ConnectionClosedError, HandshakeError, HttpResponse
from adapters import blocking as ws_blocking
from wsproto_core import BytesMessage, ClientConnection, PerMessageDeflate, State

from .harness import BACKENDS, FLOOD_RESULTS, FLOOD_TARGET, client, running_server

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def raw_upgrade(port: int, path: str = "/echo") -> socket.socket:
    """A raw TCP peer that completes the handshake, then does what the test says."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_eof(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - start


def unmasked_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what a server sent into (first byte, payload); small frames only.
    (Searching the bytes for 0x88 would also find it in a random ping payload.)"""
    frames = []
    pos = 0
    while pos < len(data):
        length = data[pos + 1] & 0x7F
        assert length < 126
        frames.append((data[pos], data[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return frames


def masked(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        head = bytes([0x80 | opcode, 0xFE]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0xFF]) + length.to_bytes(8, "big")
    return head + mask + body


backends = pytest.mark.parametrize("backend", BACKENDS)


@backends
def test_keepalive_fails_a_dead_client_with_1011(backend: str) -> None:
    with running_server(backend, ping_interval=0.2, ping_timeout=0.3) as server:
        sock = raw_upgrade(server.port)  # never answers a ping
        data, took = read_until_eof(sock)
        frames = unmasked_frames(data)
        assert frames[0][0] == 0x89  # a keepalive ping came first
        assert len(frames[0][1]) == 4
        assert frames[-1][0] == 0x88  # then a close frame
        assert frames[-1][1][:2] == b"\x03\xf3"  # with 1011
        assert took < 5


@backends
def test_keepalive_keeps_a_live_client(backend: str) -> None:
    with (
        running_server(backend, ping_interval=0.1, ping_timeout=0.3) as server,
        client("asyncio", server.url()) as ws,  # answers pings automatically
    ):
        time.sleep(1.0)
        ws.send("still here")
        assert ws.recv() == "still here"


@backends
def test_open_timeout_drops_a_silent_connection(backend: str) -> None:
    with running_server(backend, open_timeout=0.3) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        data, took = read_until_eof(sock)
        assert data == b""
        assert took < 5


@backends
def test_close_timeout_drops_a_peer_that_never_answers_close(backend: str) -> None:
    with running_server(backend, close_timeout=0.3) as server:
        sock = raw_upgrade(server.port, "/close/1000/bye")
        data, took = read_until_eof(sock)  # we never send our close frame
        assert data.startswith(b"\x88\x05\x03\xe8bye")
        assert took < 5


@backends
def test_per_ip_limit_answers_503(backend: str) -> None:
    with running_server(backend, max_connections_per_ip=2) as server:
        with client("blocking", server.url()), client("blocking", server.url()):
            with pytest.raises(HandshakeError) as caught, client("blocking", server.url()):
                pass
            assert caught.value.status == 503
            assert b"too many connections from your address" in caught.value.body
        with client("blocking", server.url()) as ws:  # freed again
            ws.send("ok")
            assert ws.recv() == "ok"


@backends
def test_total_limit_answers_503(backend: str) -> None:
    with running_server(backend, max_connections=1) as server, client("blocking", server.url()):
        with pytest.raises(HandshakeError) as caught, client("blocking", server.url()):
            pass
        assert caught.value.status == 503


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_until_eof(sock)[0]


@backends
def test_plain_http_on_the_same_port(backend: str) -> None:
    def page(request: object) -> HttpResponse:
        path = getattr(request, "path", "")
        if path == "/health":
            return HttpResponse(status=200, headers=[("Content-Type", "text/plain")], body=b"ok")
        if path == "/boom":
            raise RuntimeError("hook bug")
        return HttpResponse(status=404, body=b"no such page")

    with running_server(backend, http_handler=page) as server:
        assert http_get(server.port, "/health").endswith(b"\r\n\r\nok")
        assert http_get(server.port, "/health").startswith(b"HTTP/1.1 200 OK")
        assert http_get(server.port, "/nope").startswith(b"HTTP/1.1 404")
        assert http_get(server.port, "/boom").startswith(b"HTTP/1.1 500")
        with client("blocking", server.url()) as ws:  # WebSocket still works alongside
            ws.send("hi")
            assert ws.recv() == "hi"
    with running_server(backend) as server:  # no hook: say what this port is
        assert http_get(server.port, "/").startswith(b"HTTP/1.1 426")


def flood(sock: socket.socket, seconds: float, message: bytes | None = None) -> int:
    """Send `message` (default: a 1 MiB binary frame) over and over for
    `seconds`, as fast as the server lets us, never reading; bytes sent."""
    message = masked(0x2, bytes(1 << 20)) if message is None else message
    sock.setblocking(False)
    sent, offset = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            n = sock.send(message[offset:])
        except BlockingIOError:
            time.sleep(0.01)
            continue
        sent += n
        offset = (offset + n) % len(message)
    return sent


@backends
def test_a_server_that_is_not_read_stops_reading(backend: str) -> None:
    """The handler never reads: the queue fills, reading pauses, and the
    flooding peer is held back by TCP instead of filling our memory."""
    with running_server(backend, max_queue=4) as server:
        sock = raw_upgrade(server.port, "/noread")
        sent = flood(sock, 1.5)
        sock.close()
    # Unbounded buffering would take gigabytes in 1.5 s on loopback; what got
    # through is the queue (4 x 64 KiB) plus the kernel's socket buffers.
    assert sent < 64 << 20


@backends
def test_a_peer_that_never_reads_cannot_grow_the_server(backend: str) -> None:
    """Echo to a peer that never reads: writes block at write_limit, the
    handler stops, reading pauses, the peer is held back."""
    with running_server(backend, max_queue=4, write_limit=64 * 1024) as server:
        sock = raw_upgrade(server.port, "/echo")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sent = flood(sock, 1.5)
        sock.close()
    assert sent < 64 << 20


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context


@pytest.mark.parametrize("server_backend", BACKENDS)
@pytest.mark.parametrize("client_backend", BACKENDS)
def test_tls(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], server_backend: str, client_backend: str
) -> None:
    server_context, client_context = tls
    with (
        running_server(server_backend, ssl=server_context) as server,
        client(client_backend, server.url(scheme="wss"), ssl=client_context) as ws,
    ):
        ws.send("secret")
        assert ws.recv() == "secret"
        ws.send(bytes(200_000))
        assert ws.recv() == bytes(200_000)


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_tls_client_refuses_an_untrusted_certificate(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], client_backend: str
) -> None:
    server_context, _ = tls
    with running_server("asyncio", ssl=server_context) as server:
        with (
            pytest.raises((ssl.SSLError, HandshakeError, OSError)),
            client(client_backend, server.url(scheme="wss"), ssl=ssl.create_default_context()),
        ):
            pass
        # A failed TLS handshake leaves no connection behind (it once did,
        # and the server's shutdown then waited close_timeout for it).
        assert server.server.connections == set()


# -- the client's side ---------------------------------------------------------


class SilentServer:
    """Accepts TCP connections; optionally completes the handshake; then says nothing."""

    def __init__(self, handshake: bool) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshake = handshake
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from wsproto_core.handshake import accept_token

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            if self.handshake:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                key = next(
                    line.split(b":", 1)[1].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key")
                )
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept_token(key).encode()
                    + b"\r\n\r\n"
                )

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_client_open_timeout(client_backend: str) -> None:
    silent = SilentServer(handshake=False)
    try:
        start = time.monotonic()
        with (
            pytest.raises(HandshakeError, match="timed out"),
            client(client_backend, f"ws://127.0.0.1:{silent.port}/", open_timeout=0.3),
        ):
            pass
        assert time.monotonic() - start < 5
    finally:
        silent.close()


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_client_local_address_is_the_source_the_server_sees(client_backend: str) -> None:
    """Every 127.x.y.z is local on Linux: a client bound to 127.0.0.7 reaches
    a server on 127.0.0.1 from that address (what the load generator uses
    to stay under per-address limits)."""
    with (
        running_server(client_backend) as server,
        client(client_backend, server.url("/info"), local_address=("127.0.0.7", 0)) as ws,
    ):
        assert json.loads(ws.recv())["remote"][0] == "127.0.0.7"


def test_trio_client_refuses_a_fixed_local_port() -> None:
    with (
        pytest.raises(ValueError, match="port must be 0"),
        client("trio", "ws://127.0.0.1:9/", local_address=("127.0.0.1", 4321)),
    ):
        pass


@pytest.mark.parametrize("client_backend", BACKENDS)
def test_client_keepalive_detects_a_dead_server(client_backend: str) -> None:
    silent = SilentServer(handshake=True)
    try:
        with client(
            client_backend,
            f"ws://127.0.0.1:{silent.port}/",
            ping_interval=0.2,
            ping_timeout=0.3,
            close_timeout=0.3,
        ) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                ws.recv()
            assert caught.value.code == 1011
    finally:
        silent.close()


def buffered_output(connection: object) -> int:
    """Bytes a server connection holds for a peer: the core's queue, plus
    the transport's buffer where there is one (asyncio)."""
    core = connection._driver.core  # type: ignore[attr-defined]
    held = sum(len(chunk) for chunk in core._out)
    transport = getattr(connection, "_transport", None)
    if transport is not None:
        held += transport.get_write_buffer_size()
    return held


@backends
def test_a_ping_flood_from_a_peer_that_never_reads_is_bounded(backend: str) -> None:
    """Every ping we answer is a pong that waits for a peer that does not
    read; once the pongs we owe pass write_limit, the server stops reading
    that peer instead of queueing more."""
    with running_server(backend, write_limit=64 * 1024) as server:
        sock = raw_upgrade(server.port, "/noread")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sent = flood(sock, 2.0, masked(0x9, b"p" * 125) * 512)
        held = [buffered_output(c) for c in list(server.server.connections)]
        sock.close()
    assert sent > 1 << 20  # the flood really happened
    assert held
    assert max(held) < 1 << 20, held


def test_asyncio_server_close_cancels_handlers_of_connections_already_gone() -> None:
    import asyncio

    from adapters import asyncio as ws_asyncio

    async def run() -> None:
        cancelled = asyncio.Event()

        async def idle(ws: ws_asyncio.WebSocket) -> None:
            try:
                await asyncio.sleep(60)  # never touches the connection again
            except asyncio.CancelledError:
                cancelled.set()
                raise

        server = await ws_asyncio.serve(idle, "127.0.0.1", 0)
        sock = await asyncio.to_thread(raw_upgrade, server.port, "/")
        sock.close()  # the peer leaves; the handler sleeps on
        await asyncio.sleep(0.2)
        assert not server.connections
        await server.close()
        assert cancelled.is_set()

    asyncio.run(run())


def test_blocking_sockets_have_nagle_off() -> None:
    """A frame is written as header then payload; with Nagle's algorithm on,
    the payload's tail waits for the peer's delayed ACK (Autobahn 12.x
    found the blocking adapter 15x slower than the others before this).
    asyncio and trio turn it off for their own sockets."""
    seen: list[int] = []

    def handler(ws: ws_blocking.WebSocket) -> None:
        ws.recv(timeout=10)  # (the client has looked at its own socket: it may close now)
        seen.append(ws._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        ws.send("checked")

    with ws_blocking.serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with ws_blocking.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                # Before the server's handler returns and closes: a closed
                # socket has no options to read (the race this test had).
                assert ws._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                ws.send("go")
                assert ws.recv(timeout=10) == "checked"
        finally:
            server.close()
            thread.join(10)
    assert len(seen) == 1
    assert seen[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_prepared_never_waits_and_reports_a_peer_that_does_not_read(backend: str) -> None:
    """The fan-out primitive: queuing never blocks, and what it returns
    grows when the peer stops reading, so a broadcaster can drop it."""
    FLOOD_RESULTS.clear()
    with running_server(backend) as server, raw_upgrade(server.port, "/prepared-flood"):
        deadline = time.monotonic() + 20
        while not FLOOD_RESULTS and time.monotonic() < deadline:
            time.sleep(0.05)
        [(waiting, sends)] = FLOOD_RESULTS
        assert waiting >= FLOOD_TARGET
        assert sends < 1000  # the count grew: the peer read nothing


def _silent_server_that_floods(messages: int) -> tuple[socket.socket, threading.Thread]:
    """A server that accepts one client, sends it `messages` text frames,
    then never reads again nor answers a close frame."""
    import base64
    import hashlib

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        sock, _ = listener.accept()
        held.append(sock)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        for i in range(messages):
            sock.sendall(b"\x81\x02m" + bytes([48 + i % 10]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@backends
def test_close_returns_after_close_timeout_even_with_unread_messages(backend: str) -> None:
    """A peer that floods us and then ignores our close: close() gives up
    after close_timeout (1006), even while the reader waits for room in a
    full receive queue (the blocking client used to wait there forever)."""
    listener, serving = _silent_server_that_floods(40)  # more than max_queue
    with listener:
        url = f"ws://127.0.0.1:{listener.getsockname()[1]}/"
        with client(backend, url, close_timeout=0.5, compression=None) as ws:
            serving.join(10)
            time.sleep(0.3)  # the frames arrive; the queue fills and reading pauses
            closing = threading.Thread(target=ws.close, daemon=True)
            closing.start()
            closing.join(10)
            assert not closing.is_alive(), "close() did not return"
            assert ws.close_code == 1006


@backends
def test_shutdown_returns_while_a_client_is_mid_handshake(backend: str) -> None:
    """A socket that sent half an upgrade request (or nothing) must not
    hold up the server's shutdown (the blocking server deadlocked on it)."""
    with running_server(backend, close_timeout=1.0) as server:
        silent = socket.create_connection(("127.0.0.1", server.port))
        half = socket.create_connection(("127.0.0.1", server.port))
        half.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)  # both accepted, both in their handshakes
        stopping = threading.Thread(target=server.stop, daemon=True)
        stopping.start()
        stopping.join(15)
        assert not stopping.is_alive(), "shutdown did not return"
        silent.close()
        half.close()


@backends
def test_a_peer_that_pings_without_reading_is_ended_by_the_keepalive(backend: str) -> None:
    """While the handler writes a large echo to a peer that never reads,
    the peer floods pings: the owed pongs stop the reader, but the timers
    must still run, so the keepalive (no pong) ends the connection."""
    options = {"ping_interval": 0.5, "ping_timeout": 0.5, "close_timeout": 1.0}
    with running_server(backend, max_message_size=None, **options) as server:
        sock = raw_upgrade(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        big = bytes(8 << 20)
        sock.sendall(b"\x82\xff" + len(big).to_bytes(8, "big") + b"\0\0\0\0" + big)
        ping = b"\x89\xfd\0\0\0\0" + bytes(125)
        sock.setblocking(False)
        ended = None
        start = time.monotonic()
        while time.monotonic() - start < 12:
            try:
                sock.send(ping * 64)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:  # reset or shut down: the server gave up on us
                ended = time.monotonic() - start
                break
            if _closed_by_server(sock):
                ended = time.monotonic() - start
                break
        sock.close()
        assert ended is not None, "the connection outlived its keepalive by 10 s"


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed its side, looking without reading (the
    peer under test reads nothing: its receive buffer holds the echo)."""
    import select

    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@backends
def test_a_burst_of_compressed_messages_is_read_in_slices_and_all_echoed(backend: str) -> None:
    """Twenty messages of 2 MiB of zeros (some 2 KiB each on the wire) in
    one write: the server feeds them to the core a slice at a time and
    pauses when its small queue is full, then goes on with what it had
    already read as the handler takes them; every one comes back whole."""
    message = bytes(2 << 20)
    with running_server(backend, max_queue=2, max_message_size=4 << 20) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        core = ClientConnection(
            f"127.0.0.1:{server.port}",
            "/echo",
            compression=PerMessageDeflate(),
            max_message_size=None,
            ping_interval=None,
        )
        with sock:
            sock.sendall(core.data_to_send())
            while core.state is State.CONNECTING:
                core.receive_data(sock.recv(65536))
            assert core.extensions
            for _ in range(20):
                core.send_bytes(message)
            sock.sendall(core.data_to_send())
            echoes: list[bytes] = []
            while len(echoes) < 20:
                data = sock.recv(1 << 20)
                assert data, "the server closed"
                echoes += [e.data for e in core.receive_data(data) if isinstance(e, BytesMessage)]
    assert all(echo == message for echo in echoes)
