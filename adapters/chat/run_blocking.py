"""The chat on the blocking adapter: a thread per client (the adapter's),
one lock around the room, and (with --redis) one thread for Redis."""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .. import ConnectionClosed
from .. import blocking as ws_blocking
from .chat_process import ChatProcess, refusal
from .monitor import Monitor
from .redis_link import CONNECT_TIMEOUT, HISTORY_TIMEOUT, READ_SIZE, RedisLinkBase, Waiter
from .redis_session import Conn, RedisSession
from .settings import TICK, ChatSettings

# Nothing to read or no room to write now (TLS says it its own way).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_Session = RedisSession[Waiter[threading.Event]]


class RedisLink(RedisLinkBase[threading.Event]):
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
        self._stopping = threading.Event()  # `stopped`, to wait on
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)

    def _now(self) -> float:
        return time.monotonic()

    def _new_event(self) -> threading.Event:
        return threading.Event()

    def _wake(self) -> None:
        # Full: the thread is awake already. Closed: it has stopped.
        with contextlib.suppress(OSError):
            self._wake_in.send(b"\0")

    def run(self) -> None:
        """Keep a session going until `stop()`."""
        try:
            while not self.stopped:
                error: BaseException | None = None
                try:
                    self._serve()
                except Exception as exc:  # nothing ends the link but stop()
                    error = exc
                if self.stopped:
                    break
                self._stopping.wait(self._lost(error))
        finally:
            self._wake_in.close()
            self._wake_out.close()

    def stop(self) -> None:
        self.stopped = True
        self._stopping.set()
        self._wake()

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            raise self._no_connection() from None
        if self.ssl_context is None:
            return sock
        try:  # the handshake, blocking, within the same timeout
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def _serve(self) -> None:
        with (
            self._connect() as sub,
            self._connect() as cmd,
            selectors.DefaultSelector() as selector,
        ):
            socks = {Conn.SUB: sub, Conn.CMD: cmd}
            for conn, sock in socks.items():
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, conn)
            selector.register(self._wake_out, selectors.EVENT_READ, None)
            session = self._start_session()
            try:
                self._loop(session, socks, selector)
            finally:
                self._end_session("the link stopped")

    def _loop(
        self, session: _Session, socks: dict[Conn, socket.socket], selector: selectors.BaseSelector
    ) -> None:
        unsent = {conn: memoryview(b"") for conn in Conn}
        writing = dict.fromkeys(Conn, False)
        while not self.stopped:
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
            self._on_deadline(session)

    def _write(
        self, session: _Session, conn: Conn, sock: socket.socket, unsent: memoryview
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
            except _WOULD_BLOCK:
                return unsent  # (TLS: the same bytes are offered again, as it requires)
            if unsent:
                return unsent
            with self._lock:
                session.sent(conn)

    def _read(self, session: _Session, conn: Conn, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except _WOULD_BLOCK:
                return
            if not data:
                self._on_eof(session, conn)
                return
            self._on_data(session, conn, data)
            # TLS may hold decrypted bytes the selector cannot see: take them now.
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return

    def history(self) -> list[str] | None:
        """The shared history, or None if Redis cannot give it now."""
        waiter = self._request_history()
        if waiter is None:
            return None
        waiter.done.wait(HISTORY_TIMEOUT)
        return waiter.reply


def _drain(sock: socket.socket) -> None:
    """Empty the wake-up socket (the bytes only mean: look again)."""
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


class BlockingChat(ChatProcess[ws_blocking.WebSocket, RedisLink]):
    """The room is shared by every client's thread: one lock around it, held
    while its actions are carried out (they only queue, never wait)."""

    def __init__(self, settings: ChatSettings, monitor: Monitor | None = None) -> None:
        self.lock = threading.RLock()
        super().__init__(settings, RedisLink, monitor)

    def from_redis(self, envelope: str) -> None:
        with self.lock:
            super().from_redis(envelope)

    def handler(self, ws: ws_blocking.WebSocket) -> None:
        why = refusal(ws.request)
        if why is not None:
            ws.close(*why)
            return
        with self.lock:
            link, session = self.link, self.history_due()
        if link is not None and session is not None:
            history = link.history()  # (not under the lock: it waits for Redis)
            with self.lock:
                self.seed_history(session, history)
        with self.lock:
            client = self.arrive(ws, None, ws.request.headers.get_all("X-Forwarded-For"))
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


@contextmanager
def serving(settings: ChatSettings, monitor: Monitor) -> Iterator[ws_blocking.Handler]:
    """The chat's connection handler, with its ticker's thread and its Redis
    link's running until the end of the `with` (after the server closed)."""
    chat = BlockingChat(settings, monitor)
    stop = threading.Event()
    ticker = threading.Thread(target=chat.ticker, args=(stop,), daemon=True, name="chat-tick")
    ticker.start()
    redis = None
    if chat.link is not None:
        redis = threading.Thread(target=chat.link.run, daemon=True, name="redis")
        redis.start()
    try:
        yield chat.handler
    finally:
        stop.set()
        if chat.link is not None and redis is not None:
            chat.link.stop()
            redis.join(5)
