"""The chat on the asyncio adapter: moves bytes between sockets, the room
and (with --redis) Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .. import asyncio as ws_asyncio
from .actions import AsyncChatActions
from .link import CONNECT_TIMEOUT, HISTORY_TIMEOUT, LinkState
from .redis_session import Conn, RedisSession, SessionError
from .service import (
    TICK,
    ChatSettings,
    server_options,
)

_Answer = asyncio.Future[list[str] | None]


class RedisLink(LinkState[_Answer]):
    """The asyncio streams of a `RedisSession`: a reader and a writer task
    per connection and a timer, in a task group, so that any of them
    failing ends them all (and the session) together."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._wake: dict[Conn, asyncio.Event] = {}

    async def run(self) -> None:
        """Keep a session going, forever (cancel the task to stop)."""
        loop = asyncio.get_running_loop()
        while not self.stopped:
            error: BaseException = SessionError("the session ended")
            try:
                await self._serve()
            except* Exception as group:  # a task group wraps what ended the session
                error = group
            await asyncio.sleep(self._lost(error, loop.time()))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        sub = await _connect(self.host, self.port)
        try:
            cmd = await _connect(self.host, self.port)
        except BaseException:
            sub[1].transport.abort()
            raise
        streams = {Conn.SUB: sub, Conn.CMD: cmd}
        session = self._start_session(loop.time())
        self._wake = {conn: asyncio.Event() for conn in Conn}
        try:
            async with asyncio.TaskGroup() as group:
                for conn, (reader, writer) in streams.items():
                    group.create_task(self._read(session, conn, reader))
                    group.create_task(self._write(session, conn, writer))
                group.create_task(self._tick(session))
        finally:
            for future in self._end_session("the link stopped"):
                if not future.done():
                    future.set_result(None)
            for _, writer in streams.values():
                writer.transport.abort()  # not close(): a stalled peer would keep it

    async def _read(
        self, session: RedisSession[_Answer], conn: Conn, reader: asyncio.StreamReader
    ) -> None:
        loop = asyncio.get_running_loop()
        while data := await reader.read(65536):
            now = loop.time()
            received = session.receive_data(conn, data, now)
            self._deliver_all(received.payloads, now)
            for future, answer in received.answers:
                if not future.done():  # it may have given up waiting
                    future.set_result(answer)
            self._check(session)
        session.receive_eof(conn)
        self._check(session)

    async def _write(
        self, session: RedisSession[_Answer], conn: Conn, writer: asyncio.StreamWriter
    ) -> None:
        """Write what the session says, never more than the transport's
        high-water mark ahead: drain() waits below it."""
        wake = self._wake[conn]
        while True:
            while data := session.data_to_send(conn):
                writer.write(data)
                await writer.drain()
                session.sent(conn)
            await wake.wait()
            wake.clear()

    async def _tick(self, session: RedisSession[_Answer]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, session.next_deadline() - loop.time()))
            session.handle_timeout(loop.time())
            self._wake_writers()
            self._check(session)

    def _wake_writers(self) -> None:
        for event in self._wake.values():
            event.set()

    def send(self, *commands: bytes) -> bool:
        """Queue without waiting; False if Redis is away or not keeping up
        (the chat then delivers to this process's clients)."""
        session = self.session
        if session is None or not session.send(commands, asyncio.get_running_loop().time()):
            return False
        self._wake_writers()
        return True

    async def history(self) -> list[str] | None:
        """The shared history, or None if Redis cannot give it now."""
        session = self.session
        loop = asyncio.get_running_loop()
        future: _Answer = loop.create_future()
        if session is None or not session.request_history(future, loop.time()):
            return None
        self._wake_writers()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
        # cancellation that races its timeout, and shutdown would hang.
        try:
            async with asyncio.timeout(HISTORY_TIMEOUT):
                return await future
        except TimeoutError:
            return None


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):  # (not wait_for: see `history`)
            return await asyncio.open_connection(host, port)
    except TimeoutError:
        raise SessionError(f"no connection to {host}:{port} in {CONNECT_TIMEOUT:g} s") from None


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
        if chat.redis_link is not None:
            chat.redis_link.stopped = True  # (ends its loop even if a cancel were lost)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5.0)
