"""Blocking connections answer the peer before they wake the application.

What the core answers on its own (the close reply, pongs, the close frame
of a failure) is handed to the kernel before the reader wakes the threads
waiting on the connection: once woken, a handler competes with the reader
for the locks and the interpreter while the peer's clock runs (the
Autobahn testsuite's deadline for the close reply can be a millisecond).
Each test looks at the one moment that matters, the wake-up, through a
condition that notes what the core still owes the peer then: no timing is
measured, and no sleep decides anything.
"""

from __future__ import annotations

import socket
import threading

from adapters import blocking as ws_blocking
from wsproto_core import ClientConnection, CloseReceived, Pong, State
from wsproto_core.events import Event
from wsproto_core.frames import CloseCode

from ..harness import TIMEOUT, open_raw
from .test_connection import run_server


class _Witness(threading.Condition):
    """The connection's condition, noting at each wake-up the core's state
    and whether it still holds bytes owed to the peer; `waiting` is set
    each time a thread starts waiting on it."""

    def __init__(self, ws: ws_blocking.WebSocket) -> None:
        super().__init__(ws._lock)
        self._ws = ws
        self.seen: list[tuple[State, bool]] = []
        self.waiting = threading.Event()

    def notify_all(self) -> None:
        core = self._ws._core
        self.seen.append((core.state, core.has_data_to_send))
        super().notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()  # (under the lock, which the wait then releases)
        return super().wait(timeout)


class _Served:
    """A server whose one handler installs a witness and reads until the end."""

    def __init__(self) -> None:
        self.received: list[str | bytes] = []
        self.installed = threading.Event()
        self.done = threading.Event()
        self.witness: _Witness | None = None
        self.server = run_server(self._handler, ping_interval=None, close_timeout=5)

    def _handler(self, ws: ws_blocking.WebSocket) -> None:
        with ws._lock:
            self.witness = ws._changed = _Witness(ws)
        self.installed.set()
        try:
            for message in ws:
                self.received.append(message)
        finally:
            self.done.set()

    def handler_waiting(self) -> _Witness:
        """The witness, once the handler waits in recv() (so that only the
        reader can wake it: nothing it sends next can be taken by the
        handler on its own way into recv)."""
        assert self.installed.wait(TIMEOUT)
        witness = self.witness
        assert witness is not None
        assert witness.waiting.wait(TIMEOUT)
        return witness


def _read_until(sock: socket.socket, core: ClientConnection, kind: type[Event]) -> list[Event]:
    """The events read from the server up to the first of type `kind`."""
    events: list[Event] = []
    while not any(isinstance(event, kind) for event in events):
        data = sock.recv(65536)  # (the socket times out: TIMEOUT)
        assert data, f"the server closed before sending a {kind.__name__}"
        events.extend(core.receive_data(data))
    return events


def test_the_close_reply_is_written_before_the_handler_is_woken() -> None:
    """The peer's close arrives while the handler waits in recv(): by the
    time the reader wakes it, the reply has left the core."""
    served = _Served()
    try:
        sock, core = open_raw(served.server.port)
        with sock:
            witness = served.handler_waiting()
            core.close(CloseCode.NORMAL_CLOSURE)
            sock.sendall(core.data_to_send())
            _read_until(sock, core, CloseReceived)
        assert served.done.wait(TIMEOUT)
        after_close = [owed for state, owed in witness.seen if state is State.CLOSED]
        assert after_close, "the handler was never woken by the close"
        assert not any(after_close), f"woken with the close reply unwritten: {witness.seen}"
    finally:
        served.server.close()


def test_a_pong_is_written_before_the_message_beside_it_wakes_the_handler() -> None:
    """A ping read together with a message: the pong leaves before the
    handler is woken for the message."""
    served = _Served()
    try:
        sock, core = open_raw(served.server.port)
        with sock:
            witness = served.handler_waiting()
            core.send_text("hello")
            core.send_ping(b"p1")
            # One small write on loopback is one read for the server.
            sock.sendall(core.data_to_send())
            events = _read_until(sock, core, Pong)
            assert [event.payload for event in events if isinstance(event, Pong)] == [b"p1"]
            core.close(CloseCode.NORMAL_CLOSURE)
            sock.sendall(core.data_to_send())
            _read_until(sock, core, CloseReceived)
        assert served.done.wait(TIMEOUT)
        assert served.received == ["hello"]
        while_open = [owed for state, owed in witness.seen if state is State.OPEN]
        assert while_open, "the handler was never woken by the message"
        assert not any(while_open), f"woken with the pong unwritten: {witness.seen}"
    finally:
        served.server.close()
