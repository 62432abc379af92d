"""Carrying out the room's actions (no sockets: fake peers), and the
server's Origin policy."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from adapters.chat.actions import ChatActions, Throttle, host_of
from adapters.chat.room import Room
from adapters.chat.service import ChatSettings, origin_policy, server_options
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

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload(frame).decode("utf-8")) for frame in self.frames]

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.events]


class Chat(ChatActions[FakePeer]):
    def close_later(self, peer: FakePeer, code: int, reason: str) -> None:
        peer.closed = (code, reason)


def chat(**settings: Any) -> Chat:
    return Chat(ChatSettings(**settings))


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
    broken.mode = "broken"
    assert room.receive(ids[0], say("hello"))
    assert bob.events[-2:] == [
        {"type": "message", "nick": "ann", "text": "hello", "time": bob.events[-2]["time"]},
        {"type": "left", "nick": "bad"},
    ]
    assert broken.closed == (1011, "internal error")
    assert room.room.clients == {ids[0], ids[2]}


def test_hundreds_of_slow_clients_are_dropped_without_recursion() -> None:
    room = chat(max_connections_per_ip=10_000)
    peers = [FakePeer((f"10.0.{i // 256}.{i % 256}", 1)) for i in range(600)]
    ids = [room.arrive(peer, None) for peer in peers]
    for i, client in enumerate(ids):
        room.receive(client, join(f"p{i}"))
    for peer in peers[1:]:
        peer.mode = "slow"
    room.receive(ids[0], say("hi"))
    assert all(peer.closed == (1013, "too slow: messages piled up") for peer in peers[1:])
    assert room.room.clients == {ids[0]}
    assert peers[0].kinds().count("left") == 599


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


def test_throttle() -> None:
    throttle = Throttle(60.0)
    assert throttle.allow(100.0) == 0
    assert throttle.allow(101.0) is None
    assert throttle.allow(159.0) is None
    assert throttle.allow(160.0) == 2
    assert throttle.allow(10.0) == 0  # the clock stepped back: not silenced for good


# -- the Origin policy (issue 9) ---------------------------------------------------------


def request(host: str, origin: str | None) -> HandshakeRequest:
    return HandshakeRequest(
        target="/ws",
        path="/ws",
        query="",
        headers=Headers(),
        host=host,
        origin=origin,
        subprotocols=(),
        extensions=(),
    )


@pytest.mark.parametrize(
    ("bound", "host", "origin", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1:8000", "http://127.0.0.1:8000", True),
        ("127.0.0.1", "localhost:8000", "http://localhost:8000", True),
        ("127.0.0.1", "LocalHost:8000", "http://localhost:8000", True),
        ("127.0.0.1", "[::1]:8000", "http://[::1]:8000", True),
        ("127.0.0.1", "127.0.0.1:8000", "https://127.0.0.1:8000", True),
        ("127.0.0.1", "127.0.0.1:8000", None, True),  # not a browser
        # DNS rebinding: evil.example now resolves to 127.0.0.1.
        ("127.0.0.1", "evil.example:8000", "http://evil.example:8000", False),
        ("127.0.0.1", "localhost.:8000", "http://localhost.:8000", False),
        ("127.0.0.1", "127.0.0.1:8000", "http://evil.example", False),
        ("127.0.0.1", "127.0.0.1:8000", "http://127.0.0.1:9999", False),  # another local server
        ("127.0.0.1", "127.0.0.1:8000", "null", False),
        ("127.0.0.1", "127.0.0.1:80x", "http://127.0.0.1:80x", False),
        ("127.0.0.1", "[evil]:80", "http://[evil]:80", False),
        ("0.0.0.0", "192.168.1.5:8000", "http://192.168.1.5:8000", True),
        ("0.0.0.0", "chat.example:8000", "http://chat.example:8000", False),
        ("::", "[2001:db8::1]:8000", "http://[2001:db8::1]:8000", True),
        ("chat.example", "chat.example", "https://chat.example", True),
        ("chat.example", "Chat.Example:8000", "http://chat.example:8000", True),
        ("chat.example", "evil.example", "https://evil.example", False),
    ],
)
def test_origin_policy(bound: str, host: str, origin: str | None, allowed: bool) -> None:
    check = origin_policy(ChatSettings(host=bound))
    assert check(request(host, origin)) is allowed


def test_origins_option_overrides_the_policy() -> None:
    listed = server_options(ChatSettings(origins=("https://chat.example",)))
    assert listed["origins"] == ("https://chat.example",)
    assert callable(server_options(ChatSettings())["origins"])


def test_the_shared_history_is_fetched_once_per_redis_session() -> None:
    """Newcomers get the room's own copy: fetching it from Redis for each
    one would let a huge (or hostile) history delay every newcomer."""
    room = chat(redis="redis://127.0.0.1:6379/0", worker="w1")
    stored = json.dumps({"type": "message", "nick": "ann", "text": "from before", "time": 1.0})
    assert not room.history_due(False, 1)  # Redis down: nothing to fetch
    assert room.history_due(True, 1)
    room.seed_history(1, None)  # the fetch failed: try again with the next newcomer
    assert room.history_due(True, 1)
    room.seed_history(1, [stored, "not json", '{"type": "message"}'])
    assert not room.history_due(True, 1)  # seeded for this session
    assert room.history_due(True, 2)  # a new session may have missed events: again
    newcomer = FakePeer()
    room.arrive(newcomer, None)
    [welcome] = newcomer.events
    assert [item["text"] for item in welcome["history"]] == ["from before"]  # checked items only
