"""The face of a connection that the application sees, the same in every
backend: its read-only properties, and for the async backends the
iteration and the handler's run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from wsproto_core import HandshakeRequest, State

from ._common import Message
from ._driver import Driver, close_after_handler
from .errors import ConnectionClosedOK


class ConnectionView:
    """The read-only face of a connection, the same in every backend."""

    _driver: Driver

    @property
    def request(self) -> HandshakeRequest:
        """The upgrade request this server connection accepted (a server
        handler always has one; a client connection has none)."""
        request = self._driver.request
        if request is None:
            raise AttributeError("a client connection has no upgrade request")
        return request

    @property
    def subprotocol(self) -> str | None:
        return self._driver.core.subprotocol

    @property
    def state(self) -> State:
        return self._driver.core.state

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions in effect, as the server's response spelled them
        (such as "permessage-deflate; server_max_window_bits=12")."""
        return tuple(str(extension) for extension in self._driver.core.extensions)

    @property
    def close_code(self) -> int | None:
        """How the connection ended: the peer's close code, ours if it
        failed, 1006 if no close frame was exchanged; None while open."""
        return self._driver.close_code

    @property
    def close_reason(self) -> str:
        return self._driver.core.close_reason


class AsyncConnectionView(ConnectionView):
    """Receiving on the async backends: each says how it waits for more
    (`_wait_for_messages`) and how its reader learns that the application
    made room for more (`_reading_resumed`)."""

    async def recv(self) -> Message:
        """The next whole message: str for text, bytes for binary."""
        message = self._take_waiting()
        if message is not None:
            return message
        driver = self._driver
        driver.begin_receive()
        try:
            while (message := driver.take_message()) is None:
                await self._wait_for_messages()
            if driver.resumed:
                self._reading_resumed()
            return message
        finally:
            driver.end_receive()

    async def recv_streaming(self) -> AsyncIterator[Message]:
        """Yield the next message in pieces as they arrive (bounded memory
        for messages of any size)."""
        driver = self._driver
        driver.begin_receive()
        try:
            for part in driver.take_leftover():  # left by a cancelled recv()
                yield part
            while True:
                while (fragment := driver.take_fragment()) is None:
                    await self._wait_for_messages()
                if driver.resumed:
                    self._reading_resumed()
                yield fragment.data
                if fragment.final:
                    return
        finally:
            driver.end_receive()

    async def _wait_for_messages(self) -> None:
        """Wait until there may be more to take (the caller looks again);
        raise `closed_error()` if the connection is over."""
        raise NotImplementedError  # pragma: no cover - each backend implements it

    def _reading_resumed(self) -> None:
        """The driver wants data again (`driver.resumed`): tell the reader."""
        raise NotImplementedError  # pragma: no cover - each backend implements it

    async def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError  # pragma: no cover - each backend implements it

    async def wait_closed(self) -> None:
        raise NotImplementedError  # pragma: no cover - each backend implements it

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    def _take_waiting(self) -> Message | None:
        """The common case of receiving, a whole message already waiting,
        taken by a plain call: `async for` then makes no `recv()` coroutine
        per message. None when there is none (or another receive is under
        way, which `recv()` refuses)."""
        driver = self._driver
        if driver.receiving:
            return None
        message = driver.take_message()
        if message is not None and driver.resumed:
            self._reading_resumed()
        return message

    async def __anext__(self) -> Message:
        message = self._take_waiting()
        if message is not None:
            return message
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None


async def run_handler(handler: Callable[[Any], Awaitable[None]], ws: AsyncConnectionView) -> None:
    """Run a server's handler on `ws`, then close it as `close_after_handler`
    says and wait for the end."""
    try:
        await handler(ws)
    except Exception as error:
        await ws.close(*close_after_handler(error))
    else:
        await ws.close()
    await ws.wait_closed()
