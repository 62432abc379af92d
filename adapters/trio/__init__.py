"""WebSocket server and client on trio, driving wsproto_core.

Each connection runs a reader task beside the application's handler. The
reader waits for bytes with a cancel scope whose deadline is the core's
next deadline, so the core's timers need no task of their own; a full
receive queue makes the reader stop reading until the application catches
up, and `send` waits in `send_all` while the peer is not reading.

    async def main():
        async with connect("ws://127.0.0.1:8765/") as ws:  # the only form:
            await ws.send("hello")  # its tasks need the block's nursery
            print(await ws.recv())

    trio.run(main)
"""

from ..errors import *  # noqa: F403 - the exceptions are part of each backend's API
from ..errors import __all__ as _errors
from .client import connect
from .connection import WebSocket
from .server import Handler, Server, serve

__all__ = ["Handler", "Server", "WebSocket", "connect", "serve"]
__all__ += _errors
