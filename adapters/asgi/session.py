"""One ASGI WebSocket connection under uvicorn: the application's
`receive` and `send`, over an asyncio `WebSocket` whose upgrade request
waits for the application's answer.

Everything the connection does (limits, timers, backpressure, the close
handshake) is the shared driver's, as in every other backend. What this
module adds is the translation between ASGI messages and the driver's
calls, and where the ASGI specification leaves room, the choices uvicorn's
own WebSocket classes make, so that switching `--ws` changes nothing an
application can see. The exceptions, and why:

- A connection that ends without a close frame after the accept reports
  1005 (the ASGI rule: "no code received"), as uvicorn's classes do; one
  our core ends (a protocol violation, a message over `ws_max_size`, a
  keepalive timeout) reports the code and reason we sent, where uvicorn's
  wsproto class reports 1005 for some of them.
- An application that returns after accepting gets a clean close (1000),
  and one that raises gets 1011; uvicorn's classes drop TCP in both cases,
  which the client sees as 1006.
- Server shutdown sends 1012 and then waits for the client's answer
  (bounded by the close timeout) instead of dropping TCP at once.
- A denial response is written when its last body chunk comes, so an
  application that stops halfway still gets a clean 500.
- An accept naming a subprotocol the client did not offer, or setting a
  header the handshake writes itself (Upgrade, Connection, the
  Sec-WebSocket-Accept and -Extensions), raises in the app (so 500), where
  uvicorn's classes send it and the client then fails the handshake. A
  Sec-WebSocket-Protocol header is taken as the subprotocol, as they do.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)

from wsproto_core import HandshakeRequest, ServerConnection, State
from wsproto_core.events import Event
from wsproto_core.frames import CloseCode

from .._common import Settings
from .._driver import CloseStep, Driver, Wake
from ..asyncio.connection import WebSocket
from ..errors import ConnectionClosed
from .scope import Scope, websocket_scope

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

ASGIMessage = dict[str, Any]
HeaderList = Iterable[Sequence[bytes]]

logger = logging.getLogger("uvicorn.error")  # where uvicorn's own classes log


# Fields of the 101 response that the handshake writes itself; an app
# that sets one again would break the handshake.
_HANDSHAKE_FIELDS = frozenset(
    {"connection", "upgrade", "sec-websocket-accept", "sec-websocket-extensions"}
)


class Phase(enum.Enum):
    """Where the application is in the ASGI conversation."""

    CONNECTING = "connecting"  # it has not answered the upgrade request
    RESPONDING = "responding"  # it started a denial response; body to come
    OPEN = "open"  # it accepted
    DONE = "done"  # it sent its close, or its denial response is complete


class AsgiWebSocket(WebSocket):
    """A server connection whose handshake the ASGI application decides."""

    def __init__(
        self,
        core: ServerConnection,
        settings: Settings,
        *,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
    ) -> None:
        super().__init__(core, settings)
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self.phase = Phase.CONNECTING
        self.scope: Scope | None = None
        self._connect_delivered = False
        # Set when the app can no longer be answered by this connection
        # (the transport is gone, or the server answered in its place):
        # every send raises ClientDisconnected, as in uvicorn.
        self._lost = False
        # The disconnect the app gets once it has taken `_backlog` (the
        # messages that had arrived before its close), when we decided it.
        self._ended: tuple[int, str] | None = None
        self._backlog: deque[ASGIMessage] | None = None  # (made at the close: memory)
        self._denial: tuple[int, list[tuple[str, str]], bytearray] | None = None

    # -- the request: the app decides ----------------------------------------

    def _on_request(self, driver: Driver, request: HandshakeRequest) -> list[Event] | None:
        """Leave the request pending (None) and start the app, which
        answers with `websocket.accept`, `websocket.close` or a denial."""
        transport = self._transport
        assert transport is not None
        self.scope = websocket_scope(
            request,
            scheme="wss" if is_ssl(transport) else "ws",
            server=get_local_addr(transport),
            client=get_remote_addr(transport),
            root_path=self._config.root_path,
            asgi_version=self._config.asgi_version,
            state=self._app_state,
        )
        task = self._loop.create_task(self.run_app())
        tasks = self._server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return None

    async def run_app(self) -> None:
        """Run the application, and answer for it when it did not: 500
        before its answer, a close after (1000 if it returned, 1011 if it
        raised), as the module's docstring says."""
        app: Any = self._config.loaded_app
        failed = False
        try:
            result = await app(self.scope, self.receive, self.send_message)
        except ClientDisconnected:
            pass
        except BaseException:  # (uvicorn's rule: any exception, cancellation included)
            logger.exception("Exception in ASGI application\n")
            failed = True
        else:
            if self.phase is Phase.CONNECTING or self.phase is Phase.RESPONDING:
                logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.phase is Phase.OPEN:
            if failed:
                self.close_nowait(CloseCode.INTERNAL_ERROR, "internal error")
            else:
                self.close_nowait()
        else:
            self._refuse_with_500()

    def shutdown(self) -> None:
        """The server is shutting down: 1012 Service Restart to an open
        connection (the app's `receive` reports it at once), 500 to a
        request the app has not answered."""
        if self.phase is Phase.OPEN:
            self.close_nowait(CloseCode.SERVICE_RESTART)
            self._wake(Wake.MESSAGES)  # a waiting `receive` reports it now
        elif self._refuse_with_500():
            self._lost = True

    def _refuse_with_500(self) -> bool:
        """Answer a request the app has not answered with 500; False if it
        had (or the request is gone)."""
        if self.phase is Phase.DONE or not self._request_pending():
            return False
        self._answer(
            500, [(b"content-type", b"text/plain; charset=utf-8")], b"Internal Server Error"
        )
        return True

    def _request_pending(self) -> bool:
        return self._driver.request is not None and self._driver.core.state is State.CONNECTING

    # -- receive ---------------------------------------------------------------

    async def receive(self) -> ASGIMessage:
        """The app's `receive`: `websocket.connect` first, then each whole
        message, then `websocket.disconnect` (again on every later call)."""
        if self.phase is Phase.OPEN and self._connect_delivered:
            # The common case, spelled out: a message is waiting.
            driver = self._driver
            message = driver.take_message()
            if message is not None:
                if driver.resumed:
                    self._reading_resumed()
                if isinstance(message, str):
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
        return await self._next_event()

    async def _next_event(self) -> ASGIMessage:
        if not self._connect_delivered:
            self._connect_delivered = True
            return {"type": "websocket.connect"}
        driver = self._driver
        while True:
            if self._backlog:
                return self._backlog.popleft()
            if self._ended is not None:
                return _disconnect(*self._ended)
            if self.phase is Phase.OPEN:
                message = driver.take_message()
                if message is not None:
                    if driver.resumed:
                        self._reading_resumed()
                    return _receive(message)
                if driver.has_output:  # a violation held back until now
                    self._flush()
                if driver.local_close is not None:  # ours, such as a shutdown's 1012
                    return _disconnect(*driver.local_close)
                if driver.core.state is not State.OPEN or driver.is_over():
                    return _disconnect(*self._how_it_ended())
            elif driver.is_over():
                return _disconnect(CloseCode.ABNORMAL_CLOSURE, "")
            await self._wait_for_change()

    def _how_it_ended(self) -> tuple[int, str]:
        """The code and reason of a connection the peer or the core ended."""
        core = self._driver.core
        code = core.close_code
        if code is None or code == CloseCode.ABNORMAL_CLOSURE:
            # No close frame came: ASGI's "no code received", which is what
            # uvicorn's classes report too.
            return CloseCode.NO_STATUS_RCVD, ""
        return code, core.close_reason

    async def _wait_for_change(self) -> None:
        """Wait until there may be news (the caller looks again). Several
        `receive` calls may wait at once, as uvicorn's classes allow: they
        share one future, each through a shield, so that cancelling one
        (a timeout around it) leaves the others waiting."""
        if not self._ready_to_wait():
            return
        waiter = self._recv_waiter
        if waiter is None or waiter.done():
            waiter = self._recv_waiter = self._loop.create_future()
        await asyncio.shield(waiter)

    # -- send ----------------------------------------------------------------

    async def send_message(self, message: ASGIMessage) -> None:
        """The app's `send`: what each message does depends on the phase,
        and a message the phase does not allow raises RuntimeError with
        uvicorn's words."""
        if message["type"] == "websocket.send" and self.phase is Phase.OPEN and not self._lost:
            # The common case, spelled out: a message to send.
            data: Any = message.get("bytes")
            text: Any = message.get("text")
            if data is None:
                if not isinstance(text, str):
                    _refuse_send(data, text)
                payload = text
            else:
                if text is not None or isinstance(data, str):
                    _refuse_send(data, text)
                payload = data
            driver = self._driver
            try:
                self._flush_soon(driver.queue_send(payload, compress=None))
                if driver.writes_blocked:
                    await self._drain()
            except ConnectionClosed:
                raise ClientDisconnected from None
            return
        await self._send_in_any_phase(message)

    async def _send_in_any_phase(self, message: ASGIMessage) -> None:
        kind = message["type"]
        if self._lost:
            raise ClientDisconnected
        phase = self.phase
        if phase is Phase.OPEN:
            if kind == "websocket.close":
                self._app_close(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got '{kind}'."
                )
        elif phase is Phase.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                if not self._request_pending():
                    raise ClientDisconnected
                self._log_answer("403")
                self._answer(403, [], b"")
            elif kind == "websocket.http.response.start":
                self._start_denial(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif phase is Phase.RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            self._continue_denial(message)
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    def _app_close(self, message: ASGIMessage) -> None:
        code = message.get("code")
        reason = message.get("reason") or ""
        code = CloseCode.NORMAL_CLOSURE if code is None else code
        driver = self._driver
        # (raises for a code or reason that may not be sent)
        if driver.start_close(code, reason) is CloseStep.FLUSH:
            self._flush()
            ended = (code, reason)
        else:  # the peer's close (or the core's failure) came first: that is the news
            ended = self._how_it_ended()
        # What arrived before the close is still the app's to read; what
        # comes after is dropped.
        backlog = self._backlog = deque()
        while (data := driver.take_message()) is not None:
            backlog.append(_receive(data))
        driver.drop_messages()
        if driver.resumed:
            self._reading_resumed()
        self.phase = Phase.DONE
        self._ended = ended
        self._wake(Wake.MESSAGES)  # a `receive` waiting in another task reports it now

    def _accept(self, message: ASGIMessage) -> None:
        if not self._request_pending():
            raise ClientDisconnected
        subprotocol = message.get("subprotocol")
        headers = []
        for name, value in message.get("headers") or ():
            field = bytes(name).decode("latin-1").lower()
            if field == "sec-websocket-protocol" and subprotocol is None:
                # The ASGI spec asks for `subprotocol`; uvicorn's classes
                # also take the header, and so do we, as that.
                subprotocol = bytes(value).decode("latin-1").strip()
            elif field in _HANDSHAKE_FIELDS or field == "sec-websocket-protocol":
                raise RuntimeError(
                    f"'websocket.accept' may not set the {field} header: the handshake "
                    "writes it (and 'subprotocol' names the subprotocol)"
                )
            else:
                headers.append((name, value))
        core = self._driver.core
        assert isinstance(core, ServerConnection)
        early = core.accept(
            subprotocol=subprotocol,
            extra_headers=self._headers(headers),
            read_early=False,  # the driver reads them, in slices if compressed
        )
        self._log_answer("[accepted]")
        self.phase = Phase.OPEN
        driver = self._driver
        self._wake(driver.accepted(early, self._loop.time()))
        if not driver.wants_data:  # (the early frames filled the queue)
            self._steer_reading()
        self._flush()

    def _start_denial(self, message: ASGIMessage) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        self._log_answer(str(status))
        self._denial = (status, self._headers(message.get("headers") or ()), bytearray())
        self.phase = Phase.RESPONDING

    def _continue_denial(self, message: ASGIMessage) -> None:
        assert self._denial is not None
        status, headers, body = self._denial
        body += message.get("body", b"")
        if message.get("more_body", False):
            return
        if not self._request_pending():
            raise ClientDisconnected
        self._denial = None
        self._answer_with(status, headers, bytes(body))

    def _answer(self, status: int, headers: HeaderList, body: bytes) -> None:
        self._answer_with(status, self._headers(headers), body)

    def _answer_with(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Refuse the upgrade with this response; the app's `receive` then
        reports 1006, as in uvicorn."""
        core = self._driver.core
        assert isinstance(core, ServerConnection)
        core.reject(status, headers=headers, body=body)
        self.phase = Phase.DONE
        self._ended = (CloseCode.ABNORMAL_CLOSURE, "")
        self._wake(Wake.MESSAGES)
        self._flush()

    def _headers(self, given: HeaderList) -> list[tuple[str, str]]:
        """The app's headers, after the server's defaults (`server`, `date`
        and `--header`s) that it did not set itself."""
        fields = [
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in given
        ]
        names = {name.lower() for name, _ in fields}
        defaults = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self._server_state.default_headers
            if name.decode("latin-1").lower() not in names
        ]
        return defaults + fields

    def _log_answer(self, outcome: str) -> None:
        scope: Any = self.scope  # (uvicorn's helpers want its own TypedDict)
        logger.info(
            '%s - "WebSocket %s" %s',
            get_client_addr(scope),
            get_path_with_query_string(scope),
            outcome,
        )

    # -- the transport -------------------------------------------------------

    def _connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        super()._connection_lost(exc)

    def trace(self, what: str) -> None:
        """A TRACE line, as uvicorn's classes write them (`--log-level trace`)."""
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            client = get_remote_addr(self._transport) if self._transport is not None else None
            prefix = f"{client[0]}:{client[1]} - " if client else ""
            logger.log(TRACE_LOG_LEVEL, "%sWebSocket %s", prefix, what)


def _refuse_send(data: object, text: object) -> NoReturn:
    """Why a `websocket.send` cannot be sent."""
    if (data is None) == (text is None):
        raise RuntimeError("'websocket.send' takes exactly one of 'bytes' and 'text'")
    raise TypeError("'websocket.send' takes str as 'text' and bytes as 'bytes'")


def _receive(data: str | bytes) -> ASGIMessage:
    if isinstance(data, str):
        return {"type": "websocket.receive", "text": data}
    return {"type": "websocket.receive", "bytes": data}


def _disconnect(code: int, reason: str) -> ASGIMessage:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}
