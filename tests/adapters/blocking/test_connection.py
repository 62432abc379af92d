"""Blocking connections (adapters/blocking/connection.py): closes that must
not be lost between the threads, and locks that must not leak."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time

import trustme

from adapters import blocking as ws_blocking
from wsproto_core import PreparedMessage

from ..harness import open_raw


def run_server(handler: object, **options: object) -> ws_blocking.Server:
    server = ws_blocking.serve(handler, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_held_failure_closes_even_when_the_socket_is_full() -> None:
    """The close decided when the peer's violation is applied waits for the
    bytes ahead of it; it must not be lost when the socket cannot take them
    at once (close_timeout=None: nothing else would ever close it)."""
    raised: list[str] = []

    def handler(ws: ws_blocking.WebSocket) -> None:
        ws._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        ws.send_prepared(PreparedMessage(os.urandom(4 << 20)))  # fills the socket
        try:
            for _ in ws:
                pass
        except ws_blocking.ConnectionClosed as error:
            raised.append(f"{error.code}")

    server = run_server(handler, close_timeout=None, ping_interval=None, compression=None)
    try:
        sock, core = open_raw(server.port, rcvbuf=64 * 1024)
        with sock:
            core.send_text("hi")
            sock.sendall(core.data_to_send() + bytes([0x83, 0x80, 0, 0, 0, 0]))  # opcode 3
            time.sleep(1.0)  # not reading for a while
            received = 0
            while data := sock.recv(1 << 20):  # times out (TIMEOUT) if never closed
                received += len(data)
        assert raised == ["1002"]
        assert received > 4 << 20  # the broadcast, then the close frame, then the end
    finally:
        server.close()


def test_a_corrupt_tls_record_between_queueing_and_writing_leaks_no_lock() -> None:
    """The reader meets a corrupt record (TLS is broken from then on)
    between a broadcast's queueing and its write: the writer must end the
    connection and let go of the write lock, not raise SSLError with it."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    seen: dict[str, object] = {}

    def handler(ws: ws_blocking.WebSocket) -> None:
        with ws._lock:  # send_prepared, its first half
            ws._backlog += ws._driver.queue_prepared(PreparedMessage("hello"))
        assert ws._tls is not None
        try:  # the reader, meanwhile
            ws._tls.decrypt(b"\x17\x03\x03\x00\x10" + bytes(16))
        except ssl.SSLError:
            seen["corrupt"] = True
        ws._write_soon()  # send_prepared, its second half
        seen["lock free"] = ws._write_lock.acquire(timeout=2)
        seen["closed"] = ws.wait_closed(5)

    server = run_server(handler, ssl=server_context, ping_interval=None, close_timeout=1)
    try:
        client = ws_blocking.connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context)
        deadline = time.monotonic() + 10
        while "closed" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        client.close()
        assert seen == {"corrupt": True, "lock free": True, "closed": True}
    finally:
        server.close()
