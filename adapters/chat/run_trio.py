"""The chat on the trio adapter: moves bytes between sockets, the room and
(with --redis) Redis."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable

import trio

from .. import trio as ws_trio
from .._common import ConnectionClosed
from .resp import (
    ProtocolError,
    RedisError,
    Reply,
    ReplyParser,
    command,
    parse_redis_url,
    pushed_message,
    text_items,
)
from .room import Action, Broadcast, Close, Publish, Room, RoomConfig, Send, Store
from .service import (
    CHANNEL,
    HISTORY_KEY,
    TICK,
    WS_PATH,
    ChatSettings,
    fan_out,
    logger,
    server_options,
)

BACKOFF_MAX = 10.0
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


class RedisLink:
    """Two connections to Redis (one subscribed, one for commands), kept up
    with backoff; see the asyncio chat's twin for the reasoning."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        self.host, self.port, self.db = parse_redis_url(url)
        self.history_length = history
        self.deliver = deliver
        self.up = False
        self._outbox: list[bytes] = []
        self._wake = trio.Event()
        self._waiting: deque[_Waiter | None] = deque()

    async def run(self) -> None:
        delay = 0.25
        while True:
            reason = "connection closed"
            try:
                await self._session()
            except* _LINK_ERRORS as group:  # the session's nursery groups them
                first = group.exceptions[0]
                reason = str(first) or type(first).__name__
            if self.up or delay == 0.25:
                logger.warning("redis unavailable (%s); retrying with backoff", reason)
            self._down()
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

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
            parser = ReplyParser()
            while data := await sub.receive_some(65536):
                for reply in parser.feed(data):
                    pushed = pushed_message(reply)
                    if pushed is not None:
                        self.deliver(pushed)
                    elif isinstance(reply, list) and reply[:1] == [b"subscribe"]:
                        if not self.up:
                            logger.info("redis connected at %s:%d", self.host, self.port)
                        self.up = True
                        self._wake.set()
                    elif isinstance(reply, RedisError):
                        raise reply
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


class TrioChat:
    def __init__(self, settings: ChatSettings, nursery: trio.Nursery) -> None:
        self.settings = settings
        self.nursery = nursery
        self.room = Room(
            RoomConfig(
                history=settings.history,
                rate=settings.rate,
                burst=settings.burst,
                worker=settings.worker,
                shared=settings.redis is not None,
            )
        )
        self.clients: dict[int, ws_trio.WebSocket] = {}
        self.ids = itertools.count(1)
        self.redis: RedisLink | None = None
        if settings.redis is not None:
            self.redis = RedisLink(settings.redis, settings.history, self._from_redis)

    def _from_redis(self, envelope: str) -> None:
        self.perform(self.room.deliver(envelope, time.time()))

    def perform(self, actions: list[Action]) -> None:
        limit = self.settings.client_buffer
        for action in actions:
            if type(action) is Broadcast:
                for client in fan_out(action.text, self.clients.items(), limit):
                    self._drop(client, 1013, "too slow: messages piled up")
            elif type(action) is Send:
                peer = self.clients.get(action.client)
                if peer is not None:
                    for client in fan_out(action.text, [(action.client, peer)], limit):
                        self._drop(client, 1013, "too slow: messages piled up")
            elif type(action) is Publish:
                redis = self.redis
                if redis is None or not redis.send(command("PUBLISH", CHANNEL, action.text)):
                    self.perform(self.room.deliver(action.text, time.time()))
            elif type(action) is Store:
                if self.redis is not None:
                    length = self.settings.history
                    self.redis.send(
                        command("RPUSH", HISTORY_KEY, action.text),
                        command("LTRIM", HISTORY_KEY, -length, -1),
                    )
            elif type(action) is Close:
                self._drop(action.client, action.code, action.reason)

    def _drop(self, client: int, code: int, reason: str) -> None:
        peer = self.clients.pop(client, None)
        if peer is not None:
            self.perform(self.room.disconnect(client, time.time()))
            self.nursery.start_soon(peer.close, code, reason)

    async def handler(self, ws: ws_trio.WebSocket) -> None:
        if ws.request is None or ws.request.path != WS_PATH:
            await ws.close(1008, f"the chat is at {WS_PATH}")
            return
        client = next(self.ids)
        history = None if self.redis is None else await self.redis.history()
        self.clients[client] = ws
        self.perform(self.room.connect(client, time.time(), history))
        try:
            async for message in ws:
                if client not in self.clients:
                    break  # dropped as too slow
                self.perform(self.room.receive(client, message, time.time()))
        except ConnectionClosed:
            pass
        finally:
            if self.clients.pop(client, None) is not None:
                self.perform(self.room.disconnect(client, time.time()))

    async def ticker(self) -> None:
        while True:
            await trio.sleep(TICK)
            self.perform(self.room.tick(time.time()))


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
        if chat.redis is not None:
            nursery.start_soon(chat.redis.run)
        started(server.port)
        await stop.wait()
        await server.aclose()
        nursery.cancel_scope.cancel()
