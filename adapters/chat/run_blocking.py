"""The chat on the blocking adapter: a thread per client (the adapter's),
one lock around the room, and (with --redis) two threads for Redis."""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable

from .. import blocking as ws_blocking
from .._common import ConnectionClosed
from .actions import ChatActions
from .link import LinkState
from .resp import (
    ProtocolError,
    RedisError,
    Reply,
    ReplyParser,
    Subscription,
    command,
    text_items,
)
from .service import (
    CHANNEL,
    HISTORY_KEY,
    TICK,
    WS_PATH,
    ChatSettings,
    server_options,
)


class _Waiter:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Reply = None


class RedisLink(LinkState):
    """The blocking sockets of `LinkState`, served by a thread."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._lock = threading.Lock()  # guards the command socket and the waiters
        self._commands: socket.socket | None = None
        self._waiting: deque[_Waiter | None] = deque()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except (OSError, ProtocolError, RedisError) as error:
                reason = str(error) or type(error).__name__
            else:
                reason = "connection closed"
            if self._stop.is_set():
                return
            delay = self._lost(reason)
            self._down()
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        self._down()

    def _session(self) -> None:
        with (
            socket.create_connection((self.host, self.port), timeout=5) as sub,
            socket.create_connection((self.host, self.port), timeout=5) as commands,
        ):
            sub.settimeout(None)
            commands.settimeout(None)
            sub.sendall(command("SUBSCRIBE", CHANNEL))
            with self._lock:
                if self.db:
                    commands.sendall(command("SELECT", self.db))
                    self._waiting.append(None)
                self._commands = commands
            reader = threading.Thread(target=self._read_replies, args=(commands,), daemon=True)
            reader.start()
            subscription = Subscription()
            while data := sub.recv(65536):
                if self._stop.is_set():
                    return
                for payload in subscription.feed(data):
                    self.deliver(payload)
                self._confirm(subscription)

    def _read_replies(self, commands: socket.socket) -> None:
        parser = ReplyParser()
        try:
            while data := commands.recv(65536):
                for reply in parser.feed(data):
                    with self._lock:
                        waiter = self._waiting.popleft() if self._waiting else None
                    if waiter is not None:
                        waiter.reply = reply
                        waiter.done.set()
        except (OSError, ProtocolError):
            pass

    def _down(self) -> None:
        with self._lock:
            self.up = False
            if self._commands is not None:
                self._commands.close()
                self._commands = None
            while self._waiting:
                waiter = self._waiting.popleft()
                if waiter is not None:
                    waiter.done.set()

    def send(self, *commands: bytes, waiter: _Waiter | None = None) -> bool:
        """Write commands; False if Redis is away. The replies are skipped,
        but for the last one when a `waiter` is given."""
        with self._lock:
            if not self.up or self._commands is None:
                return False
            try:
                self._commands.sendall(b"".join(commands))
            except OSError:
                return False
            self._waiting.extend([None] * (len(commands) - 1))
            self._waiting.append(waiter)
        return True

    def history(self) -> list[str] | None:
        waiter = _Waiter()
        if not self.send(command("LRANGE", HISTORY_KEY, -self.history_length, -1), waiter=waiter):
            return None
        waiter.done.wait(1.0)
        return text_items(waiter.reply)


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
        # close() waits for the close handshake: not under the lock.
        threading.Thread(target=peer.close, args=(code, reason), daemon=True).start()

    def from_redis(self, envelope: str) -> None:
        with self.lock:
            super().from_redis(envelope)

    def handler(self, ws: ws_blocking.WebSocket) -> None:
        if ws.request is None or ws.request.path != WS_PATH:
            ws.close(1008, f"the chat is at {WS_PATH}")
            return
        history = None if self.link is None else self.link.history()
        with self.lock:
            client = self.arrive(ws, history)
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
            threads.append(threading.Thread(target=chat.link.run, daemon=True))
        for thread in threads:
            thread.start()
        started(server.port)
        while not stop.wait(0.5):
            pass
        server.shutdown()
        if chat.link is not None:
            chat.link.stop()
