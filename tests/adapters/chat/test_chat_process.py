"""This process's chat (`chat_process.py`) carrying out the room's actions,
without sockets: fake peers and a fake Redis link."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from adapters.chat.chat_process import (
    WRONG_PATH,
    ChatProcess,
    Link,
    host_of,
    refusal,
)
from adapters.chat.nick_hub import GIVE_UP, TAKE
from adapters.chat.redis_session import LOST
from adapters.chat.resp import RedisError, Reply, ReplyParser
from adapters.chat.room import Room
from adapters.chat.settings import ChatSettings
from wsproto_core import HandshakeRequest, PreparedMessage
from wsproto_core.http import Headers


def payload(frame: bytes) -> bytes:
    """The payload of one unmasked, uncompressed frame from the server."""
    length = frame[1] & 0x7F
    start = 2
    if length == 126:
        length, start = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(frame[2:10], "big"), 10
    return frame[start : start + length]


class FakePeer:
    def __init__(self, address: object = ("192.0.2.7", 50000), *, mode: str = "ok") -> None:
        self.remote_address = address
        self.mode = mode  # "ok", "broken" (raises) or "slow" (never reads)
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def send_prepared(self, message: PreparedMessage) -> int:
        if self.mode == "broken":
            raise RuntimeError("the socket went strange")
        self.frames.append(message.frame(0))
        return 10**9 if self.mode == "slow" else 0

    def close_nowait(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload(frame).decode("utf-8")) for frame in self.frames]

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.events]


class FakeLink:
    """A Redis link that records the commands sent while `up`."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        self.up = False
        self.sessions = 0
        self.sent: list[bytes] = []
        self.requests: list[tuple[bytes, Callable[[Reply], None]]] = []

    def send(self, *commands: bytes) -> bool:
        if self.up:
            self.sent.extend(commands)
        return self.up

    def request(self, data: bytes, on_reply: Callable[[Reply], None]) -> bool:
        if self.up:
            self.requests.append((data, on_reply))
        return self.up


Chat = ChatProcess[FakePeer, Link]


def chat(**settings: Any) -> Chat:
    return Chat(ChatSettings(**settings))


def chat_with_redis(**settings: Any) -> tuple[Chat, FakeLink]:
    room = Chat(ChatSettings(redis="redis://127.0.0.1:6379/0", **settings), FakeLink)
    assert isinstance(room.link, FakeLink)
    return room, room.link


def say(text: str) -> str:
    return json.dumps({"type": "message", "text": text})


def join(nick: str) -> str:
    return json.dumps({"type": "join", "nick": nick})


def test_a_lone_surrogate_neither_drops_the_sender_nor_locks_newcomers_out() -> None:
    room = chat()
    ann = FakePeer()
    client = room.arrive(ann, None)
    assert room.receive(client, join("ann"))
    assert room.receive(client, '{"type": "message", "text": "\\ud800"}')
    assert ann.closed is None
    assert ann.events[-1]["code"] == "invalid_text"
    for _ in range(3):
        newcomer = FakePeer(("198.51.100.1", 1))
        room.arrive(newcomer, None)
        assert newcomer.kinds() == ["welcome"]
        assert newcomer.closed is None
    assert len(room.room.clients) == 4


def test_a_failing_step_drops_only_its_client_and_logs_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    room = chat()
    ann = FakePeer()
    ann_id = room.arrive(ann, None)
    room.receive(ann_id, join("ann"))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Room, "connect", broken)
    newcomers = [FakePeer(("198.51.100.1", port)) for port in range(5)]
    with caplog.at_level(logging.ERROR, logger="wschat"):
        ids = [room.arrive(peer, None) for peer in newcomers]
    for peer, client in zip(newcomers, ids, strict=True):
        assert peer.closed == (1011, "internal error")
        assert not room.receive(client, join("bob"))
    assert room.room.clients == {ann_id}
    assert set(room.clients) == {ann_id}
    assert len(caplog.records) == 1  # not one traceback per failure
    monkeypatch.undo()
    # The others carry on.
    room.receive(ann_id, say("still here"))
    assert ann.events[-1]["text"] == "still here"
    assert ann.closed is None


def test_a_broken_connection_does_not_keep_a_message_from_the_others() -> None:
    room = chat()
    ann, broken, bob = FakePeer(), FakePeer(("198.51.100.1", 1)), FakePeer(("198.51.100.2", 1))
    ids = [room.arrive(peer, None) for peer in (ann, broken, bob)]
    room.receive(ids[0], join("ann"))
    room.receive(ids[1], join("bad"))
    room.receive(ids[2], join("bob"))
    room.tick()
    broken.mode = "broken"
    assert room.receive(ids[0], say("hello"))
    assert bob.events[-1] == {
        "type": "message",
        "nick": "ann",
        "text": "hello",
        "time": bob.events[-1]["time"],
    }
    room.tick()
    assert bob.events[-1] == {"type": "presence", "online": 2, "left": ["bad"]}
    assert broken.closed == (1011, "internal error")
    assert room.room.clients == {ids[0], ids[2]}


def test_hundreds_of_slow_clients_are_dropped_without_recursion() -> None:
    room = chat(max_connections_per_ip=10_000)
    peers = [FakePeer((f"10.0.{i // 256}.{i % 256}", 1)) for i in range(600)]
    ids = [room.arrive(peer, None) for peer in peers]
    for i, client in enumerate(ids):
        room.receive(client, join(f"p{i}"))
    room.tick()  # (announced: their leaving is news)
    for peer in peers[1:]:
        peer.mode = "slow"
    room.receive(ids[0], say("hi"))
    assert all(peer.closed == (1013, "too slow: messages piled up") for peer in peers[1:])
    assert room.room.clients == {ids[0]}
    room.tick()  # their leaving: one bounded update
    assert peers[0].events[-1]["online"] == 1
    assert len(peers[0].events[-1]["left"]) == 20
    assert peers[0].events[-1]["left_more"] == 579


def test_hostile_redis_events_are_dropped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    room = chat(redis="redis://127.0.0.1:1/0")
    ann = FakePeer()
    room.arrive(ann, None)
    hostile = [
        '{"worker": "x", "event": {"type": "presence"}}',
        '{"worker": "x", "event": {"type": "presence", "count": "many"}}',
        '{"worker": ["x"], "event": {"type": "presence", "count": 1}}',
        "[" * 100_000,
        '{"worker": "x", "event": {"type": "message", "nick": "a", "text": "\\ud800", "time": 1}}',
    ]
    with caplog.at_level(logging.WARNING, logger="wschat"):
        for envelope in hostile * 20:
            room.from_redis(envelope)
    assert len(caplog.records) == 1
    assert "invalid" in caplog.records[0].getMessage()
    assert ann.closed is None
    assert ann.kinds() == ["welcome"]


def test_limits_follow_the_address_not_the_connection() -> None:
    room = chat(rate=1.0, burst=3)
    first = FakePeer(("192.0.2.7", 1000))
    client = room.arrive(first, None)
    room.receive(client, join("ann"))
    room.receive(client, say("one"))
    room.receive(client, say("two"))
    room.leave(client)
    again = FakePeer(("192.0.2.7", 1001))  # the same address, a new connection
    client = room.arrive(again, None)
    room.receive(client, join("ann"))
    assert again.events[-1]["code"] == "rate_limited"


def test_behind_a_trusted_proxy_the_limits_follow_the_forwarded_address() -> None:
    room = chat(rate=1.0, burst=2, trusted_proxies=("10.0.0.0/8",))
    proxy = ("10.1.2.3", 1000)
    ann = FakePeer(proxy)
    client = room.arrive(ann, None, ["198.51.100.1"])
    room.receive(client, join("ann"))
    room.receive(client, say("one"))
    bob = FakePeer(proxy)  # another person through the same proxy: limits of their own
    client = room.arrive(bob, None, ["203.0.113.9, 10.9.9.9"])  # (and a second proxy)
    room.receive(client, join("bob"))
    room.receive(client, say("hi"))
    assert "error" not in bob.kinds()
    mallory = FakePeer(("192.0.2.66", 1000))  # not a proxy: its header is not believed
    client = room.arrive(mallory, None, ["198.51.100.1"])
    room.receive(client, join("mallory"))
    room.receive(client, say("one"))
    assert "error" not in mallory.kinds()
    carol = FakePeer(proxy)  # ann's address, through the proxy: ann's spent burst
    client = room.arrive(carol, None, ["198.51.100.1"])
    room.receive(client, join("carol"))
    assert carol.events[-1]["code"] == "rate_limited"


@pytest.mark.parametrize(
    ("address", "host"),
    [
        (("192.0.2.7", 80), "192.0.2.7"),
        (("2001:db8::1", 80, 0, 0), "2001:db8::1"),
        (["192.0.2.7", 80], "192.0.2.7"),
        (None, "unknown"),
        ("", "unknown"),
        ((), "unknown"),
        ((b"x", 1), "unknown"),
    ],
)
def test_host_of(address: object, host: str) -> None:
    assert host_of(address) == host


def test_the_shared_history_is_fetched_once_per_redis_session() -> None:
    """Newcomers get the room's own copy: fetching it from Redis for each
    one would let a huge (or hostile) history delay every newcomer."""
    room, link = chat_with_redis(worker="w1")
    stored = json.dumps({"type": "message", "nick": "ann", "text": "from before", "time": 1.0})
    link.sessions = 1
    assert room.history_due() is None  # Redis down: nothing to fetch
    link.up = True
    assert room.history_due() == 1
    room.seed_history(1, None)  # the fetch failed: try again with the next newcomer
    assert room.history_due() == 1
    room.seed_history(1, [stored, "not json", '{"type": "message"}'])
    assert room.history_due() is None  # seeded for this session
    link.sessions = 2
    assert room.history_due() == 2  # a new session may have missed events: again
    newcomer = FakePeer()
    room.arrive(newcomer, None)
    [welcome] = newcomer.events
    assert [item["text"] for item in welcome["history"]] == ["from before"]  # checked items only
    assert chat().history_due() is None  # no Redis at all


def test_messages_are_published_and_stored_while_redis_is_up() -> None:
    room, link = chat_with_redis(history=5)
    ann = FakePeer()
    client = room.arrive(ann, None)
    room.receive(client, join("ann"))
    room.receive(client, say("offline"))
    assert link.sent == []  # Redis away: delivered here all the same
    assert ann.events[-1]["text"] == "offline"
    link.up = True
    room.receive(client, say("online"))
    assert ann.events[-1]["text"] == "online"
    publish, rpush, ltrim = map(words, link.sent)
    assert publish[:2] == [b"PUBLISH", b"wschat:room"]
    assert json.loads(publish[2])["event"]["text"] == "online"
    assert rpush[:2] == [b"RPUSH", b"wschat:history"]
    assert json.loads(rpush[2])["text"] == "online"
    assert ltrim == [b"LTRIM", b"wschat:history", b"-5", b"-1"]


def words(sent: bytes) -> list[bytes]:
    """A command, as the words Redis reads."""
    [array] = ReplyParser().feed(sent)
    assert isinstance(array, list)
    return [word for word in array if isinstance(word, bytes)]


def request(path: str) -> HandshakeRequest:
    return HandshakeRequest(
        target=path,
        path=path,
        query="",
        headers=Headers(),
        host="127.0.0.1:8000",
        origin=None,
        subprotocols=(),
        extensions=(),
    )


def test_only_the_chat_path_is_the_chat() -> None:
    assert refusal(request("/ws")) is None
    assert refusal(request("/other")) == WRONG_PATH == (1008, "the chat is at /ws")


# -- nicknames across workers (issue 13) -----------------------------------------------


def test_a_join_is_claimed_in_redis_and_answered_from_its_reply() -> None:
    room, link = chat_with_redis(worker="w1")
    link.up = True
    ann, bob, cyd = FakePeer(), FakePeer(("192.0.2.8", 1)), FakePeer(("192.0.2.9", 1))
    ids = [room.arrive(peer, None) for peer in (ann, bob, cyd)]
    for client, nick in zip(ids, ["ann", "bob", "cyd"], strict=True):
        room.receive(client, join(nick))
    assert [peer.kinds() for peer in (ann, bob, cyd)] == [["welcome"]] * 3  # waiting
    claims = [words(data) for data, _ in link.requests]
    holder = f"{room.nicks.prefix}:{ids[0]}".encode()
    assert claims[0] == [
        b"EVAL",
        TAKE,
        b"2",
        b"wschat:nick:f:ann",
        b"wschat:nick:c:ann",
        b"8000",
        b"2",
        holder,
    ]
    (_, to_ann), (_, to_bob), (_, to_cyd) = link.requests
    to_ann([])  # free: taken
    to_bob([1])  # held by someone on another worker
    to_cyd(LOST)  # the link dropped before the reply: decided here
    assert ann.events[-1] == {"type": "you", "nick": "ann"}
    assert bob.events[-1]["code"] == "nick_taken"
    assert cyd.events[-1] == {"type": "you", "nick": "cyd"}
    room.leave(ids[0])
    assert words(link.sent[-1]) == [
        b"EVAL",
        GIVE_UP,
        b"2",
        b"wschat:nick:f:ann",
        b"wschat:nick:c:ann",
        holder,
    ]
    to_ann([])  # a second answer, out of context: ignored
    assert ids[0] not in room.room.clients


def test_while_redis_is_away_a_join_is_decided_here() -> None:
    room, link = chat_with_redis(worker="w1")
    ann = FakePeer()
    client = room.arrive(ann, None)
    room.receive(client, join("ann"))
    assert ann.events[-1] == {"type": "you", "nick": "ann"}
    assert link.requests == []
    # Back: the next tick refreshes what this process holds (taking again
    # in Redis what it does not have), and a clash loses the name.
    link.up = True
    link.sessions = 1
    room.tick()
    [(refresh, answer)] = link.requests
    assert words(refresh)[3:] == [
        b"wschat:nick:f:ann",
        b"wschat:nick:c:ann",
        b"8000",
        b"2",
        f"{room.nicks.prefix}:{client}".encode(),
    ]
    answer([1])
    assert ann.events[-1]["code"] == "nick_lost"
    assert room.room.nick(client) is None


def test_replies_are_handled_under_the_chat_lock() -> None:
    """The blocking backend's link calls back from its own thread."""
    entered: list[bool] = []

    class Lock:
        def __enter__(self) -> None:
            entered.append(True)

        def __exit__(self, *exc: object) -> None:
            entered.append(False)

    room, link = chat_with_redis(worker="w1")
    room.lock = Lock()
    link.up = True
    peer = FakePeer()
    client = room.arrive(peer, None)
    room.receive(client, join("ann"))
    assert entered == []
    (_, answer) = link.requests[0]
    answer(RedisError("OOM"))  # an error reply: decided here too
    assert entered == [True, False]
    assert peer.events[-1] == {"type": "you", "nick": "ann"}
