"""The sans-IO room: unit tests, and hypothesis over any sequence of
connects, joins, messages and leaves, in one process and across workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.chat.protocol import MAX_NAMES, nick_keys
from adapters.chat.ratelimit import KEEP, Addresses, address_key
from adapters.chat.room import (
    MAX_WORKERS,
    NICK_REFRESH,
    PRESENCE_INTERVAL,
    PRESENCE_TIMEOUT,
    Action,
    Broadcast,
    Claim,
    Publish,
    Refresh,
    Release,
    Room,
    RoomConfig,
    Send,
    Store,
    hub_keys,
)

T0 = 1_800_000_000.0


def join(nick: str) -> str:
    return json.dumps({"type": "join", "nick": nick})


def say(text: str) -> str:
    return json.dumps({"type": "message", "text": text})


def sent_to(actions: list[Action], client: int) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Send) and a.client == client]


def broadcasts(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Broadcast)]


def presence(actions: list[Action]) -> list[dict[str, Any]]:
    return [e for e in broadcasts(actions) if e["type"] == "presence"]


def announced(actions: list[Action]) -> list[dict[str, Any]]:
    """The events of this worker's Publish actions."""
    return [json.loads(a.text)["event"] for a in actions if isinstance(a, Publish)]


class Hub:
    """A perfect Redis for nickname claims: TAKE and GIVE_UP, at once."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def take(self, holder: str, keys: tuple[str, ...]) -> bool:
        if any(self.keys.get(key, holder) != holder for key in keys):
            return False
        self.keys.update(dict.fromkeys(keys, holder))
        return True

    def run(self, room: Room, actions: list[Action], now: float) -> list[Action]:
        """Answer the claims, releases and refreshes in `actions` (and in what
        the answers lead to); returns every action, answers included."""
        out: list[Action] = []
        for action in actions:
            out.append(action)
            holder = f"{room.config.worker}:{getattr(action, 'client', '')}"
            if isinstance(action, Claim):
                ok = self.take(holder, action.keys)
                out += self.run(room, room.claimed(action.client, action.nick, ok, now), now)
            elif isinstance(action, Release):
                for key in action.keys:
                    if self.keys.get(key) == holder:
                        del self.keys[key]
            elif isinstance(action, Refresh):
                for client, nick, keys in action.held:
                    if not self.take(f"{room.config.worker}:{client}", keys):
                        out += self.run(room, room.lost(client, nick, now), now)
        return out


def test_welcome_then_join_then_message() -> None:
    room = Room(RoomConfig(history=2))
    actions = room.connect(1, T0)
    [welcome] = sent_to(actions, 1)
    assert welcome == {"type": "welcome", "history": [], "online": 1, "max_text": 2000}
    assert broadcasts(actions) == []  # the others learn it at the next tick
    assert broadcasts(room.tick(T0)) == [{"type": "presence", "online": 1}]
    actions = room.receive(1, join("ann"), T0)
    assert sent_to(actions, 1) == [{"type": "you", "nick": "ann"}]
    assert broadcasts(actions) == []  # announced at the next tick
    assert broadcasts(room.tick(T0 + 0.5)) == [{"type": "presence", "online": 1, "joined": ["ann"]}]
    for text in ("one", "two", "three"):
        [message] = broadcasts(room.receive(1, say(text), T0 + 1))
        assert message == {"type": "message", "nick": "ann", "text": text, "time": T0 + 1}
    # A newcomer gets the last `history` messages.
    [welcome] = sent_to(room.connect(2, T0 + 2), 2)
    assert [m["text"] for m in welcome["history"]] == ["two", "three"]
    assert welcome["online"] == 2


@pytest.mark.parametrize("shared", [False, True])
def test_no_history_keeps_and_stores_none(shared: bool) -> None:
    room = Room(RoomConfig(history=0, shared=shared))
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    actions = room.receive(1, say("gone"), T0)
    assert not any(isinstance(a, Store) for a in actions)
    [welcome] = sent_to(room.connect(2, T0, history=['{"type":"message"}']), 2)
    assert welcome["history"] == []


def test_errors_go_to_the_sender_only() -> None:
    room = Room()
    room.connect(1, T0)
    room.connect(2, T0)
    [(error)] = sent_to(room.receive(1, say("hi"), T0), 1)
    assert error["code"] == "not_joined"
    room.receive(1, join("Ann"), T0)
    actions = room.receive(2, join("aNN"), T0)
    assert [e["code"] for e in sent_to(actions, 2)] == ["nick_taken"]
    assert broadcasts(actions) == []
    assert [e["code"] for e in sent_to(room.receive(2, "{", T0), 2)] == ["invalid_json"]


def test_rename_and_leave_are_announced() -> None:
    room = Room()
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    assert room.receive(1, join("ann"), T0) == [Send(1, '{"type":"you","nick":"ann"}')]
    room.tick(T0)
    assert broadcasts(room.receive(1, join("anna"), T0 + 1)) == []
    assert presence(room.tick(T0 + 1)) == [
        {"type": "presence", "online": 1, "renamed": [["ann", "anna"]]}
    ]
    room.connect(9, T0 + 1)  # (someone stays, so the count changes)
    assert room.disconnect(1, T0 + 1) == []
    assert presence(room.tick(T0 + 2)) == [{"type": "presence", "online": 1, "left": ["anna"]}]
    assert room.disconnect(1, T0) == []  # twice is harmless
    room.connect(2, T0)
    with pytest.raises(ValueError, match="already"):
        room.connect(2, T0)


def test_rate_limit_refuses_with_one_notice_per_second() -> None:
    room = Room(RoomConfig(rate=1.0, burst=3))
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)  # the join spends a token too
    assert len(broadcasts(room.receive(1, say("a"), T0))) == 1
    assert len(broadcasts(room.receive(1, say("b"), T0))) == 1
    actions = room.receive(1, say("c"), T0)
    assert broadcasts(actions) == []
    [notice] = sent_to(actions, 1)
    assert notice["code"] == "rate_limited"
    assert notice["retry_after"] == 1.0
    assert room.receive(1, say("d"), T0 + 0.5) == []  # refused, not told twice
    assert len(broadcasts(room.receive(1, say("e"), T0 + 1.0))) == 1


def test_shared_room_broadcasts_at_once_and_publishes_for_the_others() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    assert [type(a) for a in room.connect(1, T0)] == [Send]
    assert [type(a) for a in room.tick(T0)] == [Broadcast, Publish]  # presence, announced
    [claim] = room.receive(1, join("ann"), T0)
    assert claim == Claim(1, "ann", hub_keys(nick_keys("ann")))
    room.claimed(1, "ann", True, T0)
    actions = room.receive(1, say("hello"), T0)
    assert [type(a) for a in actions] == [Broadcast, Publish, Store]
    broadcast, publish, store = actions
    assert isinstance(broadcast, Broadcast)
    assert isinstance(publish, Publish)
    assert isinstance(store, Store)
    # This worker's clients do not wait for Redis (a slow one must not
    # delay them); the other workers get it through the hub.
    assert json.loads(broadcast.text)["text"] == "hello"
    assert json.loads(publish.text) == {"worker": "w1", "event": json.loads(broadcast.text)}
    assert store.text == broadcast.text
    assert room.history == [broadcast.text]
    # Our own event coming back is not shown twice; another worker's is shown.
    assert room.deliver(publish.text, T0) == []
    other = Room(RoomConfig(shared=True, worker="w2"))
    assert broadcasts(other.deliver(publish.text, T0)) == [json.loads(broadcast.text)]
    assert other.history == [broadcast.text]
    assert room.deliver("not json", T0) == []
    assert room.deliver('{"worker": "x", "event": {}}', T0) == []


def test_presence_counts_other_workers_until_they_go_silent() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    room.connect(1, T0)
    room.tick(T0)
    other = json.dumps({"worker": "w2", "event": {"type": "presence", "count": 4}})
    assert room.deliver(other, T0) == []  # shown at the next tick
    assert broadcasts(room.tick(T0 + 1)) == [{"type": "presence", "online": 5}]
    assert room.online(T0 + PRESENCE_TIMEOUT - 1) == 5
    # w2 stops announcing: the tick notices, and announces us again.
    actions = room.tick(T0 + PRESENCE_TIMEOUT + 1)
    assert broadcasts(actions) == [{"type": "presence", "online": 1}]
    assert any(isinstance(a, Publish) for a in actions)
    later = T0 + PRESENCE_TIMEOUT + 1 + PRESENCE_INTERVAL / 2
    assert room.tick(later) == []  # announced less than PRESENCE_INTERVAL ago
    assert Room().tick(T0) == []  # one process: nothing to announce
    assert PRESENCE_INTERVAL < PRESENCE_TIMEOUT


# -- any sequence of events ---------------------------------------------------------

step = st.tuples(
    st.sampled_from(["connect", "join", "say", "leave", "garbage"]),
    st.integers(0, 5),  # which client
    st.sampled_from(["ann", "bob", "ANN", "zoë", "bad/nick", "x" * 30]),
    st.floats(0, 3),  # seconds since the previous step
)


def nicks_from(events: list[dict[str, Any]]) -> set[str]:
    """The nicknames that the presence updates, replayed, say are present:
    in each, those who left go, the renamed change names (all at once: two
    may have swapped), and those who joined come."""
    present: set[str] = set()
    for event in events:
        if event["type"] != "presence":
            continue
        assert "joined_more" not in event  # (too few people here to need it)
        for nick in event.get("left", []):
            present.remove(nick)
        renamed = event.get("renamed", [])
        for old, _ in renamed:
            present.remove(old)
        for _, new in renamed:
            assert new not in present
            present.add(new)
        for nick in event.get("joined", []):
            assert nick not in present
            present.add(nick)
    return present


@given(st.lists(step, max_size=60), st.integers(0, 5))
def test_any_sequence_keeps_one_room_consistent(steps: list[Any], history: int) -> None:
    room = Room(RoomConfig(history=history, rate=1.0, burst=3))
    now = T0
    seen: list[dict[str, Any]] = []
    for kind, client, nick, delay in steps:
        now += delay
        if kind == "connect":
            if client in room.clients:
                continue
            actions = room.connect(client, now)
            [welcome] = sent_to(actions, client)
            assert len(welcome["history"]) <= history
        elif client not in room.clients:
            continue
        elif kind == "join":
            actions = room.receive(client, join(nick), now)
        elif kind == "say":
            actions = room.receive(client, say(f"from {client}"), now)
        elif kind == "garbage":
            actions = room.receive(client, '{"type": 1}', now)
        else:
            actions = room.disconnect(client, now)
        actions += room.tick(now)  # (the servers tick every second)
        for action in actions:
            assert not isinstance(action, Publish | Store)  # one process: no hub
            if isinstance(action, Send):
                assert action.client in room.clients
        seen += broadcasts(actions)
        # Invariants: the announced nicks (replayed from the presence
        # updates) are the room's nicks, unique case-insensitively; the last
        # presence is the number of clients; only one presence per tick.
        nicks = [room.nick(c) for c in room.clients if room.nick(c) is not None]
        assert nicks_from(seen) == set(nicks)
        assert len({n.casefold() for n in nicks if n}) == len(nicks)
        presence = [e["online"] for e in seen if e["type"] == "presence"]
        assert (presence[-1] if presence else 0) == len(room.clients)
        assert len([a for a in broadcasts(actions) if a["type"] == "presence"]) <= 1
        assert len(room.history) <= history
        assert all(json.loads(m)["type"] == "message" for m in room.history)


@given(st.lists(st.tuples(st.integers(0, 2), step), max_size=40))
def test_workers_sharing_a_hub_agree(steps: list[Any]) -> None:
    """Three rooms wired through a perfect hub: every published event
    reaches each of them, and they end up agreeing on who is online and
    on the history."""
    rooms = [Room(RoomConfig(shared=True, worker=f"w{i}", rate=1.0, burst=3)) for i in range(3)]
    shared_history: list[str] = []
    hub = Hub()
    seen: list[list[dict[str, Any]]] = [[], [], []]  # what each room's clients were shown
    now = T0

    def run(actions: list[Action], room: Room | None = None) -> None:
        if room is not None:
            actions = hub.run(room, actions, now)
            seen[rooms.index(room)].extend(broadcasts(actions))
        for action in actions:
            if isinstance(action, Publish):
                for other in rooms:
                    run(other.deliver(action.text, now), other)
            elif isinstance(action, Store):
                shared_history.append(action.text)

    for worker, (kind, client, nick, delay) in steps:
        now += delay
        for room in rooms:  # the servers tick every second; steps are 3 s apart at most
            run(room.tick(now), room)
        room = rooms[worker]
        if kind == "connect" and client not in room.clients:
            run(room.connect(client, now, history=list(shared_history)), room)
        elif client in room.clients:
            if kind == "join":
                run(room.receive(client, join(nick), now), room)
            elif kind == "say":
                run(room.receive(client, say("hi"), now), room)
            elif kind == "leave":
                run(room.disconnect(client, now), room)
        # A nickname is held by one client across all the workers.
        nicks = [r.nick(c) for r in rooms for c in r.clients if r.nick(c) is not None]
        assert len({nick_keys(n)[0] for n in nicks if n}) == len(nicks)
    for _ in range(2):  # two ticks later, everyone has announced and shown all
        now += 1
        for room in rooms:
            run(room.tick(now), room)
    total = sum(len(room.clients) for room in rooms)
    assert [room.online(now) for room in rooms] == [total] * 3
    everyone = {r.nick(c) for r in rooms for c in r.clients} - {None}
    for room, shown in zip(rooms, seen, strict=True):
        assert room.history == shared_history[-50:]
        assert nicks_from(shown) == everyone
    # What the hub holds is exactly the nicknames held.
    held = {f"{r.config.worker}:{c}" for r in rooms for c in r.clients if r.nick(c)}
    assert set(hub.keys.values()) == held


# -- what is accepted can be sent, and the room stays usable (issue 9, 3) ----------


def every_text(actions: list[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Send | Broadcast | Publish | Store)]


def assert_sendable(actions: list[Action]) -> None:
    """Each text can be encoded (strictly) and is JSON."""
    for text in every_text(actions):
        json.loads(text.encode("utf-8"))


def test_a_lone_surrogate_is_refused_and_newcomers_still_get_in() -> None:
    room = Room()
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    actions = room.receive(1, '{"type": "message", "text": "\\ud800"}', T0)
    assert [e["code"] for e in sent_to(actions, 1)] == ["invalid_text"]
    assert broadcasts(actions) == []
    assert room.history == []
    actions = room.connect(2, T0)
    assert_sendable(actions)
    assert sent_to(actions, 2)[0]["type"] == "welcome"


# -- whatever arrives from the hub is checked (issue 9, 4) --------------------------


def envelope(event: object, worker: object = "w2") -> str:
    return json.dumps({"worker": worker, "event": event})


MESSAGE = {"type": "message", "nick": "ann", "text": "hi", "time": T0}

HOSTILE = [
    "not json",
    "[" * 100_000,
    "{" * 1000,
    '{"worker": "w2", "event": ' * 5000,
    envelope({"type": "presence"}),
    envelope({"type": "presence", "count": "many"}),
    envelope({"type": "presence", "count": 10**400}),
    envelope({"type": "presence", "count": 1}, worker=["w", 2]),
    envelope({"type": "presence", "count": 1}, worker={"a": 1}),
    envelope({"type": "message"}),
    envelope({**MESSAGE, "text": "\ud800"}),
    envelope({**MESSAGE, "nick": ["ann"]}),
    envelope({**MESSAGE, "time": "noon"}),
    envelope({"type": "left", "nick": None}),
    envelope({"type": "welcome", "history": ["<script>"]}),
    envelope([1, 2, 3]),
    '{"worker": "w2", "event": {"type": "presence", "count": Infinity}}',
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_envelopes_are_dropped_and_counted(raw: str) -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    room.connect(1, T0)
    assert room.deliver(raw, T0) == []
    assert room.rejected == 1
    assert room.rejection
    assert room.online(T0) == 1


def test_what_is_delivered_is_re_encoded_from_the_checked_fields() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    raw = '{"event": {"time": 1800000000, "text": "hi", "nick": "ann", "type": "message"},' + (
        '"worker": "w2"}'
    )
    [action] = room.deliver(raw, T0)
    assert action == Broadcast(json.dumps(MESSAGE, separators=(",", ":")))
    assert room.history == [action.text]
    assert room.rejected == 0


def test_the_number_of_other_workers_is_bounded() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    for i in range(MAX_WORKERS + 10):
        room.deliver(envelope({"type": "presence", "count": 1}, worker=f"x{i}"), T0)
    assert room.online(T0) == MAX_WORKERS
    assert room.rejected == 10
    room.tick(T0 + PRESENCE_TIMEOUT)  # silent workers are forgotten, not just ignored
    room.deliver(envelope({"type": "presence", "count": 1}, worker="new"), T0 + PRESENCE_TIMEOUT)
    assert room.online(T0 + PRESENCE_TIMEOUT) == 1


def test_the_shared_history_is_checked_item_by_item() -> None:
    room = Room(RoomConfig(history=3, shared=True))
    good = json.dumps(MESSAGE)
    shared = [
        good,
        "not json",
        '{"type":"message"}',
        json.dumps({**MESSAGE, "text": "\ud800"}),
        "]",
        "[" * 5000,
        json.dumps({**MESSAGE, "text": "two"}),
        '{"type": "joined", "nick": "x"}',
        json.dumps({**MESSAGE, "text": "three"}),
    ]
    actions = room.connect(1, T0, history=shared)
    assert_sendable(actions)
    [welcome] = sent_to(actions, 1)
    assert [m["text"] for m in welcome["history"]] == ["hi", "two", "three"]
    assert welcome["history"][0] == MESSAGE
    rejected = room.rejected
    assert rejected >= 4
    room.connect(2, T0, history=shared)  # the same items again: checked once
    assert room.rejected == rejected


hostile_event = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "joined", "left", "renamed", "presence", "x", 1])},
    optional={
        "nick": st.sampled_from(["ann", "bob", " ann", "a\u034fnn", "", 5, None, ["x"]]),
        "from": st.sampled_from(["ann", "<b>", 1]),
        "to": st.sampled_from(["bob", "\ud800", True]),
        "text": st.text(st.characters(codec=None), max_size=5) | st.integers(),
        "time": st.sampled_from([T0, -1, 1e300, "now", None, True, 10**30]),
        "count": st.sampled_from([0, 1, 5, -1, 10**9, "3", 2.5, True, None]),
        "extra": st.none(),
    },
)
hostile_envelope = st.one_of(
    st.builds(envelope, hostile_event, st.sampled_from(["w2", "w3", "w1", "", ["w"], 7])),
    st.text(max_size=30),
    st.builds(lambda depth: "[" * depth, st.integers(0, 3000)),
    st.just(envelope(MESSAGE)),
    st.just(envelope({"type": "presence", "count": 3})),
)


@given(st.lists(st.tuples(hostile_envelope, st.floats(0, 20)), max_size=30))
def test_any_sequence_of_envelopes_never_breaks_the_room(steps: list[Any]) -> None:
    room = Room(RoomConfig(shared=True, worker="w1", history=5))
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    room.claimed(1, "ann", True, T0)
    now = T0
    for raw, delay in steps:
        now += delay
        actions = room.deliver(raw, now) + room.tick(now)
        assert_sendable(actions)
        assert room.online(now) >= len(room.clients)
        for text in room.history:
            message = json.loads(text.encode("utf-8"))
            assert set(message) == {"type", "nick", "text", "time"}
    # And the room still works.
    assert_sendable(room.connect(2, now))
    assert room.receive(2, join("bob"), now) == [Claim(2, "bob", hub_keys(nick_keys("bob")))]
    assert sent_to(room.claimed(2, "bob", True, now), 2) == [{"type": "you", "nick": "bob"}]


# -- limits hold per address, across connections (issue 9, 6) ----------------------


def spend(room: Room, client: int, now: float) -> int:
    """Send until refused: how many got through."""
    sent = 0
    while broadcasts(room.receive(client, say("x"), now)):
        sent += 1
    return sent


def test_reconnecting_does_not_refill_the_bucket() -> None:
    room = Room(RoomConfig(rate=1.0, burst=5))
    room.connect(1, T0, address="192.0.2.7")
    room.receive(1, join("ann"), T0)
    assert spend(room, 1, T0) == 4  # the join took one
    room.disconnect(1, T0)
    room.connect(2, T0, address="192.0.2.7")
    [notice] = sent_to(room.receive(2, join("ann"), T0), 2)
    assert notice["code"] == "rate_limited"
    assert room.receive(2, say("again"), T0) == []  # (and told once a second)
    # Another address has its own bucket; time refills this one.
    room.connect(3, T0, address="198.51.100.1")
    room.receive(3, join("bob"), T0)
    assert spend(room, 3, T0) == 4
    assert sent_to(room.receive(2, join("ann"), T0 + 1), 2) == [{"type": "you", "nick": "ann"}]


def test_connections_from_one_address_share_its_bucket() -> None:
    room = Room(RoomConfig(rate=1.0, burst=4))
    for client, address in [(1, "2001:db8::1"), (2, "2001:db8::2"), (3, "::ffff:192.0.2.7")]:
        room.connect(client, T0, address=address)
    room.connect(4, T0, address="192.0.2.7")
    room.receive(1, join("ann"), T0)
    room.receive(2, join("bob"), T0)  # the same /64
    assert spend(room, 1, T0) + spend(room, 2, T0) == 2
    room.receive(3, join("cyd"), T0)
    room.receive(4, join("dan"), T0)  # the same IPv4 address
    assert spend(room, 3, T0) + spend(room, 4, T0) == 2


def test_joins_and_renames_are_limited_per_address() -> None:
    room = Room(RoomConfig(rate=100.0, burst=100, join_rate=0.5, join_burst=2))
    room.connect(1, T0, address="192.0.2.7")
    room.receive(1, join("ann"), T0)
    room.receive(1, join("anna"), T0)
    actions = room.receive(1, join("annie"), T0)
    assert broadcasts(actions) == []
    [notice] = sent_to(actions, 1)
    assert notice["code"] == "rate_limited"
    assert notice["retry_after"] == 2.0
    assert room.nick(1) == "anna"
    # Reconnecting does not help; another address is not affected.
    room.disconnect(1, T0)
    room.connect(2, T0, address="192.0.2.7")
    assert sent_to(room.receive(2, join("ann"), T0), 2)[0]["code"] == "rate_limited"
    room.connect(3, T0, address="198.51.100.1")
    assert sent_to(room.receive(3, join("bob"), T0), 3) == [{"type": "you", "nick": "bob"}]
    assert sent_to(room.receive(2, join("ann"), T0 + 2), 2) == [{"type": "you", "nick": "ann"}]


def test_a_reconnect_loop_broadcasts_nothing_until_the_tick() -> None:
    """Connecting and leaving without joining broadcasts nothing at all;
    the count of people online goes out once per tick, if it changed."""
    room = Room(RoomConfig(shared=True, worker="w1"))
    room.connect(1, T0)
    room.tick(T0)
    for client in range(2, 200):
        actions = room.connect(client, T0 + 0.5, address="192.0.2.7")
        actions += room.disconnect(client, T0 + 0.5)
        assert [type(a) for a in actions] == [Send]  # the welcome, to itself
    # Back to where it was: nothing to show, and to the other workers only
    # the periodic announcement of the same count.
    actions = room.tick(T0 + 1)
    assert broadcasts(actions) == []
    assert [json.loads(a.text)["event"] for a in actions if isinstance(a, Publish)] == [
        {"type": "presence", "count": 1}
    ]
    room.connect(500, T0 + 1.5, address="192.0.2.7")
    room.connect(501, T0 + 1.5, address="192.0.2.7")
    actions = room.tick(T0 + 2)
    assert broadcasts(actions) == [{"type": "presence", "online": 3}]
    assert [json.loads(a.text)["event"] for a in actions if isinstance(a, Publish)] == [
        {"type": "presence", "count": 3}
    ]


def test_left_only_follows_a_join_that_went_through() -> None:
    room = Room(RoomConfig(rate=100.0, burst=100, join_rate=0.1, join_burst=1))
    room.connect(9, T0, address="198.51.100.1")  # (someone stays)
    room.connect(1, T0, address="192.0.2.7")
    room.receive(1, join("ann"), T0)
    assert presence(room.tick(T0)) == [{"type": "presence", "online": 2, "joined": ["ann"]}]
    room.connect(2, T0, address="192.0.2.7")
    room.receive(2, join("bob"), T0)  # refused: the address's joins are spent
    assert room.disconnect(2, T0) == []
    assert presence(room.tick(T0 + 1)) == []  # back to two, and bob never joined
    room.disconnect(1, T0 + 1)
    assert presence(room.tick(T0 + 2)) == [{"type": "presence", "online": 1, "left": ["ann"]}]


def test_the_address_table_is_bounded() -> None:
    addresses = Addresses(rate=1.0, burst=2, join_rate=1.0, join_burst=2, max_idle=100)
    for i in range(1000):
        addresses.enter(f"10.0.{i // 256}.{i % 256}", T0)
        addresses.leave(f"10.0.{i // 256}.{i % 256}", T0)
    assert len(addresses) == 100  # the newest idle ones
    addresses.enter("192.0.2.1", T0)
    addresses.expire(T0 + KEEP + 1)
    assert len(addresses) == 1  # the one with a client stays


def test_idle_addresses_are_forgotten_after_a_while() -> None:
    room = Room(RoomConfig(rate=1.0, burst=2))
    for client in range(50):
        room.connect(client, T0, address=f"192.0.2.{client}")
        room.disconnect(client, T0)
    assert room.addresses == 50
    room.tick(T0 + 1)
    assert room.addresses == 50  # kept a while: reconnecting gives no fresh burst
    room.tick(T0 + KEEP + 1)
    assert room.addresses == 0


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("") == address_key("not an ip") == address_key("/tmp/sock") == "unknown"


# -- nicknames that look alike (issue 9) ----------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ann", "\u0430nn"),  # Cyrillic a
        ("ann", "\uff41nn"),  # fullwidth a
        ("\u00e9mile", "e\u0301mile"),  # precomposed, decomposed
        ("Ian", "lan"),
    ],
)
def test_look_alike_nicknames_are_taken(first: str, second: str) -> None:
    room = Room()
    room.connect(1, T0)
    room.connect(2, T0)
    room.receive(1, join(first), T0)
    assert [e["code"] for e in sent_to(room.receive(2, join(second), T0), 2)] == ["nick_taken"]
    room.disconnect(1, T0)  # and free again once its holder left
    assert sent_to(room.receive(2, join(second), T0), 2)[0]["type"] == "you"


def test_renaming_to_another_case_of_ones_own_nickname() -> None:
    room = Room()
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    room.tick(T0)
    assert sent_to(room.receive(1, join("Ann"), T0), 1) == [{"type": "you", "nick": "Ann"}]
    assert presence(room.tick(T0 + 1)) == [
        {"type": "presence", "online": 1, "renamed": [["ann", "Ann"]]}
    ]
    room.connect(2, T0)
    room.receive(2, join("ann"), T0)  # the old name is free again, but not a look-alike
    assert sent_to(room.receive(2, join("ann"), T0), 2)[0]["code"] == "nick_taken"


# -- presence, coalesced (issue 13) ---------------------------------------------------


def crowd(room: Room, first: int, count: int, now: float, hub: Hub | None = None) -> None:
    """`count` clients, each from an address of its own, connect and join."""
    for client in range(first, first + count):
        room.connect(client, now, address=f"10.{client >> 16}.{(client >> 8) & 255}.{client & 255}")
        actions = room.receive(client, join(f"p{client}"), now)
        if hub is not None:
            actions = hub.run(room, actions, now)
        assert broadcasts(actions) == []  # nothing goes to everyone before the tick
        assert sent_to(actions, client) == [{"type": "you", "nick": f"p{client}"}]


def test_a_burst_of_500_joins_costs_one_update_per_client_per_tick() -> None:
    """500 people arrive over 5 s: the deliveries (each Broadcast times the
    clients it goes to) are one per client per tick, not one per client per
    join (which would be 125,250), and every update has a bounded size."""
    room = Room(RoomConfig(shared=True, worker="w1"))
    hub = Hub()
    deliveries = updates = 0
    for second in range(5):
        now = T0 + second
        crowd(room, 1 + 100 * second, 100, now, hub)
        actions = room.tick(now + 0.5)
        [update] = [a for a in actions if isinstance(a, Broadcast)]
        deliveries += len(room.clients)
        updates += 1
        assert len(update.text) < 1024
        event = json.loads(update.text)
        assert event["online"] == 100 * (second + 1)
        assert event["joined"] == [f"p{c}" for c in range(1 + 100 * second, 21 + 100 * second)]
        assert event["joined_more"] == 80
        [announcement] = announced(actions)  # one message for the other workers, too
        assert announcement["count"] == 100 * (second + 1)
        assert len(announcement["joined"]) == MAX_NAMES
        assert announcement["joined_more"] == 80
    assert updates == 5
    assert deliveries == 100 + 200 + 300 + 400 + 500
    assert presence(room.tick(T0 + 5.5)) == []  # then quiet


def test_another_workers_burst_is_folded_into_one_update_per_tick() -> None:
    """w2's 500 newcomers reach w1's clients as one update per w1 tick,
    however many announcements (and workers) it folds in."""
    w1, w2 = Room(RoomConfig(shared=True, worker="w1")), Room(RoomConfig(shared=True, worker="w2"))
    for client in range(3):
        w1.connect(client, T0, address=f"192.0.2.{client}")
    w1.tick(T0)
    crowd(w2, 1000, 500, T0 + 0.1, Hub())
    [announcement] = [a for a in w2.tick(T0 + 0.2) if isinstance(a, Publish)]
    assert len(announcement.text) < 1024
    assert w1.deliver(announcement.text, T0 + 0.3) == []  # shown at w1's tick
    # More workers' announcements in the same second: still one bounded update.
    for i in range(3, 10):
        batch = {"type": "presence", "count": 50, "joined": [f"w{i}x{n}" for n in range(20)]}
        w1.deliver(envelope({**batch, "joined_more": 30}, worker=f"w{i}"), T0 + 0.4)
    [update] = presence(w1.tick(T0 + 1))
    assert update["online"] == 3 + 500 + 7 * 50
    assert update["joined"] == [f"p{c}" for c in range(1000, 1020)]
    assert update["joined_more"] == 480 + 7 * 50
    assert presence(w1.tick(T0 + 2)) == []  # nothing new: nothing sent


def test_a_join_undone_before_the_tick_announces_nothing() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    hub = Hub()
    room.connect(1, T0)
    hub.run(room, room.receive(1, join("ann"), T0), T0)
    room.tick(T0)
    # bob comes and goes; ann reloads her page (leaves, and is back as ann).
    room.connect(2, T0 + 0.1, address="192.0.2.2")
    hub.run(room, room.receive(2, join("bob"), T0 + 0.1), T0 + 0.1)
    hub.run(room, room.disconnect(2, T0 + 0.2), T0 + 0.2)
    hub.run(room, room.disconnect(1, T0 + 0.3), T0 + 0.3)
    room.connect(3, T0 + 0.4)
    actions = hub.run(room, room.receive(3, join("ann"), T0 + 0.4), T0 + 0.4)
    assert sent_to(actions, 3) == [{"type": "you", "nick": "ann"}]
    actions = room.tick(T0 + 1)
    assert broadcasts(actions) == []  # one online before and after; no one came or went
    assert announced(actions) == [{"type": "presence", "count": 1}]
    assert set(hub.keys.values()) == {"w1:3"}  # bob's name is free again
    # Renames that come back to where they started are not announced either;
    # a chain of them is one rename.
    room.connect(4, T0 + 1)
    hub.run(room, room.receive(4, join("cyd"), T0 + 1), T0 + 1)
    room.tick(T0 + 1.5)
    for nick in ("cy", "cyd", "c", "cee"):
        hub.run(room, room.receive(4, join(nick), T0 + 2), T0 + 2)
    hub.run(room, room.receive(3, join("anna"), T0 + 2), T0 + 2)
    hub.run(room, room.receive(3, join("ann"), T0 + 2), T0 + 2)
    assert presence(room.tick(T0 + 3)) == [
        {"type": "presence", "online": 2, "renamed": [["cyd", "cee"]]}
    ]


# -- nicknames across workers (issue 13) -----------------------------------------------


def shared_room(worker: str = "w1") -> Room:
    return Room(RoomConfig(shared=True, worker=worker))


def test_a_nickname_is_taken_only_once_the_hub_agrees() -> None:
    room = shared_room()
    room.connect(1, T0)
    room.connect(2, T0)
    assert room.receive(1, join("ann"), T0) == [Claim(1, "ann", ("f:ann", "c:ann"))]
    assert room.nick(1) is None
    # While the claim is pending: ann cannot say anything, another join
    # waits, and no one here can take a look-alike.
    assert sent_to(room.receive(1, say("hi"), T0), 1)[0]["code"] == "not_joined"
    assert sent_to(room.receive(1, join("bob"), T0), 1)[0]["code"] == "nick_pending"
    assert sent_to(room.receive(2, join("ANN"), T0), 2)[0]["code"] == "nick_taken"
    assert room.claimed(1, "ann", True, T0) == [Send(1, '{"type":"you","nick":"ann"}')]
    assert room.nick(1) == "ann"
    # Someone on another worker holds "bob": refused, and free here again.
    assert room.receive(2, join("bob"), T0) == [Claim(2, "bob", ("f:bob", "c:bob"))]
    actions = room.claimed(2, "bob", False, T0)
    assert [e["code"] for e in sent_to(actions, 2)] == ["nick_taken"]
    assert room.nick(2) is None
    assert room.receive(1, join("Bob"), T0 + 10) == [Claim(1, "Bob", ("f:bob", "c:Bob"))]


def test_a_rename_releases_only_the_keys_it_no_longer_needs() -> None:
    room = shared_room()
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    room.claimed(1, "ann", True, T0)
    [claim] = room.receive(1, join("Ann"), T0)  # the same folded key, another cased one
    assert claim == Claim(1, "Ann", ("f:ann", "c:Ann"))
    assert room.claimed(1, "Ann", True, T0)[1:] == [Release(1, ("c:ann",))]
    room.receive(1, join("bob"), T0)
    assert room.claimed(1, "bob", True, T0)[1:] == [Release(1, ("f:ann", "c:Ann"))]
    assert room.disconnect(1, T0) == [Release(1, ("f:bob", "c:bob"))]


def test_leaving_while_a_claim_is_pending_releases_it_and_ignores_the_answer() -> None:
    room = shared_room()
    room.connect(1, T0)
    room.receive(1, join("ann"), T0)
    room.claimed(1, "ann", True, T0)
    room.receive(1, join("bob"), T0)
    # Released at once: queued behind the claim on the same connection, so
    # whoever asks for "bob" next finds it free.
    assert room.disconnect(1, T0) == [Release(1, ("f:ann", "c:ann", "f:bob", "c:bob"))]
    assert room.claimed(1, "bob", True, T0) == []  # too late: ignored
    assert room.claimed(7, "cyd", True, T0) == []  # no such client: ignored
    room.connect(2, T0)
    assert room.receive(2, join("bob"), T0) == [Claim(2, "bob", ("f:bob", "c:bob"))]
    assert room.claimed(2, "ann", True, T0) == []  # not what it asked for: ignored
    assert room.nick(2) is None


def test_held_nicknames_are_refreshed_and_a_lost_one_is_given_up() -> None:
    room = shared_room()
    room.connect(1, T0)
    room.connect(2, T0)
    for client, nick in [(1, "ann"), (2, "bob")]:
        room.receive(client, join(nick), T0)
        room.claimed(client, nick, True, T0)
    [refresh] = [a for a in room.tick(T0) if isinstance(a, Refresh)]
    assert refresh.held == ((1, "ann", ("f:ann", "c:ann")), (2, "bob", ("f:bob", "c:bob")))
    assert not any(isinstance(a, Refresh) for a in room.tick(T0 + NICK_REFRESH / 2))
    assert any(isinstance(a, Refresh) for a in room.tick(T0 + NICK_REFRESH))
    room.refresh_soon()  # (Redis came back)
    assert any(isinstance(a, Refresh) for a in room.tick(T0 + NICK_REFRESH + 0.1))
    # Someone on another worker took "bob" while Redis was away.
    actions = room.lost(2, "bob", T0 + 3)
    assert actions[0] == Release(2, ("f:bob", "c:bob"))
    assert [e["code"] for e in sent_to(actions, 2)] == ["nick_lost"]
    assert room.nick(2) is None
    assert room.lost(2, "bob", T0 + 3) == []  # (twice, or too late: ignored)
    assert presence(room.tick(T0 + 4)) == [{"type": "presence", "online": 2, "left": ["bob"]}]
    [refresh] = [a for a in room.tick(T0 + 10) if isinstance(a, Refresh)]
    assert refresh.held == ((1, "ann", ("f:ann", "c:ann")),)


def test_one_process_claims_nothing() -> None:
    room = Room()
    room.connect(1, T0)
    assert sent_to(room.receive(1, join("ann"), T0), 1) == [{"type": "you", "nick": "ann"}]
    actions = room.tick(T0 + 10) + room.disconnect(1, T0 + 10) + room.tick(T0 + 20)
    assert not any(isinstance(a, Claim | Release | Refresh | Publish) for a in actions)


def test_losing_a_nickname_keeps_what_a_pending_rename_needs() -> None:
    room = shared_room()
    room.connect(1, T0)
    room.connect(2, T0)
    room.receive(1, join("ann"), T0)
    room.claimed(1, "ann", True, T0)
    room.receive(1, join("Ann"), T0)  # pending; shares the folded key with "ann"
    assert room.lost(1, "ann", T0)[0] == Release(1, ("c:ann",))
    assert sent_to(room.receive(2, join("ANN"), T0), 2)[0]["code"] == "nick_taken"
    assert sent_to(room.claimed(1, "Ann", True, T0), 1) == [{"type": "you", "nick": "Ann"}]
    assert room.disconnect(1, T0) == [Release(1, ("f:ann", "c:Ann"))]
