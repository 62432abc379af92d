"""What only the asyncio backend's connection does."""

from __future__ import annotations

import threading
import time

from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from wsproto_core import PreparedMessage

from ..harness import AsyncioThread

BLOCKED = 0.5  # seconds the handler keeps the server's loop from running


def test_a_broadcast_reaches_a_peer_before_the_loop_runs_again() -> None:
    """The first `send_prepared` of a loop iteration is written at once, so
    a broadcast reaches its first peers while it is still being queued for
    the others; later ones in the same iteration are batched into one write
    at its end."""
    released = threading.Event()

    async def handler(ws: ws_asyncio.WebSocket) -> None:
        await ws.recv()
        ws.send_prepared(PreparedMessage("first"))
        ws.send_prepared(PreparedMessage("second"))
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
