"""The chat on the trio adapter: moves bytes between sockets, the room and
(with --redis) Redis."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .. import trio as ws_trio
from .actions import AsyncChatActions
from .link import CONNECT_TIMEOUT, HISTORY_TIMEOUT, LinkState
from .redis_session import Conn, RedisSession, SessionError
from .service import (
    TICK,
    ChatSettings,
    server_options,
)


class _Waiter:
    """A newcomer waiting for the shared history."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: list[str] | None = None


class RedisLink(LinkState[_Waiter]):
    """The trio streams of a `RedisSession`: a reader and a writer task per
    connection and a timer, in a nursery, so that any of them failing ends
    them all (and the session) together."""

    expected_errors = (
        *LinkState.expected_errors,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
    )

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._wake: dict[Conn, trio.Event] = {}

    async def run(self) -> None:
        """Keep a session going, forever (cancel the scope to stop)."""
        while True:
            error: BaseException = SessionError("the session ended")
            try:
                await self._serve()
            except* Exception as group:  # the nursery wraps what ended the session
                error = group
            await trio.sleep(self._lost(error, trio.current_time()))

    async def _serve(self) -> None:
        sub = await _connect(self.host, self.port)
        try:
            cmd = await _connect(self.host, self.port)
        except BaseException:
            await trio.aclose_forcefully(sub)
            raise
        streams = {Conn.SUB: sub, Conn.CMD: cmd}
        session = self._start_session(trio.current_time())
        self._wake = {conn: trio.Event() for conn in Conn}
        try:
            async with trio.open_nursery() as nursery:
                for conn, stream in streams.items():
                    nursery.start_soon(self._read, session, conn, stream)
                    nursery.start_soon(self._write, session, conn, stream)
                nursery.start_soon(self._tick, session)
        finally:
            for waiter in self._end_session("the link stopped"):
                waiter.done.set()
            for stream in streams.values():
                await trio.aclose_forcefully(stream)  # a stalled peer must not keep it

    async def _read(
        self, session: RedisSession[_Waiter], conn: Conn, stream: trio.SocketStream
    ) -> None:
        while data := await stream.receive_some(65536):
            now = trio.current_time()
            received = session.receive_data(conn, data, now)
            self._deliver_all(received.payloads, now)
            for waiter, answer in received.answers:
                waiter.reply = answer
                waiter.done.set()
            self._check(session)
        session.receive_eof(conn)
        self._check(session)

    async def _write(
        self, session: RedisSession[_Waiter], conn: Conn, stream: trio.SocketStream
    ) -> None:
        while True:
            while data := session.data_to_send(conn):
                await stream.send_all(data)
                session.sent(conn)
            await self._wake[conn].wait()
            self._wake[conn] = trio.Event()

    async def _tick(self, session: RedisSession[_Waiter]) -> None:
        while True:
            await trio.sleep_until(session.next_deadline())
            session.handle_timeout(trio.current_time())
            self._wake_writers()
            self._check(session)

    def _wake_writers(self) -> None:
        for event in self._wake.values():
            event.set()

    def send(self, *commands: bytes) -> bool:
        """Queue without waiting; False if Redis is away or not keeping up
        (the chat then delivers to this process's clients)."""
        session = self.session
        if session is None or not session.send(commands, trio.current_time()):
            return False
        self._wake_writers()
        return True

    async def history(self) -> list[str] | None:
        """The shared history, or None if Redis cannot give it now."""
        session = self.session
        waiter = _Waiter()
        if session is None or not session.request_history(waiter, trio.current_time()):
            return None
        self._wake_writers()
        with trio.move_on_after(HISTORY_TIMEOUT):
            await waiter.done.wait()
        return waiter.reply


async def _connect(host: str, port: int) -> trio.SocketStream:
    with trio.move_on_after(CONNECT_TIMEOUT):
        return await trio.open_tcp_stream(host, port)
    raise SessionError(f"no connection to {host}:{port} in {CONNECT_TIMEOUT:g} s")


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
