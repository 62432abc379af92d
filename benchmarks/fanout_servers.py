"""Broadcast servers for the fan-out benchmark, one per implementation.

    python benchmarks/fanout_servers.py --impl ours --port 9001

Each keeps every open connection in a set and sends each message it
receives to all of them, the way each library's documentation suggests:
ours frames it once (`PreparedMessage`) and queues it with
`send_prepared`; websockets uses its `broadcast()`; aiohttp awaits
`send_str` per connection; picows calls `transport.send` per connection.
All run on the default asyncio loop and print "ready" once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from e2e_servers import forever, raise_fd_limit, ready

LIMIT = 1 << 20


def ours(port: int) -> None:
    from adapters import asyncio as ws
    from wsproto_core import PreparedMessage

    clients: set[ws.WebSocket] = set()
    closing: set[asyncio.Task[None]] = set()

    async def handler(conn: ws.WebSocket) -> None:
        clients.add(conn)
        try:
            async for message in conn:
                prepared = PreparedMessage(message)
                for client in clients:
                    if client.send_prepared(prepared) > LIMIT:  # too slow: drop it
                        task = asyncio.ensure_future(client.close(1013, "too slow"))
                        closing.add(task)
                        task.add_done_callback(closing.discard)
        finally:
            clients.discard(conn)

    async def main() -> None:
        await ws.serve(handler, "127.0.0.1", port, ping_interval=None, compression=None)
        ready()
        await forever()

    asyncio.run(main())


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


IMPLEMENTATIONS = {
    "ours": ours,
    "websockets": websockets_server,
    "aiohttp": aiohttp_server,
    "picows": picows_server,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=sorted(IMPLEMENTATIONS), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    IMPLEMENTATIONS[args.impl](args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
