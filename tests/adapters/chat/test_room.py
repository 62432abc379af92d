"""The sans-IO room: unit tests, and hypothesis over any sequence of
connects, joins, messages and leaves, in one process and across workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.chat.room import (
    PRESENCE_INTERVAL,
    PRESENCE_TIMEOUT,
    Action,
    Broadcast,
    Publish,
    Room,
    RoomConfig,
    Send,
    Store,
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


def test_welcome_then_join_then_message() -> None:
    room = Room(RoomConfig(history=2))
    actions = room.connect(1, T0)
    [welcome] = sent_to(actions, 1)
    assert welcome == {"type": "welcome", "history": [], "online": 1, "max_text": 2000}
    assert broadcasts(actions) == [{"type": "presence", "online": 1}]
    actions = room.receive(1, join("ann"), T0)
    assert sent_to(actions, 1) == [{"type": "you", "nick": "ann"}]
    assert broadcasts(actions) == [{"type": "joined", "nick": "ann"}]
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
    assert broadcasts(room.receive(1, join("anna"), T0)) == [
        {"type": "renamed", "from": "ann", "to": "anna"}
    ]
    assert broadcasts(room.disconnect(1, T0)) == [
        {"type": "left", "nick": "anna"},
        {"type": "presence", "online": 0},
    ]
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


def test_shared_room_publishes_and_broadcasts_what_comes_back() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    actions = room.connect(1, T0)
    assert [type(a) for a in actions] == [Send, Broadcast, Publish]
    room.receive(1, join("ann"), T0)
    actions = room.receive(1, say("hello"), T0)
    assert [type(a) for a in actions] == [Publish, Store]
    publish, store = actions
    assert isinstance(publish, Publish)
    assert json.loads(publish.text)["worker"] == "w1"
    assert isinstance(store, Store)
    assert json.loads(store.text)["text"] == "hello"
    # Nothing reaches the local clients until the hub hands it back.
    assert broadcasts(room.deliver(publish.text, T0)) == [json.loads(store.text)]
    assert room.history == [store.text]
    assert room.deliver("not json", T0) == []
    assert room.deliver('{"worker": "x", "event": {}}', T0) == []


def test_presence_counts_other_workers_until_they_go_silent() -> None:
    room = Room(RoomConfig(shared=True, worker="w1"))
    room.connect(1, T0)
    other = json.dumps({"worker": "w2", "event": {"type": "presence", "count": 4}})
    assert broadcasts(room.deliver(other, T0)) == [{"type": "presence", "online": 5}]
    assert room.online(T0 + PRESENCE_TIMEOUT - 1) == 5
    # w2 stops announcing: the tick notices, and announces us again.
    actions = room.tick(T0 + PRESENCE_TIMEOUT + 1)
    assert broadcasts(actions) == [{"type": "presence", "online": 1}]
    assert any(isinstance(a, Publish) for a in actions)
    assert room.tick(T0 + PRESENCE_TIMEOUT + 2) == []  # announced less than 5 s ago
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
    """The nicknames that the broadcast events, replayed, say are present."""
    present: set[str] = set()
    for event in events:
        if event["type"] == "joined":
            present.add(event["nick"])
        elif event["type"] == "renamed":
            present.remove(event["from"])
            present.add(event["to"])
        elif event["type"] == "left":
            present.remove(event["nick"])
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
        for action in actions:
            assert not isinstance(action, Publish | Store)  # one process: no hub
            if isinstance(action, Send):
                assert action.client in room.clients
        seen += broadcasts(actions)
        # Invariants: the announced nicks are the room's nicks, unique
        # case-insensitively; the last presence is the number of clients.
        nicks = [room.nick(c) for c in room.clients if room.nick(c) is not None]
        assert nicks_from(seen) == set(nicks)
        assert len({n.casefold() for n in nicks if n}) == len(nicks)
        presence = [e["online"] for e in seen if e["type"] == "presence"]
        assert not presence or presence[-1] == len(room.clients)
        assert len(room.history) <= history
        assert all(json.loads(m)["type"] == "message" for m in room.history)


@given(st.lists(st.tuples(st.integers(0, 2), step), max_size=40))
def test_workers_sharing_a_hub_agree(steps: list[Any]) -> None:
    """Three rooms wired through a perfect hub: every published event
    reaches each of them, and they end up agreeing on who is online and
    on the history."""
    rooms = [Room(RoomConfig(shared=True, worker=f"w{i}", rate=1.0, burst=3)) for i in range(3)]
    shared_history: list[str] = []
    now = T0

    def run(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Publish):
                for room in rooms:
                    run(room.deliver(action.text, now))
            elif isinstance(action, Store):
                shared_history.append(action.text)

    for worker, (kind, client, nick, delay) in steps:
        now += delay
        for room in rooms:  # the servers tick every second; steps are 3 s apart at most
            run(room.tick(now))
        room = rooms[worker]
        if kind == "connect" and client not in room.clients:
            run(room.connect(client, now, history=list(shared_history)))
        elif client in room.clients:
            if kind == "join":
                run(room.receive(client, join(nick), now))
            elif kind == "say":
                run(room.receive(client, say("hi"), now))
            elif kind == "leave":
                run(room.disconnect(client, now))
    total = sum(len(room.clients) for room in rooms)
    assert [room.online(now) for room in rooms] == [total] * 3
    for room in rooms:
        assert room.history == shared_history[-50:]
