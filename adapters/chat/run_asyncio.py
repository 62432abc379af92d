"""The chat on the asyncio adapter: moves bytes between sockets, the room
and (with --redis) Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .. import asyncio as ws_asyncio
from .chat_process import AsyncChatProcess
from .monitor import Monitor
from .redis_link import CONNECT_TIMEOUT, READ_SIZE, AsyncRedisLinkBase, Waiter
from .redis_session import Conn, RedisSession
from .settings import ChatSettings

_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_Session = RedisSession[Waiter[asyncio.Event]]


class RedisLink(AsyncRedisLinkBase[asyncio.Event]):
    """The asyncio streams of a `RedisSession`: a reader and a writer task
    per connection and a timer, in a task group, so that any of them
    failing ends them all (and the session) together."""

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _new_event(self) -> asyncio.Event:
        return asyncio.Event()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
        # cancellation that races its timeout, and shutdown would hang.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    async def _connect(self) -> _Streams:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):  # (not wait_for: see `_wait`)
                if self.ssl_context is None:
                    return await asyncio.open_connection(self.host, self.port)
                return await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl_context, server_hostname=self.host
                )
        except TimeoutError:
            raise self._no_connection() from None

    async def _serve(self) -> None:
        sub = await self._connect()
        try:
            cmd = await self._connect()
        except BaseException:
            sub[1].transport.abort()
            raise
        streams = {Conn.SUB: sub, Conn.CMD: cmd}
        session = self._start_session()
        self._start_writers()
        try:
            async with asyncio.TaskGroup() as group:
                for conn, (reader, writer) in streams.items():
                    group.create_task(self._read(session, conn, reader))
                    group.create_task(self._write(session, conn, writer))
                group.create_task(self._tick(session))
        finally:
            self._end_session("the link stopped")
            for _, writer in streams.values():
                writer.transport.abort()  # not close(): a stalled peer would keep it

    async def _read(self, session: _Session, conn: Conn, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(READ_SIZE):
            self._on_data(session, conn, data)
        self._on_eof(session, conn)

    async def _write(self, session: _Session, conn: Conn, writer: asyncio.StreamWriter) -> None:
        """Write what the session says, never more than the transport's
        high-water mark ahead: drain() waits below it."""
        while True:
            while data := session.data_to_send(conn):
                writer.write(data)
                await writer.drain()
                session.sent(conn)
            await self._woken(conn)


@asynccontextmanager
async def serving(settings: ChatSettings, monitor: Monitor) -> AsyncIterator[ws_asyncio.Handler]:
    """The chat's connection handler, with its ticker and its Redis link
    running until the end of the `async with` (after the server closed)."""
    chat = AsyncChatProcess[ws_asyncio.WebSocket, RedisLink](settings, RedisLink, monitor)
    tasks = [asyncio.create_task(chat.ticker(asyncio.sleep))]
    if chat.link is not None:
        tasks.append(asyncio.create_task(chat.link.run()))
    try:
        yield chat.handler
    finally:
        if chat.link is not None:
            chat.link.stopped = True  # (ends its loop even if a cancel were lost)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5.0)
