"""Echo servers of every implementation the end-to-end benchmark compares.

    python benchmarks/e2e_servers.py --impl ours-asyncio --port 9001

Each prints "ready" once listening. Compression is off everywhere (the load
client does not offer it), message limits are lifted, and each server echoes
text as text and binary as binary.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from typing import Any

LIMIT = 64 << 20


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ready() -> None:
    print("ready", flush=True)


async def forever() -> None:
    await asyncio.Event().wait()


def run_asyncio(main: Any, uvloop: bool) -> None:
    if uvloop:
        import uvloop as uv

        uv.run(main())
    else:
        asyncio.run(main())


def ours_asyncio(port: int, uvloop: bool) -> None:
    from adapters import asyncio as ws

    async def echo(conn: ws.WebSocket) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        await ws.serve(echo, "127.0.0.1", port, max_message_size=LIMIT, ping_interval=None)
        ready()
        await forever()

    run_asyncio(main, uvloop)


def ours_trio(port: int) -> None:
    import trio

    from adapters import trio as ws

    async def echo(conn: ws.WebSocket) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        async with ws.serve(
            echo, "127.0.0.1", port, max_message_size=LIMIT, ping_interval=None
        ) as server:
            ready()
            await server.serve_forever()

    trio.run(main)


def ours_blocking(port: int) -> None:
    from adapters import blocking as ws

    def echo(conn: ws.WebSocket) -> None:
        for message in conn:
            conn.send(message)

    server = ws.serve(echo, "127.0.0.1", port, max_message_size=LIMIT, ping_interval=None)
    ready()
    server.serve_forever()


def websockets_asyncio(port: int, uvloop: bool) -> None:
    from websockets.asyncio.server import serve

    async def echo(conn: Any) -> None:
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        async with serve(
            echo, "127.0.0.1", port, compression=None, max_size=LIMIT, ping_interval=None
        ):
            ready()
            await forever()

    run_asyncio(main, uvloop)


def websockets_sync(port: int) -> None:
    from websockets.sync.server import serve

    def echo(conn: Any) -> None:
        for message in conn:
            conn.send(message)

    with serve(echo, "127.0.0.1", port, compression=None, max_size=LIMIT) as server:
        ready()
        server.serve_forever()


def aiohttp_server(port: int, uvloop: bool) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        conn = web.WebSocketResponse(compress=False, max_msg_size=LIMIT)
        await conn.prepare(request)
        async for message in conn:
            if message.type == WSMsgType.TEXT:
                await conn.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await conn.send_bytes(message.data)
        return conn

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready()
        await forever()

    run_asyncio(main, uvloop)


def picows_server(port: int, uvloop: bool) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        # Messages are single frames here (the load client sends no fragments).
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    async def main() -> None:
        await ws_create_server(lambda _: Echo(), "127.0.0.1", port, max_frame_size=LIMIT)
        ready()
        await forever()

    run_asyncio(main, uvloop)


def trio_websocket_server(port: int) -> None:
    import trio
    from trio_websocket import ConnectionClosed, serve_websocket

    async def handler(request: Any) -> None:
        conn = await request.accept()
        try:
            while True:
                await conn.send_message(await conn.get_message())
        except ConnectionClosed:
            pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_websocket(
                    handler,
                    "127.0.0.1",
                    port,
                    ssl_context=None,
                    max_message_size=LIMIT,
                    task_status=task_status,
                )
            )
            ready()

    trio.run(main)


def raw_server(port: int, uvloop: bool) -> None:
    """No WebSocket library: the floor the load client and the loop set.

    It answers the handshake with a fixed 101 and then each whole frame it
    receives with an unmasked frame of the same length (zeros, not the
    echoed payload), in one write per read. It does no unmasking, no
    checks and no allocation per message beyond the reply, so no real
    server can be faster on this benchmark; a target above it is out of
    the benchmark's reach, not the server's.
    """

    accept = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    replies: dict[int, bytes] = {}

    def reply(length: int) -> bytes:
        frame = replies.get(length)
        if frame is None:
            if length < 126:
                head = bytes([0x82, length])
            elif length < 65536:
                head = bytes([0x82, 126]) + length.to_bytes(2, "big")
            else:
                head = bytes([0x82, 127]) + length.to_bytes(8, "big")
            frame = replies[length] = head + bytes(length)
        return frame

    class Raw(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""
            self.open = False

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data
            if not self.open:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    self.buffer = buffer
                    return
                self.transport.write(accept)
                self.open = True
                buffer = buffer[end + 4 :]
            out = []
            pos, size = 0, len(buffer)
            while size - pos >= 6:
                length = buffer[pos + 1] & 0x7F
                start = pos + 6
                if length == 126:
                    start += 2
                    if size < start:
                        break
                    length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                elif length == 127:
                    start += 8
                    if size < start:
                        break
                    length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                if size < start + length:
                    break
                if buffer[pos] & 0x0F == 0x8:
                    self.transport.close()
                    return
                out.append(reply(length))
                pos = start + length
            self.buffer = buffer[pos:]
            if out:
                self.transport.write(b"".join(out))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Raw, "127.0.0.1", port)
        ready()
        await forever()

    run_asyncio(main, uvloop)


IMPLEMENTATIONS = {
    "ours-asyncio": lambda port: ours_asyncio(port, False),
    "ours-asyncio-uvloop": lambda port: ours_asyncio(port, True),
    "ours-trio": ours_trio,
    "ours-blocking": ours_blocking,
    "websockets": lambda port: websockets_asyncio(port, False),
    "websockets-uvloop": lambda port: websockets_asyncio(port, True),
    "websockets-threads": websockets_sync,
    "aiohttp": lambda port: aiohttp_server(port, False),
    "aiohttp-uvloop": lambda port: aiohttp_server(port, True),
    "picows": lambda port: picows_server(port, False),
    "picows-uvloop": lambda port: picows_server(port, True),
    "trio-websocket": trio_websocket_server,
    "raw": lambda port: raw_server(port, False),
    "raw-uvloop": lambda port: raw_server(port, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=list(IMPLEMENTATIONS), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    IMPLEMENTATIONS[args.impl](args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
