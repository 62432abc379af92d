"""The chat room, sans-IO: events in, actions out.

The room knows the clients of this process, their nicknames and rate
limits, and the recent history. It never touches a socket or a clock: the
server tells it what happened (a client connected, sent something, left;
an event arrived from another worker; time passed) and carries out the
actions it returns:

- `Send(client, text)`: to one client (its welcome, its own errors);
- `Broadcast(text)`: to every client of this process, framed once;
- `Publish(text)`: to every worker's room, through the hub (Redis); the
  room only returns these when `shared` is set, and expects each one back
  through `deliver`, including its own;
- `Store(text)`: append a message to the shared history (Redis);
- `Close(client, code, reason)`.

In one process (`shared=False`) a room event becomes a Broadcast at once.
With several workers, it becomes a Publish; `deliver` turns what comes back
into a Broadcast. Each worker announces how many clients it has, so every
room can show the number of people online across all of them.

`now` is wall-clock time (`time.time()`): it stamps messages, and the rate
limits and presence timeouts tolerate it stepping back.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from .protocol import MAX_TEXT, Invalid, Join, Say, encode, error, parse_command
from .ratelimit import TokenBucket

PRESENCE_INTERVAL = 5.0  # seconds between a worker's presence announcements
PRESENCE_TIMEOUT = 3 * PRESENCE_INTERVAL  # a worker silent this long is gone
NOTICE_INTERVAL = 1.0  # at most one rate-limit notice per client per second


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
    rate: float = 2.0  # messages per second, per client, once the burst is spent
    burst: int = 10
    max_text: int = MAX_TEXT
    worker: str = "w0"  # this process's name among the workers
    shared: bool = False  # rooms are shared through a hub (Redis)


@dataclass(slots=True)
class _Client:
    bucket: TokenBucket
    nick: str | None = None
    notice_at: float = float("-inf")


@dataclass(slots=True)
class Room:
    config: RoomConfig = field(default_factory=RoomConfig)
    _clients: dict[int, _Client] = field(default_factory=dict)
    _history: deque[str] = field(init=False)
    _others: dict[str, tuple[int, float]] = field(default_factory=dict)  # worker -> (count, seen)
    _shown_online: int = -1
    _announced_at: float = float("-inf")

    def __post_init__(self) -> None:
        self._history = deque(maxlen=self.config.history)

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

    def online(self, now: float) -> int:
        fresh = (n for n, seen in self._others.values() if now - seen < PRESENCE_TIMEOUT)
        return len(self._clients) + sum(fresh)

    # -- what happened -----------------------------------------------------------

    def connect(self, client: int, now: float, history: list[str] | None = None) -> list[Action]:
        """A client connected. `history` is the shared history if the server
        fetched it (Redis); otherwise this room's own is sent."""
        if client in self._clients:
            raise ValueError(f"client {client} is already in the room")
        config = self.config
        self._clients[client] = _Client(TokenBucket(config.rate, config.burst, now))
        if not config.history:
            past: list[str] = []  # (and a slice [-0:] would be everything)
        else:
            past = self.history if history is None else history[-config.history :]
        welcome = (
            f'{{"type":"welcome","history":[{",".join(past)}],'
            f'"online":{self.online(now)},"max_text":{config.max_text}}}'
        )
        return [Send(client, welcome), *self._presence_changed(now)]

    def disconnect(self, client: int, now: float) -> list[Action]:
        gone = self._clients.pop(client, None)
        if gone is None:
            return []
        actions = self._presence_changed(now)
        if gone.nick is not None:
            actions[:0] = self._room_event({"type": "left", "nick": gone.nick}, now)
        return actions

    def receive(self, client: int, raw: str | bytes, now: float) -> list[Action]:
        """A message from a client: a command, or an error for it alone."""
        state = self._clients[client]
        wait = state.bucket.take(now)
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
        """An event published by a worker (maybe this one) came back."""
        try:
            data = json.loads(envelope)
            worker, event = data["worker"], data["event"]
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            return []  # not ours: the channel is shared with whatever else publishes
        if kind == "presence":
            if worker != self.config.worker:
                self._others[worker] = (int(event["count"]), now)
            return self._presence_changed(now, announce=False)
        text = encode(event)
        if kind == "message":
            self._history.append(text)
        return [Broadcast(text)]

    def tick(self, now: float) -> list[Action]:
        """Call every second or so: announces this worker's presence and
        notices workers that went silent."""
        if not self.config.shared:
            return []
        actions = self._presence_changed(now, announce=False)
        if now - self._announced_at >= PRESENCE_INTERVAL:
            actions.append(self._announce(now))
        return actions

    # -- inside ----------------------------------------------------------------

    def _join(self, client: int, state: _Client, nick: str, now: float) -> list[Action]:
        if nick == state.nick:
            return [Send(client, encode({"type": "you", "nick": nick}))]
        wanted = nick.casefold()
        if any(c.nick is not None and c.nick.casefold() == wanted for c in self._clients.values()):
            return [Send(client, error("nick_taken", f"{nick!r} is taken here"))]
        old, state.nick = state.nick, nick
        event: dict[str, object] = (
            {"type": "joined", "nick": nick}
            if old is None
            else {"type": "renamed", "from": old, "to": nick}
        )
        return [Send(client, encode({"type": "you", "nick": nick})), *self._room_event(event, now)]

    def _room_event(self, event: dict[str, object], now: float) -> list[Action]:
        if not self.config.shared:
            text = encode(event)
            if event["type"] == "message":
                self._history.append(text)
            return [Broadcast(text)]
        actions: list[Action] = [Publish(encode({"worker": self.config.worker, "event": event}))]
        if event["type"] == "message" and self.config.history:
            actions.append(Store(encode(event)))
        return actions

    def _presence_changed(self, now: float, *, announce: bool = True) -> list[Action]:
        actions: list[Action] = []
        online = self.online(now)
        if online != self._shown_online:
            self._shown_online = online
            actions.append(Broadcast(encode({"type": "presence", "online": online})))
        if announce and self.config.shared:
            actions.append(self._announce(now))
        return actions

    def _announce(self, now: float) -> Publish:
        self._announced_at = now
        event = {"type": "presence", "count": len(self._clients)}
        return Publish(encode({"worker": self.config.worker, "event": event}))
