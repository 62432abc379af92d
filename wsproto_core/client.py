"""The client role: send the upgrade request, judge the response.

The request is queued the moment the connection is made, so an adapter just
connects and starts draining `data_to_send()`. Any status but 101 is a
`HandshakeRejected` carrying the body (cut at `max_message_size`), so that
an application can show the server's error page or follow a redirect.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Unpack

from .connection import Connection, ConnectionOptions
from .deflate import client_agreement, client_offers
from .errors import HandshakeViolation
from .events import Event, HandshakeAccepted, HandshakeRejected
from .frames import CloseCode
from .handshake import ClientOffer, build_client_request, check_accept_response, make_key
from .http import ResponseHead, parse_response_head, take_head
from .masking import Buffer

_DEFAULT_REJECTED_BODY_LIMIT = 1 << 20


class _Phase(enum.Enum):
    """The client's side of the opening handshake (the request is queued
    at construction, so there is no phase before it)."""

    READING_HEAD = "reading the response head"
    READING_REFUSAL = "reading the body of a response other than 101"
    DONE = "done"  # opened, refused, or failed


class ClientConnection(Connection):
    """A client connection to `host` (the Host header, with port if not default).

    `target` is the request target: path and query, such as "/chat?room=1".
    Takes the keyword options documented on `Connection`.
    """

    __slots__ = ("_body_length", "_buffer", "_offer", "_phase", "_rejection")

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        subprotocols: Iterable[str] = (),
        origin: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        **options: Unpack[ConnectionOptions],
    ) -> None:
        self._configure(client=True, **options)
        settings = self.compression_settings
        self._offer = ClientOffer(
            key=make_key(),
            subprotocols=tuple(subprotocols),
            extensions=() if settings is None else client_offers(settings),
        )
        self._out.append(
            build_client_request(
                host=host,
                target=target,
                offer=self._offer,
                origin=origin,
                extra_headers=extra_headers,
            )
        )
        self._buffer = bytearray()
        self._phase = _Phase.READING_HEAD
        self._rejection: ResponseHead | None = None  # the head, while READING_REFUSAL
        self._body_length: int | None = None  # None: the body runs until EOF

    def _receive_handshake_data(self, data: Buffer) -> list[Event]:
        events: list[Event] = []
        self._buffer += data
        try:
            if self._phase is _Phase.READING_HEAD:
                self._read_head(events)
            else:  # READING_REFUSAL (in DONE the state is no longer CONNECTING)
                self._read_rejection_body(events, eof=False)
        except HandshakeViolation as violation:
            self._phase = _Phase.DONE
            self._fail_handshake(violation.status or None, violation.reason, events)
        return events

    def _read_head(self, events: list[Event]) -> None:
        raw = take_head(self._buffer, max_size=self.max_handshake_size, what="response", status=0)
        if raw is None:
            return
        head = parse_response_head(raw, max_header_count=self.max_header_count)
        if head.status != 101:
            self._phase = _Phase.READING_REFUSAL
            self._rejection = head
            self._body_length = _content_length(head)
            self._read_rejection_body(events, eof=False)
            return
        subprotocol, extensions = check_accept_response(head, self._offer)
        self._phase = _Phase.DONE
        settings = self.compression_settings
        agreement = None if settings is None else client_agreement(extensions, settings)
        self._open(subprotocol, extensions, agreement)
        events.append(
            HandshakeAccepted(subprotocol=subprotocol, extensions=extensions, headers=head.headers)
        )
        if self._buffer:  # frames that came in the same read as the response
            early = bytes(self._buffer)
            self._buffer.clear()
            events.extend(self.receive_data(early))

    def _read_rejection_body(self, events: list[Event], *, eof: bool) -> None:
        head = self._rejection
        assert head is not None
        limit = self.max_message_size or _DEFAULT_REJECTED_BODY_LIMIT
        wanted = limit if self._body_length is None else min(limit, self._body_length)
        if len(self._buffer) < wanted and not eof:
            return
        body = bytes(self._buffer[:wanted])
        self._buffer.clear()
        self._phase = _Phase.DONE
        self._end(CloseCode.ABNORMAL_CLOSURE, f"server answered HTTP {head.status}")
        events.append(HandshakeRejected(status=head.status, headers=head.headers, body=body))

    def _receive_handshake_eof(self, events: list[Event]) -> None:
        if self._phase is _Phase.READING_REFUSAL:
            self._read_rejection_body(events, eof=True)
        else:
            self._phase = _Phase.DONE
            self._fail_handshake(None, "connection closed before the handshake response", events)


def _content_length(head: ResponseHead) -> int | None:
    values = head.headers.get_all("Content-Length")
    if "Transfer-Encoding" in head.headers or len(values) != 1:
        return None  # read until EOF: cut at the limit, so this stays bounded
    value = values[0]
    return int(value) if value.isascii() and value.isdigit() else None
