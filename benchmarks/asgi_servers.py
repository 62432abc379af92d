"""One raw ASGI echo application under uvicorn, with any of its WebSocket
protocol classes, for benchmarks/asgi_bench.py.

    python benchmarks/asgi_servers.py --ws ours --loop uvloop

Binds 127.0.0.1 on a port the kernel picks and prints "ready <port>" once
uvicorn listens. uvicorn runs with httptools, logging at warning and no
access log, no lifespan, compression off (the load client does not offer
it) and keepalive pings off (`None`, which every class takes as "off").
The application is no framework: it accepts, then sends every message
back as it came (text as text, bytes as bytes) until the disconnect.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from e2e_servers import raise_fd_limit

# --ws names: uvicorn's own three by their uvicorn names, ours by import path.
WS_CLASSES = {
    "ours": "adapters.asgi:WebSocketProtocol",
    "websockets": "websockets",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
}
LOOPS = ["asyncio", "uvloop"]

Message = dict[str, Any]


async def echo_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "http":  # not the benchmark's; answered so nothing hangs
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["type"] != "websocket":
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        elif kind == "websocket.disconnect":
            return


def serve(ws: str, loop: str) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1]
                print("ready", port, flush=True)

    config = uvicorn.Config(
        echo_app,
        host="127.0.0.1",
        port=0,
        loop=loop,
        http="httptools",
        ws=WS_CLASSES[ws],
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        ws_ping_timeout=None,
    )
    Server(config).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ws", choices=list(WS_CLASSES), required=True)
    parser.add_argument("--loop", choices=LOOPS, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    serve(args.ws, args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
