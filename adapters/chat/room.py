"""The chat room, sans-IO: events in, actions out.

The room knows the clients of this process, their nicknames and rate
limits, and the recent history. It never touches a socket or a clock: the
server tells it what happened (a client connected, sent something, left;
an event arrived from another worker; time passed) and carries out the
actions it returns:

- `Send(client, text)`: to one client (its welcome, its own errors);
- `Broadcast(text)`: to every client of this process, framed once;
- `Publish(text)`: to the other workers' rooms, through the hub (Redis);
  the room only returns these when `shared` is set;
- `Store(text)`: append a message to the shared history (Redis);
- `Close(client, code, reason)`.

A room event becomes a Broadcast at once; with several workers, also a
Publish, which `deliver` turns into a Broadcast in the other workers (and
ignores in this one). So this process's clients never wait for Redis.
Each worker announces how many clients it has, so every room can show the
number of people online across all of them.

What a reconnecting client could otherwise amplify is bounded:

- messages, joins and renames are limited per client address (see
  `ratelimit`), across its connections and for a while after they end;
- the number of people online is broadcast by `tick` only (the servers
  call it every second), and only when it changed: at most one presence
  update a second, however many clients come and go; the announcements
  to other workers likewise;
- `left` only follows a join that went through (and so was rate limited).

Whatever arrives from the hub (`deliver`, the shared history given to
`connect`) is checked as closely as what clients send; what fails is
dropped and counted in `rejected` (the server logs it, throttled).

`now` is wall-clock time (`time.time()`): it stamps messages, and the rate
limits and presence timeouts tolerate it stepping back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .protocol import (
    MAX_TEXT,
    Invalid,
    Join,
    Say,
    encode,
    error,
    max_envelope,
    nick_keys,
    parse_command,
    parse_envelope,
    parse_stored,
)
from .ratelimit import UNKNOWN, Addresses, AddressLimits, address_key

# Each worker announces its count every second (at its ticks), so a worker
# that died (SIGKILL: no goodbye) leaves everyone's count within a few
# seconds; W workers cost W small messages a second on the channel.
PRESENCE_INTERVAL = 1.0  # seconds between a worker's presence announcements
PRESENCE_TIMEOUT = 4.0  # a worker silent this long is gone (a late tick or two allowed)
NOTICE_INTERVAL = 1.0  # at most one rate-limit notice per client per second
MAX_WORKERS = 1024  # other workers whose counts are kept (anyone can claim to be one)


@dataclass(frozen=True, slots=True)
class Send:
    client: int
    text: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    text: str


@dataclass(frozen=True, slots=True)
class Publish:
    text: str


@dataclass(frozen=True, slots=True)
class Store:
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    client: int
    code: int
    reason: str


Action = Send | Broadcast | Publish | Store | Close


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomConfig:
    history: int = 50  # messages a newcomer receives
    rate: float = 2.0  # messages per second, per address, once the burst is spent
    burst: int = 10
    join_rate: float = 1.0  # joins and renames per second, per address, after the burst
    join_burst: int = 20
    max_text: int = MAX_TEXT
    worker: str = "w0"  # this process's name among the workers
    shared: bool = False  # rooms are shared through a hub (Redis)


@dataclass(slots=True)
class _Client:
    address: str  # the key of its limits in `Room._addresses`
    limits: AddressLimits
    nick: str | None = None
    keys: tuple[str, str] = ("", "")  # nick_keys(nick), once it has one
    notice_at: float = float("-inf")


@dataclass(slots=True)
class Room:
    config: RoomConfig = field(default_factory=RoomConfig)
    rejected: int = 0  # events and history items from the hub that were dropped
    rejection: str = ""  # why the last one was
    _clients: dict[int, _Client] = field(default_factory=dict)
    _folded: dict[str, int] = field(default_factory=dict)  # nick_keys()[0] -> client
    _cased: dict[str, int] = field(default_factory=dict)  # nick_keys()[1] -> client
    _addresses: Addresses = field(init=False)
    _history: deque[str] = field(init=False)
    _checked: dict[str, str | None] = field(default_factory=dict)  # shared history items
    _others: dict[str, tuple[int, float]] = field(default_factory=dict)  # worker -> (count, seen)
    _shown_online: int = 0  # the number of people online the clients were last shown
    _announced: int = -1
    _announced_at: float = float("-inf")

    def __post_init__(self) -> None:
        config = self.config
        self._history = deque(maxlen=config.history)
        self._addresses = Addresses(
            rate=config.rate,
            burst=config.burst,
            join_rate=config.join_rate,
            join_burst=config.join_burst,
        )

    # -- what the server reads ------------------------------------------------

    @property
    def clients(self) -> frozenset[int]:
        return frozenset(self._clients)

    def nick(self, client: int) -> str | None:
        return self._clients[client].nick

    @property
    def history(self) -> list[str]:
        """This process's copy of the recent messages (the shared history's
        fallback when Redis is away)."""
        return list(self._history)

    @property
    def addresses(self) -> int:
        """Addresses whose limits are remembered (bounded; see `ratelimit`)."""
        return len(self._addresses)

    def online(self, now: float) -> int:
        fresh = (n for n, seen in self._others.values() if now - seen < PRESENCE_TIMEOUT)
        return len(self._clients) + sum(fresh)

    # -- what happened -----------------------------------------------------------

    def connect(
        self,
        client: int,
        now: float,
        history: list[str] | None = None,
        *,
        address: str = UNKNOWN,
    ) -> list[Action]:
        """A client connected from `address` (its IP). `history` is the
        shared history if the server fetched it (Redis); otherwise this
        room's own is sent. The others learn of the newcomer at the next
        `tick`."""
        if client in self._clients:
            raise ValueError(f"client {client} is already in the room")
        past = self._past(history)  # (before any change: nothing below can fail)
        key = address_key(address)
        self._clients[client] = _Client(key, self._addresses.enter(key, now))
        welcome = (
            f'{{"type":"welcome","history":[{",".join(past)}],'
            f'"online":{self.online(now)},"max_text":{self.config.max_text}}}'
        )
        return [Send(client, welcome)]

    def seed_history(self, history: list[str]) -> None:
        """Take the shared history (Redis) as this room's own, checked item
        by item. From then on the room keeps it up to date itself (its own
        events and the other workers' all pass through it), so newcomers
        need no round trip to Redis: one per Redis session will do."""
        self._history.clear()
        self._history.extend(self._past(history))

    def disconnect(self, client: int, now: float) -> list[Action]:
        gone = self._clients.pop(client, None)
        if gone is None:
            return []
        self._addresses.leave(gone.address, now)
        if gone.nick is None:
            return []  # never announced: nothing to take back
        self._forget_nick(client, gone)
        return self._room_event({"type": "left", "nick": gone.nick}, now)

    def receive(self, client: int, raw: str | bytes, now: float) -> list[Action]:
        """A message from a client: a command, or an error for it alone."""
        state = self._clients.get(client)
        if state is None:
            return []
        wait = state.limits.messages.take(now)
        if wait:
            if now - state.notice_at < NOTICE_INTERVAL:
                return []  # already told; a flood must not become a flood of notices
            state.notice_at = now
            notice = error(
                "rate_limited", "slow down: that message was not sent", retry_after=round(wait, 2)
            )
            return [Send(client, notice)]
        command = parse_command(raw, max_text=self.config.max_text)
        if isinstance(command, Invalid):
            return [Send(client, error(command.code, command.text))]
        if isinstance(command, Join):
            return self._join(client, state, command.nick, now)
        assert isinstance(command, Say)
        if state.nick is None:
            return [Send(client, error("not_joined", "choose a nickname first"))]
        message = {"type": "message", "nick": state.nick, "text": command.text, "time": now}
        return self._room_event(message, now)

    def deliver(self, envelope: str, now: float) -> list[Action]:
        """An event published by a worker came back (this one's own are
        ignored: they were broadcast here already).

        Anyone who can publish on the channel can send anything: the
        envelope is checked field by field (`protocol.parse_envelope`), and
        what is sent on is re-encoded from the checked fields. Whatever
        fails is dropped (counted in `rejected`); this never raises."""
        parsed = parse_envelope(envelope, max_text=self.config.max_text)
        if isinstance(parsed, Invalid):
            return self._reject(parsed.text)
        event = parsed.event
        if parsed.worker == self.config.worker:
            return []  # ours: broadcast here when it happened (see `_room_event`)
        if event["type"] == "presence":
            return self._count_other(parsed.worker, event["count"], now)
        text = encode(event)
        if event["type"] == "message":
            self._history.append(text)
        return [Broadcast(text)]

    def tick(self, now: float) -> list[Action]:
        """Call every second or so: broadcasts the number of people online
        if it changed since the last tick, announces this worker's count to
        the others (when it changed, and every PRESENCE_INTERVAL anyway),
        and forgets silent workers and idle addresses."""
        self._addresses.expire(now)
        for worker, (_, seen) in list(self._others.items()):
            if now - seen >= PRESENCE_TIMEOUT:
                del self._others[worker]
        actions: list[Action] = []
        online = self.online(now)
        if online != self._shown_online:
            self._shown_online = online
            actions.append(Broadcast(encode({"type": "presence", "online": online})))
        if self.config.shared and (
            len(self._clients) != self._announced
            or not 0 <= now - self._announced_at < PRESENCE_INTERVAL
        ):
            actions.append(self._announce(now))
        return actions

    # -- inside ----------------------------------------------------------------

    def _past(self, history: list[str] | None) -> list[str]:
        """What a newcomer is shown: the last `history` messages, from the
        shared history (checked and re-encoded item by item; invalid items
        are skipped) or from this room's own."""
        wanted = self.config.history
        if not wanted:
            return []  # (and a slice [-0:] would be everything)
        if history is None:
            return list(self._history)
        if len(self._checked) > 2 * len(history):
            self._checked.clear()  # (bounded by what the caller holds anyway)
        past: list[str] = []
        for raw in reversed(history):
            if len(past) == wanted:
                break
            item = self._check_stored(raw)
            if item is not None:
                past.append(item)
        past.reverse()
        return past

    def _check_stored(self, raw: object) -> str | None:
        """`protocol.parse_stored`, remembered: every newcomer gets the same
        items, which need checking once (the memo holds at most about two
        histories' worth of items of bounded size)."""
        if not isinstance(raw, str) or len(raw) > max_envelope(self.config.max_text):
            self._reject("invalid item in the shared history")
            return None
        if raw in self._checked:
            return self._checked[raw]
        item = parse_stored(raw, max_text=self.config.max_text)
        self._checked[raw] = item
        if item is None:
            self._reject("invalid item in the shared history")
        return item

    def _reject(self, reason: str) -> list[Action]:
        self.rejected += 1
        self.rejection = reason
        return []

    def _count_other(self, worker: str, count: object, now: float) -> list[Action]:
        """Another worker's client count: shown at the next tick."""
        if worker not in self._others and len(self._others) >= MAX_WORKERS:
            return self._reject("too many workers")
        assert isinstance(count, int)
        self._others[worker] = (count, now)
        return []

    def _join(self, client: int, state: _Client, nick: str, now: float) -> list[Action]:
        if nick == state.nick:
            return [Send(client, encode({"type": "you", "nick": nick}))]
        folded, cased = keys = nick_keys(nick)
        if self._folded.get(folded, client) != client or self._cased.get(cased, client) != client:
            return [Send(client, error("nick_taken", f"{nick!r} is taken here"))]
        wait = state.limits.joins.take(now)
        if wait:  # every join and rename is broadcast: refused, and always told
            notice = "too many joins and renames: that one was not made"
            return [Send(client, error("rate_limited", notice, retry_after=round(wait, 2)))]
        old = state.nick
        if old is not None:
            self._forget_nick(client, state)
        state.nick, state.keys = nick, keys
        self._folded[folded] = self._cased[cased] = client
        event: dict[str, object] = (
            {"type": "joined", "nick": nick}
            if old is None
            else {"type": "renamed", "from": old, "to": nick}
        )
        return [Send(client, encode({"type": "you", "nick": nick})), *self._room_event(event, now)]

    def _forget_nick(self, client: int, state: _Client) -> None:
        folded, cased = state.keys
        if self._folded.get(folded) == client:
            del self._folded[folded]
        if self._cased.get(cased) == client:
            del self._cased[cased]

    def _room_event(self, event: dict[str, object], now: float) -> list[Action]:
        """This process's clients get the event at once, whatever Redis
        does: Redis only carries it to the other workers (and `deliver`
        ignores it when it comes back), so a slow or stalled Redis delays
        what crosses workers, never what stays in one."""
        text = encode(event)
        if event["type"] == "message":
            self._history.append(text)
        actions: list[Action] = [Broadcast(text)]
        if self.config.shared:
            actions.append(Publish(encode({"worker": self.config.worker, "event": event})))
            if event["type"] == "message" and self.config.history:
                actions.append(Store(text))
        return actions

    def _announce(self, now: float) -> Publish:
        self._announced = len(self._clients)
        self._announced_at = now
        event = {"type": "presence", "count": self._announced}
        return Publish(encode({"worker": self.config.worker, "event": event}))
