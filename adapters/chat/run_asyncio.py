"""The chat on the asyncio adapter: moves bytes between sockets, the room
and (with --redis) Redis."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Coroutine

from .. import asyncio as ws_asyncio
from .._common import ConnectionClosed
from .resp import (
    ProtocolError,
    RedisError,
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


class RedisLink:
    """Two connections to Redis (one subscribed, one for commands), kept up
    with backoff. While Redis is away, `up` is False and the chat carries on
    with the clients of this process alone."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        self.host, self.port, self.db = parse_redis_url(url)
        self.history_length = history
        self.deliver = deliver
        self.up = False
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[asyncio.Future[object] | None] = deque()

    async def run(self) -> None:
        delay = 0.25
        while True:
            try:
                await self._session()
            except (OSError, ProtocolError, RedisError, asyncio.IncompleteReadError) as error:
                reason = str(error) or type(error).__name__
            else:
                reason = "connection closed"
            if self.up or delay == 0.25:
                logger.warning("redis unavailable (%s); retrying with backoff", reason)
            self._down()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        sub_reader, sub_writer = await asyncio.open_connection(self.host, self.port)
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            sub_writer.close()
            raise
        try:
            sub_writer.write(command("SUBSCRIBE", CHANNEL))
            if self.db:
                writer.write(command("SELECT", self.db))
                self._waiting.append(None)
            self._writer = writer
            replies = asyncio.create_task(self._read_replies(reader))
            try:
                parser = ReplyParser()
                while True:
                    data = await sub_reader.read(65536)
                    if not data:
                        return
                    for reply in parser.feed(data):
                        pushed = pushed_message(reply)
                        if pushed is not None:
                            self.deliver(pushed)
                        elif isinstance(reply, list) and reply[:1] == [b"subscribe"]:
                            if not self.up:
                                logger.info("redis connected at %s:%d", self.host, self.port)
                            self.up = True
                        elif isinstance(reply, RedisError):
                            raise reply
            finally:
                replies.cancel()
        finally:
            sub_writer.close()
            writer.close()

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        parser = ReplyParser()
        while data := await reader.read(65536):
            for reply in parser.feed(data):
                future = self._waiting.popleft() if self._waiting else None
                if future is not None and not future.done():
                    future.set_result(reply)

    def _down(self) -> None:
        self.up = False
        self._writer = None
        while self._waiting:
            future = self._waiting.popleft()
            if future is not None and not future.done():
                future.set_result(None)

    def send(self, *commands: bytes) -> bool:
        """Fire and forget; False if Redis is away."""
        if not self.up or self._writer is None:
            return False
        self._writer.write(b"".join(commands))
        self._waiting.extend([None] * len(commands))
        return True

    async def history(self) -> list[str] | None:
        """The shared history, or None if Redis cannot give it now."""
        if not self.up or self._writer is None:
            return None
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._writer.write(command("LRANGE", HISTORY_KEY, -self.history_length, -1))
        self._waiting.append(future)
        try:
            reply = await asyncio.wait_for(future, 1.0)
        except TimeoutError:
            return None
        return text_items(reply)  # type: ignore[arg-type]


class AsyncioChat:
    def __init__(self, settings: ChatSettings) -> None:
        self.settings = settings
        self.room = Room(
            RoomConfig(
                history=settings.history,
                rate=settings.rate,
                burst=settings.burst,
                worker=settings.worker,
                shared=settings.redis is not None,
            )
        )
        self.clients: dict[int, ws_asyncio.WebSocket] = {}
        self.ids = itertools.count(1)
        self.redis: RedisLink | None = None
        if settings.redis is not None:
            self.redis = RedisLink(settings.redis, settings.history, self._from_redis)
        self._background: set[asyncio.Task[None]] = set()

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _from_redis(self, envelope: str) -> None:
        self.perform(self.room.deliver(envelope, time.time()))

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is Broadcast:
                slow = fan_out(action.text, self.clients.items(), self.settings.client_buffer)
                for client in slow:
                    self._drop(client, 1013, "too slow: messages piled up")
            elif type(action) is Send:
                peer = self.clients.get(action.client)
                if peer is not None:
                    slow = fan_out(
                        action.text, [(action.client, peer)], self.settings.client_buffer
                    )
                    for client in slow:
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
            self._spawn(peer.close(code, reason))

    async def handler(self, ws: ws_asyncio.WebSocket) -> None:
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
            await asyncio.sleep(TICK)
            self.perform(self.room.tick(time.time()))


async def serve_chat(
    settings: ChatSettings, started: Callable[[int], None], stop: asyncio.Event
) -> None:
    """Run until `stop` is set, then close every client with 1001."""
    chat = AsyncioChat(settings)
    server = await ws_asyncio.serve(
        chat.handler, settings.host, settings.port, **server_options(settings)
    )
    tasks = [asyncio.create_task(chat.ticker())]
    if chat.redis is not None:
        tasks.append(asyncio.create_task(chat.redis.run()))
    started(server.port)
    try:
        await stop.wait()
    finally:
        await server.close()
        for task in tasks:
            task.cancel()
