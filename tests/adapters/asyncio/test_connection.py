"""What only the asyncio backend's connection does."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from wsproto_core import PreparedMessage

from ..harness import AsyncioThread

BLOCKED = 0.5  # seconds the handler keeps the server's loop from running


@pytest.mark.parametrize("prepared", [True, False], ids=["send_prepared", "send"])
def test_the_first_send_of_an_iteration_reaches_the_peer_before_the_loop_runs_again(
    prepared: bool,
) -> None:
    """The first message sent in a loop iteration is written at once: a
    broadcast reaches its first peers while it is still being queued for
    the others, and a reply leaves without waiting for the loop to come
    round. Later ones in the same iteration are batched into one write at
    its end."""
    released = threading.Event()

    async def handler(ws: ws_asyncio.WebSocket) -> None:
        await ws.recv()
        if prepared:
            ws.send_prepared(PreparedMessage("first"))
            ws.send_prepared(PreparedMessage("second"))
        else:
            await ws.send("first")  # (neither waits: the write buffer is empty)
            await ws.send("second")
        time.sleep(BLOCKED)  # the whole loop stops here: only written bytes can travel
        released.set()
        await ws.wait_closed()

    loop = AsyncioThread()
    server = loop.run(lambda: ws_asyncio.serve(handler, "127.0.0.1", 0))
    try:
        with ws_blocking.connect(f"ws://127.0.0.1:{server.port}/") as client:
            client.send("go")
            assert client.recv(timeout=BLOCKED * 4) == "first"
            assert not released.is_set(), "the first message waited for the loop"
            assert client.recv(timeout=BLOCKED * 4) == "second"
            assert released.is_set(), "the second message was not batched"
    finally:
        loop.run(server.close, timeout=20)
        loop.stop()


def test_a_broadcast_to_many_peers_defers_one_callback_not_one_per_peer() -> None:
    """What a broadcast leaves for the end of the iteration is one callback
    for all its peers: a handle per peer (a thousand of them) kept the loop
    from reading the next message for about a millisecond. Its first
    message to each peer is written at once and leaves no flush due at all;
    only a second one in the same iteration waits for the batch."""
    peers = 20
    everyone: list[ws_asyncio.WebSocket] = []
    scheduled: list[object] = []
    due: list[int] = []

    async def handler(ws: ws_asyncio.WebSocket) -> None:
        everyone.append(ws)
        if await ws.recv() == "go":
            loop = asyncio.get_running_loop()
            real_call_soon = loop.call_soon

            def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
                scheduled.append(callback)
                return real_call_soon(callback, *args, **kwargs)

            loop.call_soon = counting_call_soon  # type: ignore[method-assign]
            prepared = PreparedMessage("news")
            for peer in everyone:
                peer.send_prepared(prepared)  # the first in the iteration: written now
            due.append(len(ws._end_of_iteration._due))
            for peer in everyone:
                peer.send_prepared(prepared)  # a second one in the iteration: batched
            due.append(len(ws._end_of_iteration._due))
            del loop.call_soon  # the class's own again
        await ws.wait_closed()

    loop = AsyncioThread()
    server = loop.run(lambda: ws_asyncio.serve(handler, "127.0.0.1", 0))
    clients = []
    try:
        for _ in range(peers):
            clients.append(ws_blocking.connect(f"ws://127.0.0.1:{server.port}/"))
        deadline = time.monotonic() + 10
        while len(everyone) < peers and time.monotonic() < deadline:
            time.sleep(0.01)
        clients[0].send("go")
        for client in clients:
            assert client.recv(timeout=10) == "news"
            assert client.recv(timeout=10) == "news"
        assert len(scheduled) == 1, scheduled
        assert due == [0, peers]
    finally:
        for client in clients:
            client.close()
        loop.run(server.close, timeout=20)
        loop.stop()


def test_sends_past_the_write_limit_keep_one_place_in_the_batch() -> None:
    """Past `write_limit` a send writes at once; the connection's place in
    the end-of-iteration batch stays the one it had, not one more per write."""
    due: list[int] = []

    async def handler(ws: ws_asyncio.WebSocket) -> None:
        await ws.recv()
        for _ in range(20):
            await ws.send(b"x" * 3000)
        due.append(len(ws._end_of_iteration._due))
        await ws.wait_closed()

    loop = AsyncioThread()
    server = loop.run(lambda: ws_asyncio.serve(handler, "127.0.0.1", 0, write_limit=4096))
    try:
        with ws_blocking.connect(f"ws://127.0.0.1:{server.port}/") as client:
            client.send("go")
            for _ in range(20):
                assert client.recv(timeout=10) == b"x" * 3000
        assert due == [1]
    finally:
        loop.run(server.close, timeout=20)
        loop.stop()


def test_async_for_takes_messages_already_waiting_without_calling_recv() -> None:
    """`async for` takes a message that is already queued by a plain call:
    a `recv()` coroutine per message cost a fifth of an echo server's time
    at 16 B. (The view is shared: trio's `async for` does the same.)"""
    count = 50
    calls: list[int] = []
    got: list[object] = []

    async def handler(ws: ws_asyncio.WebSocket) -> None:
        real_recv = ws.recv

        async def counting_recv() -> Any:
            calls.append(1)
            return await real_recv()

        ws.recv = counting_recv  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while len(ws._driver.fragments) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        async for message in ws:
            got.append(message)
            if len(got) == count:
                break
        await ws.send("done")
        await ws.wait_closed()

    loop = AsyncioThread()
    # Room for all of them, so that reading does not pause on the way.
    server = loop.run(lambda: ws_asyncio.serve(handler, "127.0.0.1", 0, max_queue=count * 2))
    try:
        with ws_blocking.connect(f"ws://127.0.0.1:{server.port}/") as client:
            for index in range(count):
                client.send(f"m{index}")
            assert client.recv(timeout=10) == "done"
        assert got == [f"m{index}" for index in range(count)]
        assert calls == []
    finally:
        loop.run(server.close, timeout=20)
        loop.stop()
