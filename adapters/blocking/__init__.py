"""WebSocket server and client on plain blocking sockets and threads.

One threading model, the same for plain and TLS connections (TLS is done in
memory, see `tls.py`, so every socket is a plain socket to every thread):

- a reader thread per connection reads, feeds the driver, runs the core's
  timers while it waits, and writes what the core answers on its own
  (pongs, the close reply) before it wakes the application's threads,
  unless a sender is writing, who then takes them;
- the application's threads (on a server, each connection's handler runs
  in a thread of its own) call `recv` (waiting on the condition) and
  `send` (writing with `sendall` under the write lock: the peer's reading
  pace is the backpressure);
- `send_prepared` and `close_nowait` never block: they write what the socket
  takes at once, and one housekeeper thread per process (`housekeeper.py`)
  finishes the rest and runs close timers started from outside the reader.

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
