"""WebSocket server and client on asyncio, driving wsproto_core.

Built on `asyncio.Protocol` rather than streams: bytes go straight from
`data_received` into the core, and what the core queues goes out with one
`writelines`. Backpressure both ways comes from the transport: a full
receive queue pauses reading, a full write buffer makes `send` wait.

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 8765) as server:
        await server.serve_forever()
"""

from ..errors import *  # noqa: F403 - the exceptions are part of each backend's API
from ..errors import __all__ as _errors
from .client import connect
from .connection import WebSocket
from .server import Handler, Server, serve

__all__ = ["Handler", "Server", "WebSocket", "connect", "serve"]
__all__ += _errors
