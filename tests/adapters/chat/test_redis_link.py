"""The Redis link without its I/O (`redis_link.RedisLinkBase`), on a clock
we drive: sessions and their waiters, what the chat's commands and history
requests do while Redis is up or away, the guard around the room, the
backoff and what it logs. The backends' sockets are tested against a real
Redis in test_redis.py."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from adapters.chat.redis_link import FIRST_DELAY, MAX_DELAY, RedisLinkBase
from adapters.chat.redis_session import LOST, Conn, SessionError
from adapters.chat.resp import Reply, command

SUBSCRIBED = b"*3\r\n$9\r\nsubscribe\r\n$11\r\nwschat:room\r\n:1\r\n"


class Flag:
    def __init__(self) -> None:
        self.is_set = False

    def set(self) -> None:
        self.is_set = True


class Link(RedisLinkBase[Flag]):
    """A link whose I/O is the test: `now` is the clock, `wakes` counts the
    times it would have woken its writers."""

    def __init__(self, deliver: Callable[[str], None] = lambda payload: None) -> None:
        super().__init__("redis://127.0.0.1:6379/0", 3, deliver)
        self.now = 100.0
        self.wakes = 0

    def _now(self) -> float:
        return self.now

    def _new_event(self) -> Flag:
        return Flag()

    def _wake(self) -> None:
        self.wakes += 1


def connect(link: Link) -> None:
    """A new session, subscribed."""
    session = link._start_session()
    session.data_to_send(Conn.SUB)
    session.sent(Conn.SUB)
    link._on_data(session, Conn.SUB, SUBSCRIBED)
    assert link.up


def up_link() -> Link:
    link = Link()
    connect(link)
    return link


def test_the_link_survives_a_room_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    delivered = []

    def deliver(payload: str) -> None:
        if payload.startswith("bad"):
            raise RecursionError("maximum recursion depth exceeded")
        delivered.append(payload)

    link = Link(deliver)
    with caplog.at_level(logging.WARNING, "wschat"):
        for i in range(100):
            link._deliver_all([f"bad {i}", f"good {i}"], 100.0 + i / 100)
    assert delivered == [f"good {i}" for i in range(100)]
    assert len(caplog.records) == 1  # one line, not a hundred


def test_the_link_is_up_only_while_its_session_is(caplog: pytest.LogCaptureFixture) -> None:
    link = Link()
    assert not link.up
    assert link.sessions == 0
    with caplog.at_level(logging.INFO, "wschat"):
        link = up_link()
    assert link.sessions == 1
    assert "redis connected at 127.0.0.1:6379" in caplog.text
    session = link.session
    assert session is not None
    waiter = link._request_history()
    assert waiter is not None
    link._end_session("stopped")
    assert not link.up
    assert not session.up
    assert waiter.done.is_set  # the newcomer goes on without the history
    assert waiter.reply is None


def test_commands_and_history_requests_are_refused_while_redis_is_away() -> None:
    link = Link()
    assert not link.send(command("PUBLISH", "wschat:room", "x"))
    assert link._request_history() is None
    session = link._start_session()  # connected, not yet subscribed
    assert not link.send(command("PUBLISH", "wschat:room", "x"))
    assert link._request_history() is None
    assert link.wakes == 0
    assert session.data_to_send(Conn.CMD) == b""


def test_the_history_reply_reaches_its_waiter() -> None:
    link = up_link()
    session = link.session
    assert session is not None
    waiter = link._request_history()
    assert waiter is not None
    assert link.wakes == 1
    assert session.data_to_send(Conn.CMD) == command("LRANGE", "wschat:history", -3, -1)
    link._on_data(session, Conn.CMD, b"*1\r\n$2\r\nhi\r\n")
    assert waiter.done.is_set
    assert waiter.reply == ["hi"]


def test_a_command_is_queued_and_wakes_the_writer() -> None:
    link = up_link()
    assert link.send(command("PUBLISH", "wschat:room", "x"), command("PING"))
    assert link.wakes == 1
    assert link.session is not None
    assert link.session.data_to_send(Conn.CMD) == command("PUBLISH", "wschat:room", "x") + command(
        "PING"
    )


def test_the_deadline_wakes_the_writers_only_for_a_ping_and_ends_a_late_session() -> None:
    link = up_link()
    session = link.session
    assert session is not None
    link._on_deadline(session)  # nothing due yet
    assert link.wakes == 0
    link.now = session.next_deadline()
    link._on_deadline(session)  # the PINGs of idle connections
    assert link.wakes == 1
    link.now += 60
    with pytest.raises(SessionError, match="no answer"):
        link._on_deadline(session)


def test_the_end_of_a_connection_ends_the_session() -> None:
    link = up_link()
    assert link.session is not None
    with pytest.raises(SessionError, match="closed the subscription"):
        link._on_eof(link.session, Conn.SUB)


def test_backoff_doubles_up_to_a_limit_and_an_outage_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = Link()
    delays = []
    with caplog.at_level(logging.INFO, "wschat"):
        for _ in range(8):
            delays.append(link._lost(link._no_connection()))
    assert delays[:3] == [FIRST_DELAY, 2 * FIRST_DELAY, 4 * FIRST_DELAY]
    assert delays[-1] == MAX_DELAY
    outage = "redis unavailable (no connection to 127.0.0.1:6379 in 5 s); retrying with backoff"
    assert [r.getMessage() for r in caplog.records] == [outage]
    caplog.clear()
    link._check(link._start_session())  # connected, not yet subscribed: still backing off
    assert link.delay == MAX_DELAY
    with caplog.at_level(logging.INFO, "wschat"):
        connect(link)  # up: the delay starts over
        link._end_session("gone")
        assert link._lost(SessionError("redis closed the subscription connection")) == FIRST_DELAY
    assert [r.getMessage() for r in caplog.records] == [
        "redis connected at 127.0.0.1:6379",
        "redis unavailable (redis closed the subscription connection); retrying with backoff",
    ]


def test_what_a_link_does_not_expect_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = Link()
    with caplog.at_level(logging.WARNING, "wschat"):
        link._lost(ExceptionGroup("task group", [KeyError("a bug")]))
        link._lost(None)  # a session that ended without an error
    bug, outage = caplog.records
    assert bug.getMessage() == "redis link error: 'a bug'"
    assert bug.exc_info is not None
    assert outage.getMessage() == "redis unavailable ('a bug'); retrying with backoff"


def test_requests_get_their_replies_or_lost_when_the_session_ends() -> None:
    link = Link()
    replies: list[Reply] = []
    assert not link.request(command("GET", "k"), replies.append)  # no session: refused
    connect(link)
    session = link.session
    assert session is not None
    assert link.request(command("GET", "a"), replies.append)
    assert link.request(command("GET", "b"), replies.append)
    assert session.data_to_send(Conn.CMD) == command("GET", "a") + command("GET", "b")
    session.sent(Conn.CMD)
    link._on_data(session, Conn.CMD, b"$1\r\nx\r\n")
    assert replies == [b"x"]
    link._end_session("gone")  # b's reply never came: whether it ran is unknown
    assert replies == [b"x", LOST]
    assert not link.request(command("GET", "c"), replies.append)


def test_a_request_callback_that_raises_does_not_stop_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = up_link()
    session = link.session
    assert session is not None
    answered: list[Reply] = []

    def broken(reply: Reply) -> None:
        raise RuntimeError("a bug")

    link.request(command("GET", "a"), broken)
    link.request(command("GET", "b"), answered.append)
    session.data_to_send(Conn.CMD)
    session.sent(Conn.CMD)
    with caplog.at_level(logging.WARNING, "wschat"):
        link._on_data(session, Conn.CMD, b"$1\r\nx\r\n$1\r\ny\r\n")
    assert answered == [b"y"]
    assert link.up
    assert "a reply from redis was dropped: RuntimeError: a bug" in caplog.text
