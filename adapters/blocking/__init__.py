"""WebSocket server and client on plain blocking sockets and threads.

Each connection has a reader thread that feeds the core, answers pings,
runs the core's timers and queues messages; the application's thread calls
`recv()` / `send()`. A thread per connection keeps one slow client from
stalling the others, and `sendall` blocks while the peer is not reading,
which is the write backpressure.

    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 8765) as server:
        server.serve_forever()
"""

from ..errors import *  # noqa: F403 - the exceptions are part of each backend's API
from ..errors import __all__ as _errors
from .client import connect
from .connection import WebSocket
from .server import Handler, Server, serve

__all__ = ["Handler", "Server", "WebSocket", "connect", "serve"]
__all__ += _errors
