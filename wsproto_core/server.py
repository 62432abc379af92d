"""The server role: read one HTTP request, then either upgrade or answer it.

A request whose Upgrade header names websocket goes through every check of
RFC 6455 section 4.2.1 and becomes a `HandshakeRequest` for the application
to `accept` or `reject`; any other request becomes an `HttpRequest` that the
application answers with `respond` (how the chat serves its page on the
same port). A request that breaks a rule is answered by the core itself with
400, 426, 431, 413, 501 or 505 and a one-line body that says why.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Unpack

from .connection import Connection, ConnectionOptions
from .deflate import server_agreement
from .errors import HandshakeViolation, LocalProtocolError
from .events import Event, HandshakeRequest, HttpRequest
from .handshake import build_accept, check_upgrade_request, is_upgrade_request
from .http import RequestHead, build_response, parse_request_head, take_head
from .masking import Buffer


class _Phase(enum.Enum):
    READING_HEAD = "reading head"
    READING_BODY = "reading body"  # of a plain HTTP request
    UPGRADE_PENDING = "upgrade pending"  # waiting for accept() or reject()
    HTTP_PENDING = "http pending"  # waiting for respond()
    DONE = "done"


class ServerConnection(Connection):
    """One accepted transport, from the first request byte to the close.

    Takes the keyword options documented on `Connection`.
    """

    __slots__ = ("_body_length", "_buffer", "_early", "_head", "_phase", "request")

    def __init__(self, **options: Unpack[ConnectionOptions]) -> None:
        self._configure(client=False, **options)
        self._phase = _Phase.READING_HEAD
        self._buffer = bytearray()
        self._body_length = 0
        self._head: RequestHead | None = None
        self._early = b""
        self.request: HandshakeRequest | None = None

    def _receive_handshake_data(self, data: Buffer) -> list[Event]:
        events: list[Event] = []
        self._buffer += data
        try:
            if self._phase is _Phase.READING_HEAD:
                self._read_head(events)
            elif self._phase is _Phase.READING_BODY:
                self._read_body(events)
            elif len(self._buffer) > self.max_handshake_size:
                # The client must wait for our answer; this one keeps talking.
                raise HandshakeViolation(400, "data sent before the handshake was answered")
        except HandshakeViolation as violation:
            self._refuse(violation, events)
        return events

    def _read_head(self, events: list[Event]) -> None:
        raw = take_head(self._buffer, max_size=self.max_handshake_size, what="request", status=431)
        if raw is None:
            return
        head = parse_request_head(raw, max_header_count=self.max_header_count)
        self._head = head
        if is_upgrade_request(head):
            if _body_length(head) or "Transfer-Encoding" in head.headers:
                raise HandshakeViolation(400, "a WebSocket handshake has no body")
            self.request = check_upgrade_request(head)
            self._phase = _Phase.UPGRADE_PENDING
            events.append(self.request)
            return
        if "Transfer-Encoding" in head.headers:
            raise HandshakeViolation(501, "chunked request bodies are not supported")
        self._body_length = _body_length(head)
        body_limit = self.max_message_size
        if body_limit is not None and self._body_length > body_limit:
            raise HandshakeViolation(413, f"request body is over {body_limit} bytes")
        self._phase = _Phase.READING_BODY
        self._read_body(events)

    def _read_body(self, events: list[Event]) -> None:
        if len(self._buffer) < self._body_length:
            return
        head = self._head
        assert head is not None
        body = bytes(self._buffer[: self._body_length])
        del self._buffer[:]  # pipelined requests are not served: we close after answering
        path, _, query = head.target.partition("?")
        self._phase = _Phase.HTTP_PENDING
        events.append(
            HttpRequest(
                method=head.method,
                target=head.target,
                path=path,
                query=query,
                headers=head.headers,
                body=body,
            )
        )

    def _refuse(self, violation: HandshakeViolation, events: list[Event]) -> None:
        body = (violation.reason + "\n").encode("utf-8")
        self._write_response(violation.status, violation.headers, body, include_body=True)
        self._fail_handshake(violation.status, violation.reason, events)

    def _write_response(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        include_body: bool,
    ) -> None:
        fields = list(headers)
        names = {name.lower() for name, _ in fields}
        if "content-length" not in names:
            fields.append(("Content-Length", str(len(body))))
        if "connection" not in names:
            fields.append(("Connection", "close"))
        self._out.append(build_response(status, fields, body if include_body else b""))
        self._phase = _Phase.DONE
        self._buffer.clear()

    # -- the application's answers -------------------------------------------

    def accept(
        self,
        *,
        subprotocol: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        read_early: bool = True,
    ) -> list[Event]:
        """Complete the handshake; returns the events of the frames the
        client sent before our answer (a client may send its first message
        right behind its request), so nothing waits for the next read.

        `read_early=False` returns none and leaves those frames unread for
        `take_early_data`, for an adapter that feeds compressed input in
        measured slices (what a few KiB of deflate can inflate to).

        With the `compression` option, the first valid permessage-deflate
        offer is accepted; invalid offers are declined (RFC 7692 section 5)."""
        request = self._pending(_Phase.UPGRADE_PENDING, "accept")
        assert request is not None
        if subprotocol is not None and subprotocol not in request.subprotocols:
            raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered by the client")
        settings = self.compression_settings
        negotiated = None if settings is None else server_agreement(request.extensions, settings)
        extensions = () if negotiated is None else (negotiated[0],)
        self._out.append(
            build_accept(
                request, subprotocol=subprotocol, extensions=extensions, extra_headers=extra_headers
            )
        )
        early = bytes(self._buffer)
        self._buffer.clear()
        self._phase = _Phase.DONE
        self._open(subprotocol, extensions, None if negotiated is None else negotiated[1])
        if not read_early:
            self._early = early
            return []
        return self.receive_data(early) if early else []

    def take_early_data(self) -> bytes:
        """The frames `accept(read_early=False)` left unread (once), for
        `receive_data`."""
        early, self._early = self._early, b""
        return early

    def reject(
        self,
        status: int = 403,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        """Refuse a `HandshakeRequest` with an HTTP response; the connection then closes."""
        self._pending(_Phase.UPGRADE_PENDING, "reject")
        self._answer(status, headers, body)

    def respond(
        self,
        status: int = 200,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        """Answer an `HttpRequest`; the connection then closes (no keep-alive)."""
        self._pending(_Phase.HTTP_PENDING, "respond")
        self._answer(status, headers, body)

    def _answer(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        if not 200 <= status <= 599:
            raise LocalProtocolError(f"status {status} is not a final HTTP status")
        head = self._head
        assert head is not None
        self._write_response(status, headers, body, include_body=head.method != "HEAD")
        self._end(None, f"answered HTTP {status}")

    def _pending(self, phase: _Phase, action: str) -> HandshakeRequest | None:
        if self._phase is not phase:
            expected = "HandshakeRequest" if phase is _Phase.UPGRADE_PENDING else "HttpRequest"
            raise LocalProtocolError(f"{action}() answers a {expected}, and none is pending")
        return self.request

    def _receive_handshake_eof(self, events: list[Event]) -> None:
        self._fail_handshake(None, "connection closed during the opening handshake", events)


def _body_length(head: RequestHead) -> int:
    values = head.headers.get_all("Content-Length")
    if not values:
        return 0
    if len(set(values)) != 1 or not values[0].isdigit() or not values[0].isascii():
        raise HandshakeViolation(400, "invalid Content-Length")
    return int(values[0])
