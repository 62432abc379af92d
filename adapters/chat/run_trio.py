"""The chat on the trio adapter: moves bytes between sockets, the room and
(with --redis) Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .. import trio as ws_trio
from .chat_process import AsyncChatProcess
from .monitor import Monitor
from .redis_link import CONNECT_TIMEOUT, READ_SIZE, AsyncRedisLinkBase, Waiter
from .redis_session import Conn, RedisSession
from .settings import ChatSettings

_Session = RedisSession[Waiter[trio.Event]]


class RedisLink(AsyncRedisLinkBase[trio.Event]):
    """The trio streams of a `RedisSession`: a reader and a writer task per
    connection and a timer, in a nursery, so that any of them failing ends
    them all (and the session) together."""

    expected_errors = (
        *AsyncRedisLinkBase.expected_errors,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
    )

    def _now(self) -> float:
        return trio.current_time()

    def _new_event(self) -> trio.Event:
        return trio.Event()

    async def _sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def _wait(self, event: trio.Event, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await event.wait()

    async def _connect(self) -> trio.abc.Stream:
        with trio.move_on_after(CONNECT_TIMEOUT):
            if self.ssl_context is None:
                return await trio.open_tcp_stream(self.host, self.port)
            stream = await trio.open_ssl_over_tcp_stream(
                self.host, self.port, ssl_context=self.ssl_context
            )
            try:
                await stream.do_handshake()  # (within the timeout, its failure here)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return stream
        raise self._no_connection()

    async def _serve(self) -> None:
        sub = await self._connect()
        try:
            cmd = await self._connect()
        except BaseException:
            await trio.aclose_forcefully(sub)
            raise
        streams = {Conn.SUB: sub, Conn.CMD: cmd}
        session = self._start_session()
        self._start_writers()
        try:
            async with trio.open_nursery() as nursery:
                for conn, stream in streams.items():
                    nursery.start_soon(self._read, session, conn, stream)
                    nursery.start_soon(self._write, session, conn, stream)
                nursery.start_soon(self._tick, session)
        finally:
            self._end_session("the link stopped")
            for stream in streams.values():
                await trio.aclose_forcefully(stream)  # a stalled peer must not keep it

    async def _read(self, session: _Session, conn: Conn, stream: trio.abc.Stream) -> None:
        while data := await stream.receive_some(READ_SIZE):
            self._on_data(session, conn, bytes(data))
        self._on_eof(session, conn)

    async def _write(self, session: _Session, conn: Conn, stream: trio.abc.Stream) -> None:
        while True:
            while data := session.data_to_send(conn):
                await stream.send_all(data)
                session.sent(conn)
            await self._woken(conn)


@asynccontextmanager
async def serving(settings: ChatSettings, monitor: Monitor) -> AsyncIterator[ws_trio.Handler]:
    """The chat's connection handler, with its ticker and its Redis link
    running until the end of the `async with` (after the server closed)."""
    chat = AsyncChatProcess[ws_trio.WebSocket, RedisLink](settings, RedisLink, monitor)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(chat.ticker, trio.sleep)
        if chat.link is not None:
            nursery.start_soon(chat.link.run)
        try:
            yield chat.handler
        finally:
            nursery.cancel_scope.cancel()
