"""The chat on the blocking adapter: a thread per client (the adapter's),
one lock around the room, and (with --redis) one thread for Redis."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable

from .. import blocking as ws_blocking
from .._common import ConnectionClosed
from .actions import ChatActions
from .link import CONNECT_TIMEOUT, HISTORY_TIMEOUT, LinkState
from .redis_session import Conn, RedisSession, SessionError
from .service import (
    TICK,
    WS_PATH,
    ChatSettings,
    server_options,
)


class _Waiter:
    """A newcomer's thread waiting for the shared history."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: list[str] | None = None


class RedisLink(LinkState[_Waiter]):
    """The blocking sockets of a `RedisSession`, all served by the link's
    own thread (`run`) with non-blocking sockets and a selector: it writes
    what the session says as fast as Redis takes it, reads, and sleeps
    until the session's deadline. `send` and `history` only queue on the
    session, under a lock that is never held around I/O or the room, and
    wake the thread through a socket pair: a stalled Redis never blocks a
    caller (nor the chat's lock, under which `send` is called)."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._lock = threading.Lock()  # guards the session's state, briefly
        self._stop = threading.Event()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)

    def run(self) -> None:
        """Keep a session going until `stop()`."""
        try:
            while not self._stop.is_set():
                error: BaseException = SessionError("the session ended")
                try:
                    self._serve()
                except Exception as exc:  # nothing ends the link but stop()
                    error = exc
                if self._stop.is_set():
                    break
                self._stop.wait(self._lost(error, time.monotonic()))
        finally:
            self._wake_in.close()
            self._wake_out.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        # Full: the thread is awake already. Closed: it has stopped.
        with contextlib.suppress(OSError):
            self._wake_in.send(b"\0")

    def _serve(self) -> None:
        address = (self.host, self.port)
        with (
            socket.create_connection(address, timeout=CONNECT_TIMEOUT) as sub,
            socket.create_connection(address, timeout=CONNECT_TIMEOUT) as cmd,
            selectors.DefaultSelector() as selector,
        ):
            socks = {Conn.SUB: sub, Conn.CMD: cmd}
            for conn, sock in socks.items():
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, conn)
            selector.register(self._wake_out, selectors.EVENT_READ, None)
            with self._lock:
                session = self._start_session(time.monotonic())
            try:
                self._loop(session, socks, selector)
            finally:
                with self._lock:
                    waiters = self._end_session("the link stopped")
                for waiter in waiters:
                    waiter.done.set()

    def _loop(
        self,
        session: RedisSession[_Waiter],
        socks: dict[Conn, socket.socket],
        selector: selectors.BaseSelector,
    ) -> None:
        unsent = {conn: memoryview(b"") for conn in Conn}
        writing = dict.fromkeys(Conn, False)
        while not self._stop.is_set():
            for conn, sock in socks.items():
                unsent[conn] = self._write(session, conn, sock, unsent[conn])
                if writing[conn] != bool(unsent[conn]):  # wait for room to write
                    writing[conn] = bool(unsent[conn])
                    events = selectors.EVENT_READ | (selectors.EVENT_WRITE * writing[conn])
                    selector.modify(sock, events, conn)
            with self._lock:
                deadline = session.next_deadline()
            for key, mask in selector.select(max(0.0, deadline - time.monotonic())):
                if key.data is None:
                    _drain(self._wake_out)
                elif mask & selectors.EVENT_READ:
                    self._read(session, key.data, socks[key.data])
            with self._lock:
                session.handle_timeout(time.monotonic())
            self._check(session)

    def _write(
        self, session: RedisSession[_Waiter], conn: Conn, sock: socket.socket, unsent: memoryview
    ) -> memoryview:
        """Write as much as the socket takes; returns what it did not."""
        while True:
            if not unsent:
                with self._lock:
                    unsent = memoryview(session.data_to_send(conn))
                if not unsent:
                    return unsent
            try:
                unsent = unsent[sock.send(unsent) :]
            except BlockingIOError:
                return unsent
            if unsent:
                return unsent
            with self._lock:
                session.sent(conn)

    def _read(self, session: RedisSession[_Waiter], conn: Conn, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        now = time.monotonic()
        if not data:
            with self._lock:
                session.receive_eof(conn)
            self._check(session)
        with self._lock:
            received = session.receive_data(conn, data, now)
        self._deliver_all(received.payloads, now)  # not under the lock
        for waiter, answer in received.answers:
            waiter.reply = answer
            waiter.done.set()
        self._check(session)

    def send(self, *commands: bytes) -> bool:
        """Queue without waiting; False if Redis is away or not keeping up
        (the chat then delivers to this process's clients)."""
        with self._lock:
            session = self.session
            if session is None or not session.send(commands, time.monotonic()):
                return False
        self._wake()
        return True

    def history(self) -> list[str] | None:
        """The shared history, or None if Redis cannot give it now."""
        waiter = _Waiter()
        with self._lock:
            session = self.session
            if session is None or not session.request_history(waiter, time.monotonic()):
                return None
        self._wake()
        waiter.done.wait(HISTORY_TIMEOUT)
        return waiter.reply


def _drain(sock: socket.socket) -> None:
    """Empty the wake-up socket (the bytes only mean: look again)."""
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


class BlockingChat(ChatActions[ws_blocking.WebSocket]):
    """The room is shared by every client's thread: one lock around it, held
    while its actions are carried out (they only queue, never wait)."""

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self.lock = threading.RLock()
        self.link: RedisLink | None = None
        if settings.redis is not None:
            self.redis = self.link = RedisLink(settings.redis, settings.history, self.from_redis)

    def close_later(self, peer: ws_blocking.WebSocket, code: int, reason: str) -> None:
        # Never waits (a stuck peer's writer included): the core's close
        # timer ends the connection if the peer does not answer. No thread
        # per close either: closing thousands at once must not need thousands.
        peer.close_nowait(code, reason)

    def from_redis(self, envelope: str) -> None:
        with self.lock:
            super().from_redis(envelope)

    def handler(self, ws: ws_blocking.WebSocket) -> None:
        if ws.request is None or ws.request.path != WS_PATH:
            ws.close(1008, f"the chat is at {WS_PATH}")
            return
        link = self.link
        if link is not None and self.history_due(link.up, link.sessions):
            session = link.sessions
            history = link.history()  # (not under the lock: it waits for Redis)
            with self.lock:
                self.seed_history(session, history)
        with self.lock:
            client = self.arrive(ws, None)
        try:
            for message in ws:
                with self.lock:
                    if not self.receive(client, message):
                        break
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                self.leave(client)

    def ticker(self, stop: threading.Event) -> None:
        while not stop.wait(TICK):
            with self.lock:
                self.tick()


def serve_chat(
    settings: ChatSettings, started: Callable[[int], None], stop: threading.Event
) -> None:
    """Run until `stop` is set, then close every client with 1001."""
    chat = BlockingChat(settings)
    with ws_blocking.serve(
        chat.handler, settings.host, settings.port, **server_options(settings)
    ) as server:
        threads = [
            threading.Thread(target=server.serve_forever, daemon=True),
            threading.Thread(target=chat.ticker, args=(stop,), daemon=True),
        ]
        if chat.link is not None:
            threads.append(threading.Thread(target=chat.link.run, daemon=True, name="redis"))
        for thread in threads:
            thread.start()
        started(server.port)
        while not stop.wait(0.5):
            pass
        server.shutdown()
        if chat.link is not None:
            chat.link.stop()
            threads[-1].join(5)
