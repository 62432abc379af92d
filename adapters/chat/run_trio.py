"""The chat on the trio adapter: moves bytes between sockets, the room and
(with --redis) Redis."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from .. import trio as ws_trio
from .actions import AsyncChatActions
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
    ChatSettings,
    server_options,
)

_LINK_ERRORS = (
    OSError,
    ProtocolError,
    RedisError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class _Waiter:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: Reply = None


class RedisLink(LinkState):
    """The trio streams of `LinkState`."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._outbox: list[bytes] = []
        self._wake = trio.Event()
        self._waiting: deque[_Waiter | None] = deque()

    async def run(self) -> None:
        while True:
            reason = "connection closed"
            try:
                await self._session()
            except* _LINK_ERRORS as group:  # the session's nursery groups them
                first = group.exceptions[0]
                reason = str(first) or type(first).__name__
            delay = self._lost(reason)
            self._down()
            await trio.sleep(delay)

    async def _session(self) -> None:
        async with (
            await trio.open_tcp_stream(self.host, self.port) as sub,
            await trio.open_tcp_stream(self.host, self.port) as commands,
            trio.open_nursery() as nursery,
        ):
            await sub.send_all(command("SUBSCRIBE", CHANNEL))
            if self.db:
                self._outbox.insert(0, command("SELECT", self.db))
                self._waiting.appendleft(None)
            nursery.start_soon(self._write_commands, commands)
            nursery.start_soon(self._read_replies, commands)
            subscription = Subscription()
            while data := await sub.receive_some(65536):
                for payload in subscription.feed(data):
                    self.deliver(payload)
                if subscription.confirmed and not self.up:
                    self._wake.set()  # commands queued while Redis was away
                self._confirm(subscription)
            nursery.cancel_scope.cancel()

    async def _write_commands(self, stream: trio.SocketStream) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._outbox:
                data, self._outbox = b"".join(self._outbox), []
                await stream.send_all(data)

    async def _read_replies(self, stream: trio.SocketStream) -> None:
        parser = ReplyParser()
        while data := await stream.receive_some(65536):
            for reply in parser.feed(data):
                waiter = self._waiting.popleft() if self._waiting else None
                if waiter is not None:
                    waiter.reply = reply
                    waiter.done.set()
        raise trio.BrokenResourceError("redis closed the connection")

    def _down(self) -> None:
        self.up = False
        self._outbox.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if waiter is not None:
                waiter.done.set()

    def send(self, *commands: bytes) -> bool:
        """Fire and forget; False if Redis is away."""
        if not self.up:
            return False
        self._outbox.extend(commands)
        self._waiting.extend([None] * len(commands))
        self._wake.set()
        return True

    async def history(self) -> list[str] | None:
        if not self.up:
            return None
        waiter = _Waiter()
        self._outbox.append(command("LRANGE", HISTORY_KEY, -self.history_length, -1))
        self._waiting.append(waiter)
        self._wake.set()
        with trio.move_on_after(1.0):
            await waiter.done.wait()
        return text_items(waiter.reply)


class TrioChat(AsyncChatActions[ws_trio.WebSocket]):
    def __init__(self, settings: ChatSettings, nursery: trio.Nursery) -> None:
        super().__init__(settings)
        self.nursery = nursery
        self.redis_link: RedisLink | None = None
        if settings.redis is not None:
            link = RedisLink(settings.redis, settings.history, self.from_redis)
            self.redis = self.link = self.redis_link = link

    def close_later(self, peer: ws_trio.WebSocket, code: int, reason: str) -> None:
        self.nursery.start_soon(peer.close, code, reason)

    async def ticker(self) -> None:
        while True:
            await trio.sleep(TICK)
            self.tick()


async def serve_chat(
    settings: ChatSettings, started: Callable[[int], None], stop: trio.Event
) -> None:
    """Run until `stop` is set, then close every client with 1001."""
    async with trio.open_nursery() as nursery:
        chat = TrioChat(settings, nursery)
        server: ws_trio.Server = await nursery.start(
            lambda task_status: ws_trio.serve(
                chat.handler,
                settings.host,
                settings.port,
                task_status=task_status,
                **server_options(settings),
            )
        )
        nursery.start_soon(chat.ticker)
        if chat.redis_link is not None:
            nursery.start_soon(chat.redis_link.run)
        started(server.port)
        await stop.wait()
        await server.aclose()
        nursery.cancel_scope.cancel()
