"""The chat on the asyncio adapter: moves bytes between sockets, the room
and (with --redis) Redis."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .. import asyncio as ws_asyncio
from .actions import AsyncChatActions
from .link import LinkState
from .resp import (
    ProtocolError,
    RedisError,
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


class RedisLink(LinkState):
    """The asyncio streams of `LinkState`."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[asyncio.Future[object] | None] = deque()

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except (OSError, ProtocolError, RedisError, asyncio.IncompleteReadError) as error:
                reason = str(error) or type(error).__name__
            else:
                reason = "connection closed"
            delay = self._lost(reason)
            self._down()
            await asyncio.sleep(delay)

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
                subscription = Subscription()
                while data := await sub_reader.read(65536):
                    for payload in subscription.feed(data):
                        self.deliver(payload)
                    self._confirm(subscription)
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


class AsyncioChat(AsyncChatActions[ws_asyncio.WebSocket]):
    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self.redis_link: RedisLink | None = None
        if settings.redis is not None:
            link = RedisLink(settings.redis, settings.history, self.from_redis)
            self.redis = self.link = self.redis_link = link
        self._background: set[asyncio.Task[None]] = set()

    def close_later(self, peer: ws_asyncio.WebSocket, code: int, reason: str) -> None:
        task = asyncio.ensure_future(peer.close(code, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
    if chat.redis_link is not None:
        tasks.append(asyncio.create_task(chat.redis_link.run()))
    started(server.port)
    try:
        await stop.wait()
    finally:
        await server.close()
        for task in tasks:
            task.cancel()
