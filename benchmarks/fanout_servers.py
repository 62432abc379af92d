"""Broadcast servers for the fan-out benchmark, one per implementation.

    python benchmarks/fanout_servers.py --impl ours-asyncio --port 9001

Each keeps every open connection in a set and sends each message it
receives to all of them, the way each library's documentation suggests:

- ours (asyncio, trio and blocking alike) frames it once
  (`PreparedMessage`) and queues it with `send_prepared`, which never
  waits; a peer with more than 1 MiB waiting is closed with 1013. The
  blocking server does it from the sender's handler thread, under the lock
  that guards the set (the way the chat does it);
- websockets (asyncio) uses its `broadcast()`;
- websockets-threaded (websockets.sync) uses the sync `broadcast()` its
  documentation offers (`websockets.sync.server.broadcast` with
  `server.connections`: it writes through a fresh thread pool per call);
  websockets-threaded-send calls `send()` on each connection in turn from
  the sender's handler thread, the plain loop a sync user would write;
- aiohttp awaits `send_str` per connection; picows calls `transport.send`
  per connection;
- raw is no library at all (see `raw_server`): the floor of what the
  benchmark can show.

The asyncio ones run on the default asyncio loop. Each prints "ready" once
listening. `ours` is an alias of `ours-asyncio`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

from e2e_servers import forever, raise_fd_limit, ready

LIMIT = 1 << 20


def relay_handler() -> Any:
    """Our async backends' broadcast: each message, framed once, to every
    peer with `send_prepared`; a peer too far behind is dropped (1013)."""
    from wsproto_core import PreparedMessage

    clients: set[Any] = set()

    async def handler(conn: Any) -> None:
        clients.add(conn)
        try:
            async for message in conn:
                prepared = PreparedMessage(message)
                for client in clients:
                    if client.send_prepared(prepared) > LIMIT:  # too slow: drop it
                        client.close_nowait(1013, "too slow")
        finally:
            clients.discard(conn)

    return handler


def ours_asyncio(port: int) -> None:
    from adapters import asyncio as ws

    handler = relay_handler()

    async def main() -> None:
        await ws.serve(handler, "127.0.0.1", port, ping_interval=None, compression=None)
        ready()
        await forever()

    asyncio.run(main())


def ours_blocking(port: int) -> None:
    from adapters import blocking as ws
    from wsproto_core import PreparedMessage

    clients: set[ws.WebSocket] = set()
    lock = threading.Lock()  # the set is shared by every handler's thread

    def handler(conn: ws.WebSocket) -> None:
        with lock:
            clients.add(conn)
        try:
            for message in conn:
                prepared = PreparedMessage(message)
                with lock:  # send_prepared never waits: holding it is cheap
                    for client in clients:
                        try:
                            waiting = client.send_prepared(prepared)
                        except ws.ConnectionClosed:
                            continue  # it is going; its handler removes it
                        if waiting > LIMIT:  # too slow: drop it
                            client.close_nowait(1013, "too slow")
        finally:
            with lock:
                clients.discard(conn)

    server = ws.serve(handler, "127.0.0.1", port, ping_interval=None, compression=None)
    ready()
    server.serve_forever()


def ours_trio(port: int) -> None:
    import trio

    from adapters import trio as ws

    handler = relay_handler()

    async def main() -> None:
        async with ws.serve(
            handler, "127.0.0.1", port, ping_interval=None, compression=None
        ) as server:
            ready()
            await server.serve_forever()

    trio.run(main)


def websockets_server(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    clients: set[object] = set()

    async def handler(conn: object) -> None:
        clients.add(conn)
        try:
            async for message in conn:  # type: ignore[attr-defined]
                broadcast(clients, message)  # type: ignore[arg-type]
        finally:
            clients.discard(conn)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
            ready()
            await forever()

    asyncio.run(main())


def websockets_threaded(port: int, documented_broadcast: bool) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import broadcast, serve

    clients: set[Any] = set()
    lock = threading.Lock()

    def handler(conn: Any) -> None:
        with lock:
            clients.add(conn)
        try:
            for message in conn:
                if documented_broadcast:
                    broadcast(server.connections, message)
                    continue
                with lock:
                    peers = list(clients)
                for client in peers:
                    try:
                        client.send(message)
                    except ConnectionClosed:
                        continue  # it is going; its handler removes it
        finally:
            with lock:
                clients.discard(conn)

    with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None) as server:
        ready()
        server.serve_forever()


def aiohttp_server(port: int) -> None:
    import aiohttp
    from aiohttp import web

    clients: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        conn = web.WebSocketResponse(compress=False, autoping=True)
        await conn.prepare(request)
        clients.add(conn)
        try:
            async for message in conn:
                if message.type == aiohttp.WSMsgType.TEXT:
                    for client in list(clients):
                        await client.send_str(message.data)
        finally:
            clients.discard(conn)
        return conn

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready()
        await forever()

    asyncio.run(main())


def picows_server(port: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    clients: set[WSTransport] = set()

    class Broadcaster(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: WSTransport) -> None:
            clients.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            clients.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type == WSMsgType.TEXT:
                payload = frame.get_payload_as_bytes()
                for client in clients:
                    client.send(WSMsgType.TEXT, payload)

    async def main() -> None:
        await ws_create_server(lambda _: Broadcaster(), "127.0.0.1", port)
        ready()
        await forever()

    asyncio.run(main())


def raw_server(port: int) -> None:
    """No WebSocket library at all: the handshake and the frames done by
    hand, each text frame re-framed once and queued for every peer, each
    peer's queue written once per loop iteration. It checks nothing a real
    server must (no UTF-8, limits or control frames but close), so its
    figures are the floor this benchmark can show: mostly the receivers'
    own read loops sharing the machine."""
    import base64
    import hashlib

    clients: set[asyncio.Transport] = set()
    pending: dict[asyncio.Transport, list[bytes]] = {}  # written once per loop iteration
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def flush() -> None:
        for client, messages in pending.items():
            if not client.is_closing():
                client.write(b"".join(messages))
        pending.clear()

    def frame(opcode: int, payload: bytes) -> bytes:
        size = len(payload)
        if size < 126:
            return bytes([0x80 | opcode, size]) + payload
        if size < 1 << 16:
            return bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big") + payload
        return bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big") + payload

    class Raw(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.transport: asyncio.Transport | None = None
            self.open = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is not None:
                clients.discard(self.transport)

        def data_received(self, data: bytes) -> None:
            transport = self.transport
            assert transport is not None
            self.buffer += data
            if not self.open:
                head, found, self.buffer = self.buffer.partition(b"\r\n\r\n")
                if not found:
                    self.buffer = head
                    return
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                accept = base64.b64encode(hashlib.sha1(key + guid).digest())
                transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                self.open = True
                clients.add(transport)
            while len(self.buffer) >= 6:
                buffer = self.buffer
                size, start = buffer[1] & 0x7F, 2
                if size == 126:
                    size, start = int.from_bytes(buffer[2:4], "big"), 4
                elif size == 127:
                    size, start = int.from_bytes(buffer[2:10], "big"), 10
                end = start + 4 + size
                if len(buffer) < end:
                    return
                mask = (buffer[start : start + 4] * (size // 4 + 1))[:size]
                masked = int.from_bytes(buffer[start + 4 : end], "little")
                payload = (masked ^ int.from_bytes(mask, "little")).to_bytes(size, "little")
                self.buffer = buffer[end:]
                opcode = buffer[0] & 0x0F
                if opcode == 0x1:
                    message = frame(0x1, payload)
                    for client in clients:
                        queued = pending.setdefault(client, [])
                        queued.append(message)
                        if len(queued) == 1 and len(pending) == 1:
                            asyncio.get_running_loop().call_soon(flush)
                elif opcode == 0x8:
                    transport.write(frame(0x8, payload[:2]))
                    transport.close()
                    return

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Raw, "127.0.0.1", port)
        ready()
        await forever()

    asyncio.run(main())


IMPLEMENTATIONS = {
    "ours-asyncio": ours_asyncio,
    "ours-blocking": ours_blocking,
    "ours-trio": ours_trio,
    "websockets": websockets_server,
    "websockets-threaded": lambda port: websockets_threaded(port, True),
    "websockets-threaded-send": lambda port: websockets_threaded(port, False),
    "aiohttp": aiohttp_server,
    "picows": picows_server,
    "raw": raw_server,
}
ALIASES = {"ours": "ours-asyncio"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=[*IMPLEMENTATIONS, *ALIASES], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    IMPLEMENTATIONS[ALIASES.get(args.impl, args.impl)](args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
