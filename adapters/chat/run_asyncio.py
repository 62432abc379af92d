"""The chat on the asyncio adapter: moves bytes between sockets, the room
and (with --redis) Redis."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .. import asyncio as ws_asyncio
from .._common import ConnectionClosed
from .actions import ChatActions
from .resp import (
    ProtocolError,
    RedisError,
    ReplyParser,
    command,
    parse_redis_url,
    pushed_message,
    text_items,
)
from .service import (
    CHANNEL,
    HISTORY_KEY,
    TICK,
    WS_PATH,
    ChatSettings,
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


class AsyncioChat(ChatActions[ws_asyncio.WebSocket]):
    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self.link: RedisLink | None = None
        if settings.redis is not None:
            self.redis = self.link = RedisLink(settings.redis, settings.history, self.from_redis)
        self._background: set[asyncio.Task[None]] = set()

    def close_later(self, peer: ws_asyncio.WebSocket, code: int, reason: str) -> None:
        task = asyncio.ensure_future(peer.close(code, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def handler(self, ws: ws_asyncio.WebSocket) -> None:
        if ws.request is None or ws.request.path != WS_PATH:
            await ws.close(1008, f"the chat is at {WS_PATH}")
            return
        history = None if self.link is None else await self.link.history()
        client = self.arrive(ws, history)
        try:
            async for message in ws:
                if not self.receive(client, message):
                    break
        except ConnectionClosed:
            pass
        finally:
            self.leave(client)

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.tick()


async def serve_chat(
    settings: ChatSettings, started: Callable[[int], None], stop: asyncio.Event
) -> None:
    """Run until `stop` is set, then close every client with 1001."""
    chat = AsyncioChat(settings)
    server = await ws_asyncio.serve(
        chat.handler, settings.host, settings.port, **server_options(settings)
    )
    tasks = [asyncio.create_task(chat.ticker())]
    if chat.link is not None:
        tasks.append(asyncio.create_task(chat.link.run()))
    started(server.port)
    try:
        await stop.wait()
    finally:
        await server.close()
        for task in tasks:
            task.cancel()
