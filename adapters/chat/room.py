"""The chat room, sans-IO: events in, actions out.

The room knows the clients of this process, their nicknames and rate
limits, and the recent history. It never touches a socket or a clock: the
server tells it what happened (a client connected, sent something, left;
an event arrived from another worker; Redis answered a claim; time passed)
and carries out the actions it returns:

- `Send(client, text)`: to one client (its welcome, its own errors);
- `Broadcast(text)`: to every client of this process, framed once;
- `Publish(text)`: to the other workers' rooms, through the hub (Redis);
  the room only returns these when `shared` is set;
- `Store(text)`: append a message to the shared history (Redis);
- `Close(client, code, reason)`;
- with `shared` only, for nicknames held across workers: `Claim(client,
  nick, keys)` (take these keys in the hub for this client unless someone
  else holds one; the answer comes back as `claimed`), `Release(client,
  keys)` (let go of those this client holds) and `Refresh(held)` (keep
  holding them: they expire in the hub unless refreshed, so those of a
  worker that died go by themselves).

A message becomes a Broadcast at once; with several workers, also a
Publish, which `deliver` turns into a Broadcast in the other workers (and
ignores in this one). So this process's clients never wait for Redis.

Presence (who joined, left, or took another name, and how many people are
online) is coalesced: `tick` (every second) sends at most one presence
update to this process's clients, listing at most `MAX_NAMES` names per
list and counting the rest, and only when something changed. It reports
the net change since the last tick: someone who joins and leaves between
two ticks is not announced at all (their messages, if any, went out under
their name), someone who renames twice is announced once, from the first
name to the last, and a name that leaves and comes back (a page reloaded)
is not announced. Each worker's announcement to the others (also once a
tick) carries its count and its own clients' changes, which the other
rooms fold into their next update. So N people arriving cost each client
one update a second, of bounded size, and crossing workers costs one
message per worker per tick, not one per join.

Nicknames. Without a hub, a nickname is unique in this process, and taken
at once. With one (`shared`), it must be unique across the workers: a join
or rename keeps the name reserved here and returns a `Claim`; the client
is told `you` only once `claimed` says the hub agreed (or `nick_taken` if
someone on another worker holds it). One claim per client at a time: a
join while one is pending is refused ("nick_pending"). When a client
leaves or renames, what it held is released at once (`Release` is queued
on the same connection as any claim after it, so a name given up can be
taken again straight away). A reply for a claim that no longer matters
(the client left) is ignored: its keys were released when it left.

When Redis is away, the chat carries on as it does for messages: the
chat process answers a claim it cannot send (or whose reply was lost) as
granted, so nicknames are then unique in this process only; `Refresh`
claims again whatever the hub forgot (keys that expired during the
outage) once it is back. If by then someone on another worker took the
same name meanwhile, the one whose worker refreshes second loses it
(`lost`: told "nick_lost", announced as having left, and free to choose
another). Better than refusing every join while Redis is down: the room
stays usable, and a clash is rare, visible and resolved within seconds
of Redis returning.

What a reconnecting client could otherwise amplify is bounded:

- messages, joins and renames are limited per client address (see
  `ratelimit`), across its connections and for a while after they end;
- presence goes out by `tick` only (the servers call it every second), and
  only when something changed: at most one bounded update a second,
  however many clients come and go; the announcements to other workers
  likewise;
- `left` only follows a join that went through (and so was rate limited).

Whatever arrives from the hub (`deliver`, the shared history given to
`connect`) is checked as closely as what clients send; what fails is
dropped and counted in `rejected` (the server logs it, throttled).

`now` is wall-clock time (`time.time()`): it stamps messages, and the rate
limits and presence timeouts tolerate it stepping back.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from .protocol import (
    MAX_COUNT,
    MAX_NAMES,
    MAX_TEXT,
    PRESENCE_LISTS,
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
# Nicknames held in the hub are refreshed this often; they expire there
# after `settings.NICK_TTL` (several refreshes later), so a worker that died
# lets go of its people's names within that.
NICK_REFRESH = 2.0


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


@dataclass(frozen=True, slots=True)
class Claim:
    """Take `keys` in the hub for `client`, unless another holds one of
    them; answer with `Room.claimed(client, nick, ok, now)`."""

    client: int
    nick: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Release:
    """Let go of those of `keys` that `client` holds in the hub."""

    client: int
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refresh:
    """Keep holding these (client, nick, keys) in the hub, taking again
    any that expired; for each one held by another meanwhile, answer
    with `Room.lost(client, nick, now)`."""

    held: tuple[tuple[int, str, tuple[str, ...]], ...]


Action = Send | Broadcast | Publish | Store | Close | Claim | Release | Refresh


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


def hub_keys(keys: tuple[str, str]) -> tuple[str, ...]:
    """A nickname's two `nick_keys` as the hub's keys: each in a namespace
    of its own, as they are two separate tables here."""
    folded, cased = keys
    return (f"f:{folded}", f"c:{cased}")


@dataclass(slots=True)
class _Client:
    address: str  # the key of its limits in `Room._addresses`
    limits: AddressLimits
    nick: str | None = None
    keys: tuple[str, str] = ("", "")  # nick_keys(nick), once it has one
    shown: str | None = None  # the nick the others were last told of (at a tick)
    pending: str | None = None  # a nick being claimed in the hub
    pending_keys: tuple[str, str] = ("", "")
    notice_at: float = float("-inf")


@dataclass(slots=True)
class Batch:
    """Joins, leaves and renames for one presence update: at most
    `MAX_NAMES` of each listed, the rest counted (up to `MAX_COUNT`)."""

    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    renamed: list[list[str]] = field(default_factory=list)
    more: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.joined or self.left or self.renamed or self.more)

    def add(self, kind: str, items: list[str] | list[list[str]], more: int = 0) -> None:
        listed: list[object] = getattr(self, kind)
        room = max(0, MAX_NAMES - len(listed))
        listed.extend(items[:room])
        more += len(items) - len(items[:room])
        if more:
            self.more[kind] = min(MAX_COUNT, self.more.get(kind, 0) + more)

    def add_event(self, event: dict[str, object]) -> None:
        """Fold in the lists of a checked presence event."""
        for kind in PRESENCE_LISTS:
            items = event.get(kind, [])
            more = event.get(f"{kind}_more", 0)
            assert isinstance(items, list)
            assert isinstance(more, int)
            self.add(kind, items, more)

    def fields(self) -> dict[str, object]:
        """As the optional fields of a presence event (empty ones left out)."""
        out: dict[str, object] = {}
        for kind in PRESENCE_LISTS:
            listed = getattr(self, kind)
            if listed:
                out[kind] = listed
            if self.more.get(kind):
                out[f"{kind}_more"] = self.more[kind]
        return out


@dataclass(slots=True)
class Room:
    config: RoomConfig = field(default_factory=RoomConfig)
    rejected: int = 0  # events and history items from the hub that were dropped
    rejection: str = ""  # why the last one was
    rate_limited: int = 0  # messages, joins and renames refused by a rate limit
    _clients: dict[int, _Client] = field(default_factory=dict)
    # nick_keys()[0] and [1] -> the client holding (or claiming) that nick
    _folded: dict[str, int] = field(default_factory=dict)
    _cased: dict[str, int] = field(default_factory=dict)
    _addresses: Addresses = field(init=False)
    _history: deque[str] = field(init=False)
    _checked: dict[str, str | None] = field(default_factory=dict)  # shared history items
    _others: dict[str, tuple[int, float]] = field(default_factory=dict)  # worker -> (count, seen)
    _changed: dict[int, None] = field(default_factory=dict)  # clients whose nick changed
    _gone: list[str] = field(default_factory=list)  # nicks shown, of clients gone since
    _incoming: Batch = field(default_factory=Batch)  # the other workers', since the last tick
    _shown_online: int = 0  # the number of people online the clients were last shown
    _announced: int = -1
    _announced_at: float = float("-inf")
    _refreshed_at: float = float("-inf")

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
        """A client left: the others learn it at the next tick (if they
        were told it had come); what it held or claimed is released."""
        gone = self._clients.pop(client, None)
        if gone is None:
            return []
        self._addresses.leave(gone.address, now)
        self._changed.pop(client, None)
        if gone.shown is not None:
            self._gone.append(gone.shown)
        released: tuple[str, ...] = ()
        if gone.nick is not None:
            self._unreserve(client, gone.keys)
            released += hub_keys(gone.keys)
        if gone.pending is not None:
            self._unreserve(client, gone.pending_keys)
            released += tuple(k for k in hub_keys(gone.pending_keys) if k not in released)
        if released and self.config.shared:
            return [Release(client, released)]
        return []

    def receive(self, client: int, raw: str | bytes, now: float) -> list[Action]:
        """A message from a client: a command, or an error for it alone."""
        state = self._clients.get(client)
        if state is None:
            return []
        wait = state.limits.messages.take(now)
        if wait:
            self.rate_limited += 1
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
        return self._message(message)

    def claimed(self, client: int, nick: str, ok: bool, now: float) -> list[Action]:
        """The hub's answer to `Claim(client, nick, ...)`: `ok` if the nick
        is now this client's across the workers. An answer that no longer
        matters (the client left, and released what it claimed) is
        ignored."""
        state = self._clients.get(client)
        if state is None or state.pending != nick:
            return []
        keys, state.pending = state.pending_keys, None
        if not ok:
            self._unreserve(client, keys, keep=state.keys)
            return [Send(client, error("nick_taken", f"{nick!r} is taken"))]
        old = state.keys if state.nick is not None else None
        self._take(client, state, nick, keys)
        actions: list[Action] = [Send(client, encode({"type": "you", "nick": nick}))]
        if old is not None:
            still = hub_keys(keys)
            released = tuple(k for k in hub_keys(old) if k not in still)
            if released:
                actions.append(Release(client, released))
        return actions

    def lost(self, client: int, nick: str, now: float) -> list[Action]:
        """The hub says someone else holds `nick` (taken elsewhere while
        Redis was away, see the module's docstring): the client gives it
        up, and is told so."""
        state = self._clients.get(client)
        if state is None or state.nick != nick:
            return []
        claiming = state.pending_keys if state.pending is not None else ("", "")
        self._unreserve(client, state.keys, keep=claiming)
        pending = hub_keys(claiming) if state.pending is not None else ()
        released = tuple(k for k in hub_keys(state.keys) if k not in pending)
        state.nick, state.keys = None, ("", "")
        self._changed[client] = None
        text = f"{nick!r} was taken on another worker while the chat was split: choose another"
        return [Release(client, released), Send(client, error("nick_lost", text))]

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
            return []  # ours: broadcast here when it happened (see `_message`)
        if event["type"] == "presence":
            return self._count_other(parsed.worker, event, now)
        text = encode(event)
        self._history.append(text)  # (a message: the only other kind)
        return [Broadcast(text)]

    def tick(self, now: float) -> list[Action]:
        """Call every second or so: sends this process's clients one
        presence update if anything changed since the last tick (the count
        online, who came, went or took another name, here or on other
        workers), announces this worker's count and changes to the others
        (when there are any, and every PRESENCE_INTERVAL anyway), refreshes
        the nicknames held in the hub, and forgets silent workers and idle
        addresses."""
        self._addresses.expire(now)
        for worker, (_, seen) in list(self._others.items()):
            if now - seen >= PRESENCE_TIMEOUT:
                del self._others[worker]
        ours = self._changes()
        shown = Batch()
        for kind in PRESENCE_LISTS:
            shown.add(kind, getattr(ours, kind), ours.more.get(kind, 0))
            shown.add(kind, getattr(self._incoming, kind), self._incoming.more.get(kind, 0))
        self._incoming = Batch()
        actions: list[Action] = []
        online = self.online(now)
        if online != self._shown_online or shown:
            self._shown_online = online
            presence = {"type": "presence", "online": online, **shown.fields()}
            actions.append(Broadcast(encode(presence)))
        if not self.config.shared:
            return actions
        if (
            ours
            or len(self._clients) != self._announced
            or not 0 <= now - self._announced_at < PRESENCE_INTERVAL
        ):
            actions.append(self._announce(ours, now))
        if not 0 <= now - self._refreshed_at < NICK_REFRESH:
            self._refreshed_at = now
            held = tuple(
                (client, state.nick, hub_keys(state.keys))
                for client, state in self._clients.items()
                if state.nick is not None
            )
            if held:
                actions.append(Refresh(held))
        return actions

    def refresh_soon(self) -> None:
        """Refresh the nicknames at the next tick (Redis is back: what it
        forgot meanwhile is best claimed again at once)."""
        self._refreshed_at = float("-inf")

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

    def _count_other(self, worker: str, event: dict[str, object], now: float) -> list[Action]:
        """Another worker's client count and changes: shown at the next
        tick (the changes bounded however many workers send them)."""
        if worker not in self._others and len(self._others) >= MAX_WORKERS:
            return self._reject("too many workers")
        count = event["count"]
        assert isinstance(count, int)
        self._others[worker] = (count, now)
        self._incoming.add_event(event)
        return []

    def _join(self, client: int, state: _Client, nick: str, now: float) -> list[Action]:
        if state.pending is not None:
            text = f"{state.pending!r} is still being checked: try again in a moment"
            return [Send(client, error("nick_pending", text))]
        if nick == state.nick:
            return [Send(client, encode({"type": "you", "nick": nick}))]
        folded, cased = keys = nick_keys(nick)
        if self._folded.get(folded, client) != client or self._cased.get(cased, client) != client:
            return [Send(client, error("nick_taken", f"{nick!r} is taken here"))]
        wait = state.limits.joins.take(now)
        if wait:  # every join and rename is announced: refused, and always told
            self.rate_limited += 1
            notice = "too many joins and renames: that one was not made"
            return [Send(client, error("rate_limited", notice, retry_after=round(wait, 2)))]
        if self.config.shared:  # reserved here while the hub is asked
            state.pending, state.pending_keys = nick, keys
            self._folded[folded] = self._cased[cased] = client
            return [Claim(client, nick, hub_keys(keys))]
        self._take(client, state, nick, keys)
        return [Send(client, encode({"type": "you", "nick": nick}))]

    def _take(self, client: int, state: _Client, nick: str, keys: tuple[str, str]) -> None:
        """`client` is `nick` now; the others learn it at the next tick."""
        if state.nick is not None:
            self._unreserve(client, state.keys, keep=keys)
        state.nick, state.keys = nick, keys
        self._folded[keys[0]] = self._cased[keys[1]] = client
        self._changed[client] = None

    def _unreserve(
        self, client: int, keys: tuple[str, str], keep: tuple[str, str] = ("", "")
    ) -> None:
        """Free `keys` here if `client` has them (but those also in `keep`,
        the keys of the nick it goes on holding or claiming)."""
        folded, cased = keys
        if folded != keep[0] and self._folded.get(folded) == client:
            del self._folded[folded]
        if cased != keep[1] and self._cased.get(cased) == client:
            del self._cased[cased]

    def _changes(self) -> Batch:
        """This process's net changes since the last tick, which the others
        are now told of: who joined (had no name shown, has one now), left
        (had one, is gone or has none) or renamed. A name both gone and
        come (a reload) is neither."""
        joined: list[str] = []
        left = self._gone
        renamed: list[list[str]] = []
        for client in self._changed:
            state = self._clients[client]
            before, after = state.shown, state.nick
            state.shown = after
            if before is None:
                if after is not None:
                    joined.append(after)
            elif after is None:
                left.append(before)
            elif before != after:
                renamed.append([before, after])
        self._changed, self._gone = {}, []
        back = Counter(joined) & Counter(left)
        if back:
            joined = _without(joined, back)
            left = _without(left, back)
        batch = Batch()
        batch.add("joined", joined)
        batch.add("left", left)
        batch.add("renamed", renamed)
        return batch

    def _message(self, message: dict[str, object]) -> list[Action]:
        """This process's clients get a message at once, whatever Redis
        does: Redis only carries it to the other workers (and `deliver`
        ignores it when it comes back), so a slow or stalled Redis delays
        what crosses workers, never what stays in one."""
        text = encode(message)
        self._history.append(text)
        actions: list[Action] = [Broadcast(text)]
        if self.config.shared:
            actions.append(Publish(encode({"worker": self.config.worker, "event": message})))
            if self.config.history:
                actions.append(Store(text))
        return actions

    def _announce(self, changes: Batch, now: float) -> Publish:
        self._announced = len(self._clients)
        self._announced_at = now
        event = {"type": "presence", "count": self._announced, **changes.fields()}
        return Publish(encode({"worker": self.config.worker, "event": event}))


def _without(names: list[str], drop: Counter[str]) -> list[str]:
    """`names` less `drop[name]` occurrences of each name (the first ones)."""
    drop = drop.copy()
    kept = []
    for name in names:
        if drop[name] > 0:
            drop[name] -= 1
        else:
            kept.append(name)
    return kept
