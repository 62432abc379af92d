"""The sans-IO Redis session, without sockets: what it writes, how replies
find their commands, the bounded outbox, health checks on a clock we
drive, and what it does with hostile input."""

from __future__ import annotations

import logging

import pytest

from adapters.chat.redis_session import Conn, RedisSession
from adapters.chat.resp import Reply, command

CHANNEL = "wschat:room"
SUBSCRIBED = b"*3\r\n$9\r\nsubscribe\r\n$11\r\nwschat:room\r\n:1\r\n"
SUB_PONG = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"


def push(payload: bytes, channel: bytes = b"wschat:room") -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(payload),
        payload,
    )


def bulk_array(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%s\r\n" % (len(i), i) for i in items)


def new_session(now: float = 100.0, **options: object) -> RedisSession[str]:
    return RedisSession(
        now,
        channel=CHANNEL,
        history_key="wschat:history",
        history_length=3,
        **options,  # type: ignore[arg-type]
    )


def up_session(now: float = 100.0, **options: object) -> RedisSession[str]:
    session = new_session(now, **options)
    session.data_to_send(Conn.SUB)
    session.sent(Conn.SUB)
    session.receive_data(Conn.SUB, SUBSCRIBED, now)
    assert session.up
    return session


def test_subscribes_and_is_up_once_confirmed() -> None:
    session = new_session()
    assert not session.up
    assert session.data_to_send(Conn.SUB) == command("SUBSCRIBE", CHANNEL)
    assert session.data_to_send(Conn.CMD) == b""  # database 0: no SELECT
    assert not session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    session.receive_data(Conn.SUB, SUBSCRIBED[:10], 100.1)
    assert not session.up
    session.receive_data(Conn.SUB, SUBSCRIBED[10:], 100.1)
    assert session.up
    assert session.failure is None


def test_selects_its_database_first() -> None:
    session = new_session(db=3)
    assert session.data_to_send(Conn.CMD) == command("SELECT", 3)
    session.receive_data(Conn.SUB, SUBSCRIBED, 100.0)
    assert not session.up  # subscribed, but the database is not selected yet
    session.receive_data(Conn.CMD, b"+OK\r\n", 100.0)
    assert session.up


@pytest.mark.parametrize(
    ("credentials", "auth"),
    [
        ((None, "s3cret"), command("AUTH", "s3cret")),  # requirepass: the default user
        (("alice", "pw"), command("AUTH", "alice", "pw")),  # an ACL user
    ],
)
def test_auth_goes_first_on_both_connections(
    credentials: tuple[str | None, str], auth: bytes
) -> None:
    session = new_session(db=2, credentials=credentials)
    assert session.data_to_send(Conn.SUB) == auth + command("SUBSCRIBE", CHANNEL)
    assert session.data_to_send(Conn.CMD) == auth + command("SELECT", 2)
    session.receive_data(Conn.SUB, b"+OK\r\n" + SUBSCRIBED, 100.0)
    session.receive_data(Conn.CMD, b"+OK\r\n", 100.0)
    assert not session.up  # the SELECT is still unanswered
    session.receive_data(Conn.CMD, b"+OK\r\n", 100.0)
    assert session.up


def test_the_commands_connection_must_be_authenticated_too() -> None:
    session = new_session(credentials=("alice", "pw"))
    session.receive_data(Conn.SUB, b"+OK\r\n" + SUBSCRIBED, 100.0)
    assert not session.up  # database 0, but the AUTH on CMD is unanswered
    session.receive_data(Conn.CMD, b"+OK\r\n", 100.0)
    assert session.up


@pytest.mark.parametrize("conn", [Conn.SUB, Conn.CMD])
def test_refused_credentials_fail_the_session_saying_so(conn: Conn) -> None:
    session = new_session(credentials=("alice", "wrong"))
    refusal = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    session.receive_data(conn, refusal, 100.0)
    assert not session.up
    assert session.failure == (
        "redis refused the credentials: "
        "WRONGPASS invalid username-password pair or user is disabled."
    )


def test_a_refused_select_fails_the_session() -> None:
    session = new_session(db=99)
    session.receive_data(Conn.SUB, SUBSCRIBED, 100.0)
    session.receive_data(Conn.CMD, b"-ERR DB index is out of range\r\n", 100.0)
    assert not session.up
    assert "SELECT" in (session.failure or "")


def test_commands_go_out_in_order_and_their_replies_are_skipped() -> None:
    session = up_session()
    publish = command("PUBLISH", CHANNEL, "hello")
    store = command("RPUSH", "wschat:history", "hello"), command("LTRIM", "wschat:history", -3, -1)
    assert session.send((publish,), 100.0)
    assert session.send(store, 100.0)
    assert session.data_to_send(Conn.CMD) == publish + b"".join(store)
    received = session.receive_data(Conn.CMD, b":2\r\n:1\r\n+OK\r\n", 100.1)
    assert received.payloads == []
    assert received.answers == []
    assert session.failure is None


def test_the_history_answer_finds_its_waiter_among_other_replies() -> None:
    session = up_session()
    session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    assert session.request_history("newcomer", 100.0)
    assert session.data_to_send(Conn.CMD).endswith(command("LRANGE", "wschat:history", -3, -1))
    received = session.receive_data(
        Conn.CMD, b":1\r\n" + bulk_array(b'{"a":1}', "é".encode()), 100.1
    )
    assert received.answers == [("newcomer", ['{"a":1}', "é"])]


def test_a_request_reply_goes_to_its_callback_in_order() -> None:
    session = up_session()
    first: list[Reply] = []
    second: list[Reply] = []
    session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    assert session.request(command("EVAL", "return {}", 0), first.append, 100.0)
    assert session.request_history("newcomer", 100.0)
    assert session.request(command("GET", "k"), second.append, 100.0)
    received = session.receive_data(Conn.CMD, b":1\r\n*0\r\n*0\r\n$-1\r\n", 100.1)
    assert received.replies == [(first.append, []), (second.append, None)]
    assert received.answers == [("newcomer", [])]
    assert session.failure is None


def test_requests_unanswered_when_the_session_fails_are_handed_back() -> None:
    session = up_session()
    lost: list[Reply] = []
    assert session.request(command("GET", "k"), lost.append, 100.0)
    session.request_history("w", 100.0)
    session.fail("gone")
    assert not session.request(command("GET", "k"), lost.append, 100.0)
    assert session.take_requests() == [lost.append]
    assert session.take_requests() == []
    assert session.take_waiters() == ["w"]


def test_no_history_is_asked_for_when_none_is_kept() -> None:
    session = RedisSession(100.0, channel=CHANNEL, history_key="h", history_length=0)
    session.receive_data(Conn.SUB, SUBSCRIBED, 100.0)
    assert not session.request_history("w", 100.0)  # LRANGE h -0 -1 is the whole list
    assert session.data_to_send(Conn.CMD) == b""


def test_history_items_that_are_not_text_are_left_out() -> None:
    session = up_session(max_payload=100)
    session.request_history("w", 100.0)
    reply = bulk_array(b"good", b"\xff\xfe", b"x" * 500, b"fine")
    assert session.receive_data(Conn.CMD, reply, 100.1).answers == [("w", ["good", "fine"])]
    session.request_history("v", 100.0)
    assert session.receive_data(Conn.CMD, b"-ERR wrong type\r\n", 100.1).answers == [("v", None)]
    assert session.failure is None


def test_a_reply_to_no_command_fails_the_session() -> None:
    session = up_session()
    session.receive_data(Conn.CMD, b"+OK\r\n", 100.0)
    assert not session.up
    assert session.failure is not None


def test_an_error_reply_to_a_publish_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    session = up_session()
    session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    session.receive_data(Conn.CMD, b"-OOM command not allowed\r\n", 100.0)
    assert session.up
    assert "OOM" in caplog.text


# -- the outbox ---------------------------------------------------------------------------------


def test_the_outbox_is_bounded_in_bytes() -> None:
    session = up_session(max_outbox=100)
    message = command("PUBLISH", CHANNEL, "x" * 30)  # 60 bytes
    assert session.send((message,), 100.0)
    assert not session.send((message,), 100.0)  # would be 120: refused, delivered locally
    data = session.data_to_send(Conn.CMD)
    assert data == message
    assert not session.send((message,), 100.0)  # handed to the socket, not written yet
    session.sent(Conn.CMD)
    assert session.outbox_size == 0
    assert session.send((message,), 100.0)


def test_refusals_are_logged_once_in_a_while(caplog: pytest.LogCaptureFixture) -> None:
    session = up_session(max_outbox=10)
    with caplog.at_level(logging.WARNING, "wschat"):
        for _ in range(1000):
            assert not session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    assert len(caplog.records) == 1


def test_nothing_is_accepted_after_a_failure() -> None:
    session = up_session()
    session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    session.request_history("w", 100.0)
    session.fail("gone")
    assert not session.up
    assert session.data_to_send(Conn.CMD) == b""
    assert not session.send((command("PUBLISH", CHANNEL, "x"),), 100.0)
    assert not session.request_history("v", 100.0)
    assert session.take_waiters() == ["w"]
    assert session.take_waiters() == []


def test_end_of_file_fails_the_session() -> None:
    session = up_session()
    session.receive_eof(Conn.SUB)
    assert not session.up
    assert "closed" in (session.failure or "")


# -- health ---------------------------------------------------------------------------------


def test_idle_connections_are_pinged_and_the_pongs_keep_it_up() -> None:
    session = up_session(ping_interval=2.0, reply_timeout=5.0)
    now = 100.0
    for _ in range(10):
        assert session.next_deadline() == pytest.approx(now + 2.0)
        now += 2.0
        assert session.handle_timeout(now)  # True: there is something to write
        # In RESP2 a subscribed connection answers PING with ["pong", ""].
        assert session.data_to_send(Conn.SUB) == command("PING")
        assert session.data_to_send(Conn.CMD) == command("PING")
        session.sent(Conn.SUB)
        session.sent(Conn.CMD)
        session.receive_data(Conn.SUB, SUB_PONG, now + 0.01)
        session.receive_data(Conn.CMD, b"+PONG\r\n", now + 0.01)
        assert session.up


@pytest.mark.parametrize("silent", [Conn.SUB, Conn.CMD])
def test_a_late_pong_fails_the_session(silent: Conn) -> None:
    session = up_session(ping_interval=2.0, reply_timeout=5.0)
    session.handle_timeout(102.0)
    if silent is not Conn.SUB:
        session.receive_data(Conn.SUB, SUB_PONG, 102.1)
    if silent is not Conn.CMD:
        session.receive_data(Conn.CMD, b"+PONG\r\n", 102.1)
    # Not pinged again while a PING is unanswered; failed when it is late.
    assert session.next_deadline() <= 107.0
    session.handle_timeout(106.9)
    assert session.up
    assert not session.handle_timeout(107.0)  # failed: nothing to write
    assert not session.up
    assert "no answer" in (session.failure or "")


def test_an_outbox_that_does_not_drain_fails_the_session() -> None:
    """A stalled Redis: the socket takes nothing more (sent() is never
    called), no reply comes. The PUBLISH's reply is late: down."""
    session = up_session(ping_interval=2.0, reply_timeout=5.0)
    session.receive_data(Conn.SUB, b"", 101.0)
    assert session.send((command("PUBLISH", CHANNEL, "x"),), 101.0)
    session.data_to_send(Conn.CMD)  # written into a socket that never drains
    session.handle_timeout(103.0)
    session.receive_data(Conn.SUB, SUB_PONG, 103.0)  # the subscription is fine
    session.handle_timeout(105.9)
    assert session.up
    assert session.next_deadline() <= 106.0
    session.handle_timeout(106.0)
    assert not session.up


def test_an_unconfirmed_subscription_fails_in_time() -> None:
    session = new_session(reply_timeout=5.0)
    assert session.next_deadline() <= 105.0
    session.handle_timeout(105.0)
    assert session.failure is not None


# -- what arrives on the channel ----------------------------------------------------------------


def test_pushes_become_payloads() -> None:
    session = up_session()
    data = push(b'{"x":1}') + push("é".encode())
    assert session.receive_data(Conn.SUB, data, 100.0).payloads == ['{"x":1}', "é"]


def test_hostile_pushes_are_dropped_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    session = up_session(max_payload=1000)
    hostile = [
        push(b"\xff\xfe not utf-8"),
        push(b"x" * 5000),  # over max_payload: skipped by the parser
        push(b"elsewhere", channel=b"other"),
        b"*3\r\n$7\r\nmessage\r\n$11\r\nwschat:room\r\n:12\r\n",
        b"*3\r\n$7\r\nmessage\r\n$11\r\nwschat:room\r\n*1\r\n:1\r\n",
    ]
    with caplog.at_level(logging.WARNING, "wschat"):
        for _ in range(50):
            received = session.receive_data(Conn.SUB, b"".join(hostile) + push(b"ok"), 100.0)
            assert received.payloads == ["ok"]
    assert session.up
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"*1\r\n" * 5000,  # nested 5,000 deep
        b"\x00\xffgarbage\r\n",
        b"$99999999999\r\n",
        b"*99999999\r\n",
        b"+PONG\r\n",  # not how a subscribed connection answers
        b"-ERR bad\r\n",
        b"*3\r\n$11\r\nunsubscribe\r\n$11\r\nwschat:room\r\n:0\r\n",
    ],
)
def test_a_broken_subscription_fails_the_session_without_raising(data: bytes) -> None:
    session = up_session()
    received = session.receive_data(Conn.SUB, push(b"before") + data + push(b"after"), 100.0)
    assert received.payloads == ["before"]
    assert not session.up
    assert session.failure is not None


def test_an_incomplete_reply_is_late_like_any_other() -> None:
    """An array that never ends: nothing completes, the PING's answer is
    late, the session fails."""
    session = up_session(ping_interval=2.0, reply_timeout=5.0)
    session.handle_timeout(102.0)
    session.receive_data(Conn.SUB, b"*1000\r\n" + b":1\r\n" * 10, 102.5)
    session.receive_data(Conn.CMD, b"+PONG\r\n", 102.5)
    session.handle_timeout(107.0)
    assert not session.up
