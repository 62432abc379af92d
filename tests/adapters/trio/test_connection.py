"""trio connections (adapters/trio/connection.py): who writes, and when
the close timer runs."""

from __future__ import annotations

import os
import socket
import time

import pytest
import trio

from adapters import trio as ws_trio
from adapters.trio import connection as trio_connection
from wsproto_core import BytesMessage, CloseReceived, PreparedMessage

from ..harness import open_raw

BIG = 4 << 20


def serve_one(handler: object, peer: object, **options: object) -> None:
    """Run a trio server with `handler` until `peer(port)` (in a thread) returns."""

    async def main() -> None:
        async with ws_trio.serve(handler, "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
            await trio.to_thread.run_sync(peer, server.port)  # type: ignore[arg-type]

    trio.run(main)


def test_a_recv_given_up_mid_write_cuts_no_frame() -> None:
    """recv() leaves writing to the writer task: a recv under a timeout
    that runs out while a large message is still going out must not cut
    that message (it once wrote, and was cancelled halfway)."""
    events: list[object] = []

    async def handler(ws: ws_trio.WebSocket) -> None:
        ws._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # type: ignore[attr-defined]
        await ws.send(b"a" * BIG)
        with trio.move_on_after(0.3):
            await ws.recv()
        await ws.send(b"after")

    def peer(port: int) -> None:
        sock, core = open_raw(port, rcvbuf=64 * 1024)
        time.sleep(1.0)  # not reading while the server's recv gives up
        with sock:
            while not any(isinstance(event, CloseReceived) for event in events):
                data = sock.recv(1 << 20)
                if not data:
                    break
                events.extend(core.receive_data(data))

    serve_one(handler, peer, write_limit=16 << 20, close_timeout=2, ping_interval=None)
    messages = [event for event in events if isinstance(event, BytesMessage)]
    assert [len(message.data) for message in messages] == [BIG, 5]
    assert isinstance(events[-1], CloseReceived)
    assert events[-1].code == 1000


def test_close_is_bounded_by_close_timeout_while_the_writer_is_stuck() -> None:
    took: list[float] = []

    async def handler(ws: ws_trio.WebSocket) -> None:
        ws._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # type: ignore[attr-defined]
        ws.send_prepared(PreparedMessage(os.urandom(BIG)))
        await trio.sleep(0.3)  # the writer is stuck in send_all now
        start = trio.current_time()
        with trio.move_on_after(8):
            await ws.close()
        took.append(trio.current_time() - start)

    def peer(port: int) -> None:
        sock, _ = open_raw(port, rcvbuf=64 * 1024)
        with sock:
            deadline = time.monotonic() + 10
            while not took and time.monotonic() < deadline:
                time.sleep(0.05)  # reads nothing

    serve_one(handler, peer, close_timeout=1, ping_interval=None, compression=None)
    assert took
    assert took[0] < 4, f"close() took {took[0]:.1f} s with close_timeout=1"


def test_an_idle_connection_is_two_tasks_and_a_broadcast_starts_none() -> None:
    """No writer task waits beside an idle connection, and a message the
    socket takes at once is written by the task that sent it: a broadcast
    to many idle peers is then a write each, not a task switch each."""
    seen: dict[str, object] = {}

    async def handler(ws: ws_trio.WebSocket) -> None:
        # (after the peer's first message: written at once, the broadcast
        # could reach the peer with the 101, where open_raw drops it)
        await ws.recv()
        seen["idle writer"] = ws._writer_scope
        seen["backlog"] = ws.send_prepared(PreparedMessage(b"to all"))
        seen["writer after"] = ws._writer_scope
        await ws.recv()  # the peer's "bye"

    async def main() -> None:
        async with ws_trio.serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
            assert server._nursery is not None
            before = len(server._nursery.child_tasks)  # (the accept loops)

            def peer(port: int) -> None:
                sock, core = open_raw(port)
                with sock:
                    core.send_bytes(b"go")
                    sock.sendall(core.data_to_send())
                    messages: list[object] = []
                    while not messages:
                        data = sock.recv(65536)
                        assert data
                        messages = [
                            e for e in core.receive_data(data) if isinstance(e, BytesMessage)
                        ]
                    assert [m.data for m in messages] == [b"to all"]  # type: ignore[attr-defined]
                    seen["tasks"] = trio.from_thread.run_sync(
                        lambda: len(server._nursery.child_tasks)  # type: ignore[union-attr]
                    )
                    core.send_bytes(b"bye")
                    sock.sendall(core.data_to_send())

            await trio.to_thread.run_sync(peer, server.port)

            assert seen["tasks"] == before + 2  # the handler's and the reader's

    trio.run(main)
    assert seen["idle writer"] is None
    assert seen["backlog"] == 0  # all written at once
    assert seen["writer after"] is None


def test_sends_of_one_step_after_the_first_go_out_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first message of a scheduler step is written at once; the rest
    of the step's wait for its end and go out in one write (a broadcast of
    many messages read in one go is then one write per peer, not one per
    message), in order."""
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    async def handler(ws: ws_trio.WebSocket) -> None:
        await ws.recv()  # the peer's "go"
        monkeypatch.setattr(trio_connection.os, "write", counting_write)
        for n in range(50):
            ws.send_prepared(PreparedMessage(f"m{n}".encode()))
        assert len(writes) == 1  # the first, at once
        await trio.sleep(0.1)  # (the step ends)
        monkeypatch.undo()
        await ws.recv()  # the peer's "bye"

    received: list[bytes] = []

    def peer(port: int) -> None:
        sock, core = open_raw(port)
        with sock:
            core.send_bytes(b"go")
            sock.sendall(core.data_to_send())
            while len(received) < 50:
                data = sock.recv(65536)
                assert data
                received.extend(
                    e.data for e in core.receive_data(data) if isinstance(e, BytesMessage)
                )
            core.send_bytes(b"bye")
            sock.sendall(core.data_to_send())

    serve_one(handler, peer, ping_interval=None)
    assert received == [f"m{n}".encode() for n in range(50)]
    assert len(writes) == 2  # the first alone, the other 49 together
    assert writes[1] == sum(len(f"m{n}") + 2 for n in range(1, 50))


def test_sends_of_one_step_past_write_limit_go_out_before_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop of sends that never yields cannot grow the step's deferred
    writes without bound: once more than `write_limit` bytes wait, they are
    written at once, still in order."""
    limit, size, count = 4096, 1000, 50
    frame = size + 4  # a 16-bit length, unmasked
    writes: list[int] = []
    during: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    async def handler(ws: ws_trio.WebSocket) -> None:
        await ws.recv()  # the peer's "go"
        monkeypatch.setattr(trio_connection.os, "write", counting_write)
        for n in range(count):
            ws.send_prepared(PreparedMessage(bytes([n]) * size))
        during.extend(writes)  # all within the step: nothing has yielded
        await trio.sleep(0.1)  # (the step ends)
        monkeypatch.undo()
        await ws.recv()  # the peer's "bye"

    received: list[bytes] = []

    def peer(port: int) -> None:
        sock, core = open_raw(port)
        with sock:
            core.send_bytes(b"go")
            sock.sendall(core.data_to_send())
            while len(received) < count:
                data = sock.recv(65536)
                assert data
                received.extend(
                    e.data for e in core.receive_data(data) if isinstance(e, BytesMessage)
                )
            core.send_bytes(b"bye")
            sock.sendall(core.data_to_send())

    serve_one(handler, peer, ping_interval=None, write_limit=limit)
    assert received == [bytes([n]) * size for n in range(count)]
    assert len(during) >= count * frame // (limit + frame)  # written along the way
    assert all(written <= limit + frame for written in during)  # none much past the limit
    assert sum(writes) == count * frame
