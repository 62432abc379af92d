"""What a connection does between the core and the application, decided
once for every backend: no awaits, no locks, no sockets, no clock reads.

A backend (blocking threads, asyncio, trio) owns a `Driver` per connection
and keeps only what is truly its own: how it waits (a future, a
`trio.Event`, a condition), how it writes (`writelines`, `send_all`,
`sendall`), its tasks or threads, and its accept loop. Its loop is:

- bytes, end of file, a due timer or a lost transport go in through
  `received`, `eof`, `timer` and `transport_lost`, which return the
  `Wake` flags saying which waiters to wake;
- the application's calls go through `take_message` / `take_fragment`
  (None: wait for `Wake.MESSAGES`), `queue_send`, `queue_prepared`,
  `queue_ping` (wait for `Wake.PONGS` until its `rtt` is set) and
  `start_close`, which raise the adapters' exceptions;
- `output()` gives the bytes to write and whether to close the transport
  after them; `deadline(now)` when to call `timer`.

The rules, each in one place below:

- Reading pauses when `max_queue` fragments, or `max_queue` times
  `QUEUE_BYTES_PER_SLOT` bytes, wait for the application, and resumes once
  it has taken half of them (`wants_data`), so a peer pays for its flood
  in round trips, not in our memory. A compressed connection's input goes
  to the core a slice at a time (`received`), each slice small enough
  that what it can inflate to fits in what is left of the budget: one
  read of deflate bombs cannot fill memory before reading pauses. It also pauses while
  the pongs we owe exceed `write_limit` and the transport takes nothing
  (`pong_backlog`): a peer that pings without reading would grow them.
- A violation the peer commits right after messages the application has
  not answered waits until it asks for more (the core's held failure; see
  the state table in `wsproto_core.connection`), so those answers go out
  before the close frame.
- `send` takes str or any bytes-like object and raises `ConnectionClosed`
  once the connection is not open (with our own code and reason while our
  close is under way); a pong answers its ping and every earlier one.
- Every timeout means the same in every backend; `None` means "no limit"
  except for the last write after a close: see `Settings.final_write_bound`.
- A server handler that returns closes with 1000, one that raises with
  1011 (logged): `close_after_handler`.
"""

from __future__ import annotations

import enum
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import assert_never

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    Connection,
    ConnectionFailed,
    HandshakeAccepted,
    HandshakeFailed,
    HandshakeRejected,
    HandshakeRequest,
    HttpRequest,
    LocalProtocolError,
    Ping,
    Pong,
    PreparedMessage,
    ServerConnection,
    State,
    TextFragment,
    TextMessage,
)
from wsproto_core.connection import OPEN_TIMED_OUT
from wsproto_core.events import Event
from wsproto_core.frames import CloseCode

from ._admission import Admission
from ._common import Fragment, HttpResponse, Message, Settings
from ._forwarded import client_address
from .errors import ConcurrencyError, ConnectionClosed, HandshakeError, closed_error

logger = logging.getLogger("adapters")


class Wake:
    """Which waiters an input concerns (flags, or-ed together)."""

    NONE = 0
    MESSAGES = 1  # recv(): fragments arrived, or the connection's state changed
    PONGS = 2  # ping(): a pong answered one, or the connection ended
    ROOM = 4  # the reader: the receive queue has room again
    OPENED = 8  # the opening handshake: its outcome is known
    ALL = MESSAGES | PONGS | ROOM | OPENED


_MESSAGES = Wake.MESSAGES
# A tuple, not `bytes | bytearray | memoryview`: that union is built anew at
# each call, and isinstance on it costs eight times as much.
_BYTES_LIKE = (bytes, bytearray, memoryview)
_NO_FRAGMENTS: deque[Fragment] = deque(maxlen=0)  # see `Driver.fragments`

# Reading pauses once this many bytes per `max_queue` slot wait for the
# application (a fragment can be as large as a read, or, inflated, as a
# message): 1 MiB at the default of 16.
QUEUE_BYTES_PER_SLOT = 64 * 1024
# Deflate's largest ratio of output to input (a run of zeros), and the
# smallest slice of compressed input fed to the core at once: a 4 KiB slice
# inflates to 4 MiB at worst, past the budget; smaller slices cost more
# calls (1 KiB: some 20-40% on compressed receive; 4 KiB: under 10%).
INFLATION = 1032
MIN_SLICE = 4096


class CloseStep(enum.Enum):
    """What a backend does after `start_close`."""

    FLUSH = "flush"  # a close frame is queued: write it
    ABORT = "abort"  # still in the opening handshake: drop the transport
    NOTHING = "nothing"  # already closing or closed


class PendingPing:
    """A ping of the application's, waiting for its pong."""

    __slots__ = ("rtt", "sent")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.rtt: float | None = None  # seconds, once answered


# A server's answer to an upgrade request (see `answer_handshake`): the
# events of the frames that came with it if accepted, None if refused.
RequestPolicy = Callable[["Driver", HandshakeRequest], "list[Event] | None"]


class Driver:
    """One connection's policy. Not thread-safe: the blocking backend calls
    it under its connection lock, the others from their one thread."""

    __slots__ = (
        "_dropping",
        "_eof_pending",
        "_holding_message",
        "_last_now",
        "_max_queued_bytes",
        "_on_closing",
        "_on_request",
        "_queued_bytes",
        "_read_paused",
        "_resume_at",
        "assembly",
        "closing_transport",
        "core",
        "fragments",
        "gone",
        "local_close",
        "max_queue",
        "opened",
        "outcome",
        "pings",
        "receiving",
        "request",
        "resumed",
        "settings",
        "unfed",
        "writes_blocked",
    )

    def __init__(
        self, core: Connection, settings: Settings, *, on_request: RequestPolicy | None = None
    ) -> None:
        self.core = core
        self.settings = settings
        self.max_queue = settings.max_queue
        self._resume_at = settings.max_queue // 2
        self._max_queued_bytes = settings.max_queue * QUEUE_BYTES_PER_SLOT
        self._queued_bytes = 0  # of the fragments waiting (characters, for text)
        # Compressed input read but not yet given to the core (see `received`):
        # a backend with some feeds it (`received(b"")`) before reading more.
        self.unfed = b""
        self._eof_pending = False  # the end came while input was still unfed
        self._dropping = False  # see `drop_messages`
        self._last_now = 0.0  # (for input fed after the transport is gone)
        self._on_request = on_request
        # Made when a fragment comes, dropped when taken to the last: an
        # empty deque is some 600 bytes, and most connections idle most of
        # the time (`_NO_FRAGMENTS` is never appended to).
        self.fragments: deque[Fragment] = _NO_FRAGMENTS
        self.assembly = Reassembly()
        self.pings: dict[bytes, PendingPing] = {}  # in send order
        self.receiving = False  # a recv() or recv_streaming() is under way
        self._holding_message = False  # handed out a fragment, not asked for more yet
        self._read_paused = False
        # Set when taking made the queue short enough to read again: the
        # backend wakes its reader (or resumes its transport) and clears it.
        self.resumed = False
        self.writes_blocked = False  # the transport takes nothing more for now
        self.gone = False  # the transport is closed
        self.closing_transport = False  # output() said to close it
        self.local_close: tuple[int, str] | None = None
        self.request: HandshakeRequest | None = None
        self.opened = False
        self.outcome: HandshakeError | None = None
        # Called once, just before the transport is closed (a server frees
        # the connection's per-address slot there, before the peer can
        # come back and find it taken): see `on_transport_closing`.
        self._on_closing: list[Callable[[], None]] = []

    # -- input from the transport ---------------------------------------------

    def received(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """Bytes from the peer (b"": feed what is `unfed`)."""
        core = self.core
        if not core.extensions:  # no compression: a fragment is at most what was read
            # While the application has messages to take, or holds one it has
            # not answered, a violation in these bytes waits for it.
            hold = self._holding_message or bool(self.fragments)
            return self._dispatch(core.receive_data(data, defer_failure=hold), now)
        unfed = self.unfed + data if self.unfed else bytes(data)
        wake = Wake.NONE
        start = 0
        while start < len(unfed) and not self._read_paused:
            room = self._max_queued_bytes - self._queued_bytes
            end = start + max(MIN_SLICE, room // INFLATION)
            hold = self._holding_message or bool(self.fragments)
            wake |= self._dispatch(core.receive_data(unfed[start:end], defer_failure=hold), now)
            start = end
        self.unfed = unfed[start:] if start < len(unfed) else b""
        if not self.unfed and self._eof_pending:
            self._eof_pending = False
            if core.state is not State.CLOSED:
                wake |= self._dispatch(core.receive_eof(), now)
        return wake

    def eof(self, now: float) -> int:
        """The peer closed its side (or the transport reported end of file).
        With compressed input still `unfed` (a TLS layer may hand over data
        and its end together), the end waits for it: see `received`."""
        if self.unfed:
            self._eof_pending = True
            return Wake.NONE
        return self._dispatch(self.core.receive_eof(), now)

    def timer(self, now: float) -> int:
        """The deadline from `deadline()` has come (or passed)."""
        return self._dispatch(self.core.handle_timeout(now), now)

    def transport_lost(self, now: float) -> int:
        """The transport is closed, for whatever reason: everyone waiting
        must look again, and find the connection over (once they have
        taken what was read before: input still `unfed` is fed as they take,
        and the end applied after it)."""
        if self.unfed:
            self._eof_pending = True
            self._last_now = now
        elif self.core.state is not State.CLOSED:
            self._dispatch(self.core.receive_eof(), now)
        self.gone = True
        self.closing_transport = True
        self.transport_closing()
        if not self.opened and self.outcome is None:
            self.outcome = HandshakeError(None, "connection lost during the handshake")
        return Wake.ALL

    def _dispatch(self, events: list[Event], now: float) -> int:
        wake = Wake.NONE
        fragments = self.fragments
        for event in events:
            if isinstance(event, TextFragment | BytesFragment):  # the hot path, first
                if fragments is _NO_FRAGMENTS:
                    fragments = self.fragments = deque()
                fragments.append(event)
                self._queued_bytes += len(event.data)
                wake |= _MESSAGES
                continue
            match event:
                case Pong(payload=payload):
                    if self._answer_pings(payload, now):
                        wake |= Wake.PONGS
                case CloseReceived() | ConnectionFailed():
                    wake |= Wake.ALL
                case HandshakeRequest():
                    self.request = event
                    policy = self._on_request
                    early = None if policy is None else policy(self, event)
                    if early is not None:
                        wake |= self.accepted(early, now)
                case HttpRequest():
                    assert isinstance(self.core, ServerConnection)
                    answer_http(self.core, event, self.settings)
                case HandshakeAccepted():
                    self.opened = True
                    wake |= Wake.OPENED
                case HandshakeRejected(status=status, body=body):
                    self.outcome = HandshakeError(status, "server rejected", body)
                    wake |= Wake.OPENED
                case HandshakeFailed(status=status, reason=reason):
                    self.outcome = HandshakeError(status, reason)
                    wake |= Wake.OPENED
                    stats = self.settings.stats
                    if stats is not None and self._on_request is not None:  # (a server's)
                        if status is not None:
                            stats.refused(status)  # a malformed request, answered
                        elif reason == OPEN_TIMED_OUT:
                            stats.refused(stats.TIMED_OUT)  # (not a peer that just left)
                case Ping():
                    pass  # the core answers it
                case TextMessage() | BytesMessage():  # pragma: no cover - streaming core
                    raise AssertionError("the adapters' core delivers fragments")
                case _:  # pragma: no cover - the union is closed
                    assert_never(event)
        if self._dropping:
            self._queued_bytes = 0  # (nothing is kept)
        elif len(fragments) >= self.max_queue or self._queued_bytes >= self._max_queued_bytes:
            self._read_paused = True
        return wake

    def accepted(self, early: list[Event], now: float) -> int:
        """The upgrade request is accepted: by the policy at once, or later
        by an application that answers in its own time (an ASGI app, whose
        policy returns None and leaves the request pending). `early` is
        what `ServerConnection.accept()` returned; the frames it left unread
        (`read_early=False`) are read here."""
        self.opened = True
        self._on_request = None  # (its closure is the connection's for good otherwise)
        wake = Wake.OPENED | self._dispatch(early, now)
        core = self.core
        if isinstance(core, ServerConnection) and (data := core.take_early_data()):
            wake |= self.received(data, now)  # (in slices, if compressed)
        return wake

    def drop_messages(self) -> None:
        """The application will read nothing more (an ASGI app that sent
        its close): drop what waits and whatever arrives until the close
        handshake ends, and never pause reading for it, so the peer's
        close frame is still read."""
        self.fragments = deque(maxlen=0)  # appending to it discards, at no cost
        self.assembly = Reassembly()
        self._dropping = True  # (compressed input is still fed in slices)
        self._queued_bytes = 0
        if self._read_paused:
            self._read_paused = False
            self.resumed = True

    def _answer_pings(self, payload: bytes, now: float) -> bool:
        """A pong answers its ping and every earlier one (RFC 6455 section
        5.5.3); False if no ping of the application's had this payload (an
        unsolicited pong, or the core's keepalive)."""
        pings = self.pings
        if payload not in pings:
            return False
        while pings:
            key = next(iter(pings))
            record = pings.pop(key)
            record.rtt = now - record.sent
            if key == payload:
                break
        return True

    # -- reading: when to, and what the application gets -------------------------

    @property
    def wants_data(self) -> bool:
        """Whether the transport should be read now (see the module's rules)."""
        return not self._read_paused and not (self.writes_blocked and self.pong_backlog)

    @property
    def pong_backlog(self) -> bool:
        """We owe the peer more pong bytes than `write_limit` and have not
        written them: a peer pinging without reading. Stop reading it."""
        return self.core.unsent_pong_bytes > self.settings.write_limit

    def begin_receive(self) -> None:
        if self.receiving:
            raise ConcurrencyError("recv() is already running for this connection")
        self.receiving = True

    def end_receive(self) -> None:
        self.receiving = False

    def take_fragment(self) -> Fragment | None:
        """The next fragment, or None if there is none: then write what
        `has_output` says is owed, raise `closed_error()` if `is_over()`,
        and otherwise wait for `Wake.MESSAGES`."""
        self._holding_message = False
        fragments = self.fragments
        if not fragments and self.unfed and self.gone:
            # The transport is gone with compressed input still to feed
            # (see `transport_lost`): it comes as the application takes.
            self.received(b"", self._last_now)
            fragments = self.fragments  # (made by that, if it gave any)
        if not fragments:
            core = self.core
            if core.failure_pending:  # the application has answered all it had
                self._dispatch(core.apply_pending_failure(), 0.0)
            return None
        fragment = fragments.popleft()
        if not fragments:
            self.fragments = _NO_FRAGMENTS
        self._holding_message = True
        self._queued_bytes -= len(fragment.data)
        if self._read_paused:
            self._maybe_resume()
        return fragment

    def _maybe_resume(self) -> None:
        if (
            len(self.fragments) <= self._resume_at
            and self._queued_bytes <= self._max_queued_bytes // 2
        ):
            self._read_paused = False
            self.resumed = True

    def take_message(self) -> Message | None:
        """The next whole message, or None (as `take_fragment`). What is
        joined so far stays in `assembly` if the caller stops waiting."""
        fragments = self.fragments
        if fragments and fragments[0].final and not self.assembly.parts:
            # The common case, spelled out: one whole message waiting.
            self._holding_message = True
            data = fragments.popleft().data
            if not fragments:
                self.fragments = _NO_FRAGMENTS
            self._queued_bytes -= len(data)
            if self._read_paused:
                self._maybe_resume()
            return data
        while (fragment := self.take_fragment()) is not None:
            message = self.assembly.add(fragment)
            if message is not None:
                return message
        return None

    def take_leftover(self) -> list[Message]:
        """The parts a cancelled `recv()` joined so far, for
        `recv_streaming` to hand out first."""
        parts, self.assembly.parts = self.assembly.parts, []
        return parts

    # -- the application's commands -----------------------------------------------

    def queue_send(self, message: Message, *, final: bool = True, compress: bool | None) -> int:
        """Queue a message (or a fragment of one); returns its size, which
        the backend counts against `write_limit`."""
        core = self.core
        try:  # (the core checks the state; a try costs nothing on the hot path)
            if isinstance(message, str):
                core.send_text(message, final=final, compress=compress)
            elif isinstance(message, _BYTES_LIKE):
                core.send_bytes(message, final=final, compress=compress)
            else:
                raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        except LocalProtocolError:
            if core.state is not State.OPEN:
                raise self.closed_error() from None
            raise  # (a fragmented message of the other kind under way)
        return len(message)

    def queue_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections; its frame's size."""
        try:
            return self.core.send_prepared(message)
        except LocalProtocolError:
            if self.core.state is not State.OPEN:
                raise self.closed_error() from None
            raise  # (a client connection: its frames are masked, never shared)

    def queue_ping(self, data: bytes | None, now: float) -> PendingPing:
        """Queue a ping (a random payload unless `data`); wait for `Wake.PONGS`
        while `ping_result` says None."""
        payload = os.urandom(4) if data is None else bytes(data)
        if payload in self.pings:
            raise ConcurrencyError("already waiting for a pong to this payload")
        if self.core.state is not State.OPEN:
            raise self.closed_error()
        self.core.send_ping(payload)
        record = self.pings[payload] = PendingPing(now)
        return record

    def ping_result(self, record: PendingPing) -> float | None:
        """The round trip of an answered ping, None while it waits; raises
        `ConnectionClosed` if the connection ended first."""
        if record.rtt is None and self.is_over():
            self.forget_ping(record)
            raise self.closed_error()
        return record.rtt

    def forget_ping(self, record: PendingPing) -> None:
        """The application stopped waiting (a timeout, a cancellation)."""
        for payload, pending in list(self.pings.items()):
            if pending is record:
                del self.pings[payload]

    def start_close(self, code: int, reason: str) -> CloseStep:
        state = self.core.state
        if state is State.OPEN:
            self.core.close(code, reason)  # (raises for a code or reason it may not send)
            self.local_close = (code, reason)
            return CloseStep.FLUSH
        if state is State.CONNECTING:
            return CloseStep.ABORT
        return CloseStep.NOTHING

    # -- output -------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether `output()` has anything to do."""
        core = self.core
        return core.has_data_to_send or (core.should_close_transport and not self.closing_transport)

    def output(self) -> tuple[list[bytes], bool]:
        """The bytes to write, in order, and whether to close the transport
        once they are written (True once: the caller closes it)."""
        core = self.core
        chunks = core.chunks_to_send()
        close = core.should_close_transport and not self.closing_transport
        if close:
            self.closing_transport = True
            self.transport_closing()
        return chunks, close

    def on_transport_closing(self, release: Callable[[], None]) -> None:
        """Call `release` once, when the transport is about to close."""
        self._on_closing.append(release)

    def transport_closing(self) -> None:
        """The backend is about to close (or shut down) the transport: run
        what waits for that, once. Safe from several threads at once (the
        blocking backend's reader, a sender and its server may all get
        here): `list.pop` hands each callback to one of them only."""
        while self._on_closing:
            try:
                release = self._on_closing.pop()
            except IndexError:  # another thread took the last one
                return
            release()

    def deadline(self, now: float) -> float | None:
        """When to call `timer` next (None: no timer)."""
        return self.core.next_deadline(now)

    # -- how it ended ---------------------------------------------------------------

    def is_over(self) -> bool:
        return self.core.state is State.CLOSED or self.gone

    @property
    def close_code(self) -> int | None:
        code = self.core.close_code
        if code is None and self.gone:
            return CloseCode.ABNORMAL_CLOSURE
        return code

    def closed_error(self) -> ConnectionClosed:
        """The exception for "the connection is not open": how it ended, or
        our own code and reason while our close is under way."""
        code = self.close_code
        if code is None and self.local_close is not None:
            return closed_error(*self.local_close)
        return closed_error(code, self.core.close_reason)


def close_after_handler(error: Exception | None) -> tuple[int, str]:
    """How a server closes a connection its handler has left: 1000 if it
    returned or met the connection's end (`ConnectionClosed`), 1011 if it
    raised anything else (logged here)."""
    if error is None or isinstance(error, ConnectionClosed):
        return CloseCode.NORMAL_CLOSURE, ""
    logger.error("connection handler failed", exc_info=error)
    return CloseCode.INTERNAL_ERROR, "internal error"


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


# -- the server's answers -------------------------------------------------------


def server_policy(admission: Admission, ip: str) -> RequestPolicy:
    """The policy of a server connection from `ip`: see `answer_handshake`."""
    return lambda driver, request: answer_handshake(driver, request, admission, ip)


def answer_handshake(
    driver: Driver, request: HandshakeRequest, admission: Admission, ip: str
) -> list[Event] | None:
    """Accept or reject `request` by the server's policy. Accepted: the
    events of the frames that came with it, and `ip` counts against
    `admission` until the transport closes. Refused: None."""
    core = driver.core
    assert isinstance(core, ServerConnection)
    settings = driver.settings
    origins = settings.origins
    try:
        allowed = origins is None or (
            origins(request) if callable(origins) else request.origin in origins
        )
    except Exception:  # the application's check failed: refuse, and say why in the log
        logger.exception("origin check failed")
        _refuse(driver, 500, b"internal server error\n")
        return None
    if not allowed:
        _refuse(driver, 403, b"origin not allowed\n")
        return None
    ip = client_address(ip, request.headers.get_all("X-Forwarded-For"), settings.trusted_proxies)
    crowded = admission.admit(ip)
    if crowded is not None:
        _refuse(driver, 503, crowded.encode() + b"\n", [("Retry-After", "5")])
        return None
    driver.on_transport_closing(lambda: admission.release(ip))
    chosen = next((p for p in settings.subprotocols if p in request.subprotocols), None)
    return core.accept(subprotocol=chosen, read_early=False)


def _refuse(
    driver: Driver, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
) -> None:
    """Answer the upgrade request `status`, and count it."""
    core = driver.core
    assert isinstance(core, ServerConnection)
    core.reject(status, headers=headers or [], body=body)
    if (stats := driver.settings.stats) is not None:
        stats.refused(status)


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
            logger.exception("http_handler failed")
            response = HttpResponse(status=500, body=b"internal server error\n")
    core.respond(response.status, headers=response.headers, body=response.body)
