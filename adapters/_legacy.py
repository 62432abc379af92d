"""Transitional: what blocking.py and trio.py used before the driver."""
# ruff: noqa
from __future__ import annotations
from collections.abc import Callable
from wsproto_core import *
from wsproto_core import Connection, State, ServerConnection, HandshakeRequest, HttpRequest, TextFragment, BytesFragment
from ._admission import Admission
from ._common import *
from ._common import Settings, HttpResponse, READ_SIZE, ClientOptions, ServerOptions, new_client_core, parse_uri
from .errors import *
from .errors import closed_error, ConnectionClosed
Message = str | bytes
Fragment = TextFragment | BytesFragment
class ConnectionView:
    """The read-only face of a connection, the same in every adapter.

    Each adapter says only how it knows its transport is gone."""

    _core: Connection
    _local_close: tuple[int, str] | None
    # Called once, just before the transport is closed (a server frees the
    # connection's per-address slot there, before the peer can come back).
    _on_transport_closing: Callable[[], None] | None = None

    def _transport_closing(self) -> None:
        release, self._on_transport_closing = self._on_transport_closing, None
        if release is not None:
            release()

    def _transport_gone(self) -> bool:
        raise NotImplementedError  # pragma: no cover - each adapter implements it

    @property
    def subprotocol(self) -> str | None:
        return self._core.subprotocol

    @property
    def state(self) -> State:
        return self._core.state

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions in effect, as the server's response spelled them
        (such as "permessage-deflate; server_max_window_bits=12")."""
        return tuple(str(extension) for extension in self._core.extensions)

    @property
    def close_code(self) -> int | None:
        """How the connection ended: the peer's close code, ours if it
        failed, 1006 if no close frame was exchanged; None while open."""
        if self._core.close_code is None and self._transport_gone():
            return 1006
        return self._core.close_code

    @property
    def close_reason(self) -> str:
        return self._core.close_reason

    def _is_over(self) -> bool:
        return self._core.state is State.CLOSED or self._transport_gone()

    def _closed_error(self) -> ConnectionClosed:
        if self.close_code is None and self._local_close is not None:
            return closed_error(*self._local_close)  # we are closing
        return closed_error(self.close_code, self.close_reason)


# -- the server's side of the handshake --------------------------------------


def answer_handshake(
    view: ConnectionView,
    core: ServerConnection,
    request: HandshakeRequest,
    settings: Settings,
    admission: Admission,
    ip: str,
) -> bool:
    """Accept or reject `request` by the server's policy; True if accepted,
    and then `ip` was counted by `admission` until `view` closes its
    transport."""
    origins = settings.origins
    if origins is not None and not (
        origins(request) if callable(origins) else request.origin in origins
    ):
        core.reject(403, body=b"origin not allowed\n")
        return False
    crowded = admission.admit(ip)
    if crowded is not None:
        core.reject(503, headers=[("Retry-After", "5")], body=crowded.encode() + b"\n")
        return False
    view._on_transport_closing = lambda: admission.release(ip)
    chosen = next((p for p in settings.subprotocols if p in request.subprotocols), None)
    core.accept(subprotocol=chosen)
    return True


def answer_http(core: ServerConnection, request: HttpRequest, settings: Settings) -> None:
    """Answer a plain HTTP request with the application's hook, or 426."""
    response: HttpResponse
    if settings.http_handler is None:
        response = HttpResponse(
            status=426,
            headers=[("Upgrade", "websocket"), ("Content-Type", "text/plain")],
            body=b"this is a WebSocket endpoint\n",
        )
    else:
        try:
            response = settings.http_handler(request)
        except Exception:  # the hook's bug must not kill the server
            response = HttpResponse(status=500, body=b"internal server error\n")
    core.respond(response.status, headers=response.headers, body=response.body)


# -- receiving ---------------------------------------------------------------


class Reassembly:
    """Joins the fragments of one message for recv().

    A message in assembly costs about its size however finely the peer cut
    it: small fragments are merged as they come, pairwise and geometrically,
    instead of being kept as one object each (some 50 bytes apiece, which
    a million one-byte fragments turn into 50 MiB). Fragments of at least
    `SETTLED` characters or bytes are kept as they are and copied once, by
    the final join. `parts` stays a plain list of str or bytes, which is
    what a cancelled recv() leaves for recv_streaming to hand out first.
    """

    __slots__ = ("parts",)

    SETTLED = 16 * 1024

    def __init__(self) -> None:
        self.parts: list[Message] = []

    def add(self, fragment: Fragment) -> Message | None:
        """Take one fragment; the whole message once `fragment` is its last."""
        parts = self.parts
        if fragment.final and not parts:
            return fragment.data  # the common case: one fragment, nothing to join
        parts.append(fragment.data)
        if not fragment.final:
            settled = self.SETTLED
            # A merged byte is copied O(log SETTLED) times at most; a piece
            # of SETTLED or more is never merged.
            while (
                len(parts) > 1
                and len(parts[-1]) < settled
                and len(parts[-2]) < settled
                and len(parts[-2]) <= 2 * len(parts[-1])
            ):
                last = parts.pop()
                parts[-1] += last  # type: ignore[operator]  # all str or all bytes
            return None
        self.parts = []
        if isinstance(fragment, TextFragment):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]


def answer_pings(pings: dict[bytes, list[float]], payload: bytes, now: float) -> bool:
    """Record the round trip on the ping `payload` answers and on every
    earlier one (a pong may answer several, RFC 6455 section 5.5.3).

    `pings` maps payloads to [send time], in send order; answered records
    get their round trip appended and leave the dict. False if no ping of
    ours had this payload (an unsolicited pong, or the core's keepalive).
    """
    if payload not in pings:
        return False
    while pings:
        key = next(iter(pings))
        record = pings.pop(key)
        record.append(now - record[0])
        if key == payload:
            break
    return True
