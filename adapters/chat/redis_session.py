"""The chat's conversation with Redis, sans-IO: one `RedisSession` per pair
of connections, whatever the backend.

A session speaks on two connections: `SUB`, subscribed to the room's
channel, and `CMD`, for commands (PUBLISH, the history's RPUSH/LTRIM and
LRANGE). It decides everything that is not I/O, once for the three
backends:

- what to write on each connection, from an outbox bounded in bytes:
  `send` refuses (returns False) while the session is not up or when the
  outbox is full, and the chat then delivers to this process's clients;
- SUBSCRIBE and its confirmation, SELECT of the database, the history
  request, the chat's own requests (`request`: a command whose reply is
  handed back to the callback given with it; the nickname claims), and
  matching each reply to its command (Redis answers in order);
- what is delivered: only well-formed pushes on our channel, with a
  payload of valid UTF-8 within `max_payload` (anyone who can publish on
  the channel can send anything; what is dropped is logged, at most once
  every few seconds);
- health, with time as an input: a PING on an idle connection every
  `ping_interval`, and the session fails when a reply (to anything: the
  PING, a PUBLISH still in the outbox) is `reply_timeout` late. A stalled
  Redis (socket open, no answers) is noticed that way, and so is an outbox
  that does not drain;
- credentials: AUTH (password, or ACL user and password) first on each
  connection; a refusal fails the session, saying so;
- up and down: `up` once subscribed (and authenticated, and the database
  selected), down for
  good once `failure` is set. A session is never revived: the backend
  starts a new one on new connections.

The backend's loop: write `data_to_send(conn)` and call `sent(conn)` once it
is written; pass what it reads to `receive_data` (end of file to
`receive_eof`); sleep until `next_deadline()` and call `handle_timeout`
(True: it queued something to write). After each call, `failure` says
whether to drop the connections. `redis_link.py` does all that but the I/O.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .log import LogThrottle
from .resp import ProtocolError, RedisError, Reply, ReplyParser, TooLarge, command

W = TypeVar("W")

PING_INTERVAL = 2.0  # seconds of silence on a connection before a PING
REPLY_TIMEOUT = 5.0  # seconds a reply may take before the session fails
MAX_OUTBOX = 1 << 20  # bytes written or waiting to be written, both connections
# The chat's own events are at most a few KiB (2,000 characters of text);
# anything far larger on the channel is not one of them.
MAX_PAYLOAD = 256 << 10


class Conn(enum.Enum):
    SUB = "subscription"
    CMD = "commands"


class SessionError(Exception):
    """The session failed (its reason is the message): drop its
    connections and reconnect."""


class _Kind(enum.Enum):
    AUTH = enum.auto()
    SUBSCRIBE = enum.auto()
    SELECT = enum.auto()
    PING = enum.auto()
    IGNORE = enum.auto()  # fire and forget: PUBLISH, RPUSH, LTRIM
    HISTORY = enum.auto()
    REQUEST = enum.auto()  # the reply goes to the request's callback


OnReply = Callable[[Reply], None]


@dataclass(slots=True)
class _Expected(Generic[W]):
    """A reply we wait for."""

    kind: _Kind
    since: float  # when the command was queued: its reply is due REPLY_TIMEOUT later
    token: W | None = None  # the backend's waiter for a HISTORY
    on_reply: OnReply | None = None  # the callback of a REQUEST


@dataclass(slots=True)
class _Side(Generic[W]):
    """One connection: its parser, what it has to write, what it waits for."""

    parser: ReplyParser
    pending: bytearray = field(default_factory=bytearray)
    in_flight: int = 0  # handed to the backend, not yet reported written
    expected: deque[_Expected[W]] = field(default_factory=deque)
    next_ping: float = 0.0


@dataclass(frozen=True, slots=True)
class Received(Generic[W]):
    """What `receive_data` found: payloads to deliver to the room, the
    history requests answered (None: no usable answer), and the replies
    to `request`s with their callbacks."""

    payloads: list[str]
    answers: list[tuple[W, list[str] | None]]
    replies: list[tuple[OnReply, Reply]] = field(default_factory=list)


class RedisSession(Generic[W]):
    """See the module's docstring. `W` is the backend's waiter type, handed
    back with the answer to `request_history`."""

    def __init__(
        self,
        now: float,
        *,
        channel: str,
        history_key: str,
        history_length: int,
        db: int = 0,
        credentials: tuple[str | None, str] | None = None,
        max_outbox: int = MAX_OUTBOX,
        max_payload: int = MAX_PAYLOAD,
        ping_interval: float = PING_INTERVAL,
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.channel = channel.encode()
        self.history_key = history_key
        self.history_length = history_length
        self.max_outbox = max_outbox
        self.max_payload = max_payload
        self.ping_interval = ping_interval
        self.reply_timeout = reply_timeout
        self.failure: str | None = None
        self._subscribed = False
        self._selected = db == 0
        # Pushes hold 3 elements and LRANGE `history_length`; bulk strings
        # over max_payload are skipped by the parser, not kept.
        limits = {"max_elements": history_length + 64, "max_bulk": max_payload}
        self._sides: dict[Conn, _Side[W]] = {
            Conn.SUB: _Side(ReplyParser(**limits), next_ping=now + ping_interval),
            Conn.CMD: _Side(ReplyParser(**limits), next_ping=now + ping_interval),
        }
        self._outbox = 0  # bytes pending or in flight, both connections
        self._dropped = LogThrottle()
        self._refused = LogThrottle()
        self._errors = LogThrottle()
        # AUTH goes first on each connection (the commands behind it are
        # refused until it is accepted, and any refusal fails the session).
        self._unauthenticated: set[Conn] = set()
        if credentials is not None:
            user, password = credentials
            auth = command("AUTH", password) if user is None else command("AUTH", user, password)
            for conn in (Conn.SUB, Conn.CMD):
                self._queue(conn, auth, _Kind.AUTH, now)
                self._unauthenticated.add(conn)
        self._queue(Conn.SUB, command("SUBSCRIBE", channel), _Kind.SUBSCRIBE, now)
        if db:
            self._queue(Conn.CMD, command("SELECT", db), _Kind.SELECT, now)

    # -- state -------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Subscribed, on the right database, and not failed: the room may
        count on Redis."""
        return (
            self._subscribed
            and self._selected
            and not self._unauthenticated
            and self.failure is None
        )

    @property
    def outbox_size(self) -> int:
        return self._outbox

    def fail(self, reason: str) -> None:
        """The session is over (a bad reply, a late one, an I/O error, or
        the backend stops): `up` turns false for good and nothing more is
        written."""
        if self.failure is None:
            self.failure = reason
        for side in self._sides.values():
            side.pending.clear()
        self._outbox = sum(side.in_flight for side in self._sides.values())

    def take_waiters(self) -> list[W]:
        """The history requests still unanswered, for the backend to wake
        empty once the session has failed."""
        waiters: list[W] = []
        for side in self._sides.values():
            waiters.extend(e.token for e in side.expected if e.token is not None)
            side.expected.clear()
        return waiters

    def take_requests(self) -> list[OnReply]:
        """The callbacks of the requests still unanswered, for the backend
        to call with `LOST` once the session has failed (whether Redis ran
        the command is then unknown)."""
        callbacks: list[OnReply] = []
        for side in self._sides.values():
            callbacks.extend(e.on_reply for e in side.expected if e.on_reply is not None)
            side.expected = deque(e for e in side.expected if e.on_reply is None)
        return callbacks

    # -- what the chat asks -------------------------------------------------------

    def send(self, commands: tuple[bytes, ...], now: float) -> bool:
        """Queue commands whose replies are not needed; False if refused
        (the session is not up, or the outbox is full)."""
        if not self._accepts(sum(map(len, commands)), now):
            return False
        for data in commands:
            self._queue(Conn.CMD, data, _Kind.IGNORE, now)
        return True

    def request_history(self, waiter: W, now: float) -> bool:
        """Queue an LRANGE of the history; its answer comes back from
        `receive_data` with `waiter`. False if refused, or if no history is
        kept (LRANGE -0 -1 would be the whole list)."""
        if self.history_length <= 0:
            return False
        data = command("LRANGE", self.history_key, -self.history_length, -1)
        if not self._accepts(len(data), now):
            return False
        self._queue(Conn.CMD, data, _Kind.HISTORY, now, waiter)
        return True

    def request(self, data: bytes, on_reply: OnReply, now: float) -> bool:
        """Queue one command whose reply comes back from `receive_data` with
        `on_reply`; False if refused (then `on_reply` is never called)."""
        if not self._accepts(len(data), now):
            return False
        side = self._sides[Conn.CMD]
        side.pending += data
        side.expected.append(_Expected(_Kind.REQUEST, now, on_reply=on_reply))
        self._outbox += len(data)
        return True

    def _accepts(self, size: int, now: float) -> bool:
        if not self.up:
            return False
        if self._outbox + size > self.max_outbox:
            self._refused.warning(
                now, "redis is not keeping up (%d bytes waiting): delivering locally", self._outbox
            )
            return False
        return True

    def _queue(
        self, conn: Conn, data: bytes, kind: _Kind, now: float, token: W | None = None
    ) -> None:
        side = self._sides[conn]
        side.pending += data
        side.expected.append(_Expected(kind, now, token))
        self._outbox += len(data)

    # -- what the backend writes ----------------------------------------------------

    def data_to_send(self, conn: Conn) -> bytes:
        """What to write on `conn` now; it stays counted in the outbox until
        `sent(conn)`."""
        side = self._sides[conn]
        if not side.pending:
            return b""
        data = bytes(side.pending)
        side.pending.clear()
        side.in_flight += len(data)
        return data

    def sent(self, conn: Conn) -> None:
        """Everything `data_to_send(conn)` returned so far is written."""
        side = self._sides[conn]
        self._outbox -= side.in_flight
        side.in_flight = 0

    # -- what the backend reads --------------------------------------------------------

    def receive_data(self, conn: Conn, data: bytes, now: float) -> Received[W]:
        """Bytes read from `conn`. Never raises: a violation sets `failure`
        (what was complete before it is still returned)."""
        result: Received[W] = Received([], [])
        if self.failure is not None:
            return result
        side = self._sides[conn]
        violation = None
        try:
            replies = side.parser.feed(data)
        except ProtocolError as error:
            replies, violation = error.replies, error
        for reply in replies:
            if conn is Conn.SUB:
                self._on_push(reply, now, result)
            else:
                self._on_reply(reply, now, result)
            if self.failure is not None:
                return result
        if violation is not None:
            self.fail(f"not RESP from redis: {violation}")
        return result

    def receive_eof(self, conn: Conn) -> None:
        self.fail(f"redis closed the {conn.value} connection")

    def _on_push(self, reply: Reply, now: float, result: Received[W]) -> None:
        side = self._sides[Conn.SUB]
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            payload = reply[2]
            if reply[1] != self.channel:
                self._drop(now, "a message from another channel")
            elif isinstance(payload, TooLarge):
                self._drop(now, f"a payload of {payload.size} bytes")
            elif not isinstance(payload, bytes) or len(payload) > self.max_payload:
                self._drop(now, "a message without a payload")
            else:
                try:
                    result.payloads.append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    self._drop(now, "a payload that is not UTF-8")
            return
        head = side.expected[0].kind if side.expected else None
        if head is _Kind.AUTH:
            side.expected.popleft()
            self._authenticated(Conn.SUB, reply)
        elif isinstance(reply, RedisError):
            self.fail(f"redis refused the subscription: {reply}")
        elif head is _Kind.SUBSCRIBE and _is_push(reply, b"subscribe", self.channel):
            side.expected.popleft()
            self._subscribed = True
        elif head is _Kind.PING and _is_push(reply, b"pong", b""):
            side.expected.popleft()
        else:
            self.fail(f"an unexpected reply on the subscription: {_show(reply)}")

    def _on_reply(self, reply: Reply, now: float, result: Received[W]) -> None:
        side = self._sides[Conn.CMD]
        if not side.expected:
            self.fail(f"a reply to no command: {_show(reply)}")
            return
        expected = side.expected.popleft()
        kind = expected.kind
        if kind is _Kind.AUTH:
            self._authenticated(Conn.CMD, reply)
        elif kind is _Kind.SELECT:
            if reply == "OK":
                self._selected = True
            else:
                self.fail(f"SELECT failed: {_show(reply)}")
        elif kind is _Kind.PING:
            if reply != "PONG":
                self.fail(f"PING answered with {_show(reply)}")
        elif kind is _Kind.HISTORY:
            assert expected.token is not None
            result.answers.append((expected.token, self._history(reply, now)))
        elif kind is _Kind.REQUEST:
            assert expected.on_reply is not None
            result.replies.append((expected.on_reply, reply))
        elif isinstance(reply, RedisError):  # a PUBLISH or RPUSH refused (OOM...)
            self._errors.warning(now, "redis refused a command: %s", reply)

    def _authenticated(self, conn: Conn, reply: Reply) -> None:
        if reply == "OK":
            self._unauthenticated.discard(conn)
        else:  # (WRONGPASS, or AUTH without a password set: a wrong URL)
            detail = str(reply) if isinstance(reply, RedisError) else _show(reply)
            self.fail(f"redis refused the credentials: {detail}")

    def _history(self, reply: Reply, now: float) -> list[str] | None:
        """The stored events, as text; items that cannot be (too large, not
        UTF-8) are left out rather than losing the whole history."""
        if not isinstance(reply, list):
            self._errors.warning(now, "redis did not give the history: %s", _show(reply))
            return None
        items = []
        for item in reply:
            try:
                if isinstance(item, bytes):
                    items.append(item.decode("utf-8"))
                    continue
            except UnicodeDecodeError:
                pass
            self._drop(now, "a history item that is not text")
        return items

    def _drop(self, now: float, what: str) -> None:
        self._dropped.warning(now, "dropped %s from redis", what)

    # -- time ------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When `handle_timeout` must be called next, at the latest."""
        deadline = float("inf")
        for side in self._sides.values():
            deadline = min(deadline, side.next_ping)
            if side.expected:
                deadline = min(deadline, side.expected[0].since + self.reply_timeout)
        return deadline

    def handle_timeout(self, now: float) -> bool:
        """Fail if a reply is late; PING a connection that waits for none.
        True if that gave the backend something to write."""
        if self.failure is not None:
            return False
        queued = False
        for conn, side in self._sides.items():
            if side.expected and now - side.expected[0].since >= self.reply_timeout:
                late = side.expected[0].kind.name
                self.fail(f"no answer from redis for {self.reply_timeout:g} s ({late})")
                return False
            if now >= side.next_ping:
                if not side.expected:
                    self._queue(conn, command("PING"), _Kind.PING, now)
                    queued = True
                side.next_ping = now + self.ping_interval
        return queued


# What a request's callback gets when the session ended before its reply.
LOST = RedisError("no reply: the connection to redis was lost")


def _is_push(reply: Reply, kind: bytes, first: bytes) -> bool:
    """A subscribed connection's [kind, first, ...] array."""
    return isinstance(reply, list) and len(reply) >= 2 and reply[0] == kind and reply[1] == first


def _show(reply: Reply) -> str:
    """A reply, short enough for a log line."""
    if isinstance(reply, list):
        return f"an array of {len(reply)}"
    text = repr(reply[:100] if isinstance(reply, bytes | str) else reply)
    return text if len(text) <= 80 else text[:77] + "..."
