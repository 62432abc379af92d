"""The RESP2 codec: replies in any chunking, bounds on what a hostile or
broken server can make the parser hold or do, linear work on replies that
arrive in pieces, and the Redis URL."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.chat.resp import (
    ProtocolError,
    RedisError,
    RedisURL,
    Reply,
    ReplyParser,
    TooLarge,
    command,
    parse_redis_url,
)

# -- an encoder of our own, for the tests --------------------------------------------


def encode(reply: Reply) -> bytes:
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if isinstance(reply, bool):
        raise TypeError(reply)
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, str):
        return b"+%s\r\n" % reply.encode()
    if isinstance(reply, RedisError):
        return b"-%s\r\n" % str(reply).encode()
    if isinstance(reply, list):
        return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)
    raise TypeError(reply)


def normal(reply: Reply) -> object:
    """Comparable: exceptions compare by identity."""
    if isinstance(reply, RedisError):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [normal(item) for item in reply]
    return reply


def feed_all(parser: ReplyParser, chunks: list[bytes]) -> list[Reply]:
    replies = []
    for chunk in chunks:
        replies.extend(parser.feed(chunk))
    return replies


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- replies ----------------------------------------------------------------------------


def test_command_is_an_array_of_bulk_strings() -> None:
    assert command("SET", b"k\r\n", 12) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n"
    assert command("PUBLISH", "c", "é") == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\n\xc3\xa9\r\n"


def test_every_kind_of_reply() -> None:
    data = (
        b"+OK\r\n-ERR no\r\n:-42\r\n$3\r\na\r\n\r\n$0\r\n\r\n$-1\r\n"
        b"*-1\r\n*0\r\n*2\r\n*1\r\n:1\r\n$1\r\nx\r\n"
    )
    replies = ReplyParser().feed(data)
    assert normal(replies) == [
        "OK",
        ("error", "ERR no"),
        -42,
        b"a\r\n",
        b"",
        None,
        None,
        [],
        [[1], b"x"],
    ]


def test_a_reply_split_anywhere_comes_out_whole_once() -> None:
    data = encode([b"message", b"wschat:room", b"x" * 100]) + b"+PONG\r\n"
    for cut in range(len(data) + 1):
        parser = ReplyParser()
        first = parser.feed(data[:cut])
        second = parser.feed(data[cut:])
        assert normal(first + second) == [[b"message", b"wschat:room", b"x" * 100], "PONG"]


@pytest.mark.parametrize(
    "data",
    [
        b"?what\r\n",  # no such type
        b"\r\n",  # no type at all
        b":1_000\r\n",  # int() would take these
        b": 1\r\n",
        b":+1\r\n",
        b":\r\n",
        b":-\r\n",
        b":99999999999999999999\r\n",  # over 64 bits
        b"$-2\r\n",
        b"*-2\r\n",
        b"$3\r\nabcde\r\n",  # the bulk string is longer than it said
        b"$" + b"9" * 30 + b"\r\n",
        b"$600000000\r\n",  # over Redis's own 512 MB
    ],
)
def test_not_resp(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(data)


def test_a_line_without_end_is_bounded() -> None:
    parser = ReplyParser(max_line=100)
    parser.feed(b"+" + b"a" * 99)
    with pytest.raises(ProtocolError):
        parser.feed(b"a" * 10)


# -- bounds ---------------------------------------------------------------------------------


def test_deep_nesting_is_refused_at_once() -> None:
    """100,000 nested arrays: a recursive parser overflows the stack; this
    one stops at its depth bound having looked at a few dozen bytes."""
    parser = ReplyParser()
    with pytest.raises(ProtocolError, match="nested"):
        parser.feed(b"*1\r\n" * 100_000)
    assert parser.work < 100


def test_the_depth_bound_is_the_limit() -> None:
    assert ReplyParser(max_depth=3).feed(b"*1\r\n" * 3 + b":7\r\n") == [[[[7]]]]
    with pytest.raises(ProtocolError):
        ReplyParser(max_depth=3).feed(b"*1\r\n" * 4 + b":7\r\n")


def test_too_many_elements_are_refused_from_the_header() -> None:
    parser = ReplyParser(max_elements=1000)
    assert len(parser.feed(b"*1000\r\n" + b":1\r\n" * 1000)[0]) == 1000  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="elements"):
        parser.feed(b"*1001\r\n")
    # Counted over the whole reply, nested arrays included.
    with pytest.raises(ProtocolError, match="elements"):
        ReplyParser(max_elements=1000).feed(b"*2\r\n*600\r\n" + b":1\r\n" * 600 + b"*600\r\n")


def test_bytes_held_for_one_reply_are_bounded() -> None:
    parser = ReplyParser(max_bulk=1000, max_reply=4000)
    parser.feed(b"*10\r\n")
    for _ in range(3):
        parser.feed(encode(b"x" * 1000))
    with pytest.raises(ProtocolError, match="bytes"):
        parser.feed(encode(b"x" * 1000))


def test_the_bound_is_per_reply() -> None:
    parser = ReplyParser(max_bulk=1000, max_reply=4000)
    for _ in range(20):
        assert parser.feed(encode([b"x" * 900, b"y" * 900])) == [[b"x" * 900, b"y" * 900]]


def test_an_oversized_bulk_string_is_skipped_not_held() -> None:
    """Anyone who can PUBLISH can send 512 MB: it is skipped as it arrives
    (never held: max_reply is far smaller) and the connection goes on."""
    parser = ReplyParser(max_bulk=1000, max_reply=4000)
    data = encode([b"message", b"wschat:room", b"x" * 100_000]) + b"+PONG\r\n"
    replies = feed_all(parser, chunked(data, 1500))
    assert replies == [[b"message", b"wschat:room", TooLarge(100_000)], "PONG"]
    # And its end is still checked.
    with pytest.raises(ProtocolError, match="CRLF"):
        ReplyParser(max_bulk=10).feed(b"$20\r\n" + b"x" * 20 + b"!!")


# -- linear work --------------------------------------------------------------------------


def test_a_million_elements_in_1_kib_chunks_take_linear_work() -> None:
    """The old parser started an incomplete reply over on every read:
    quadratic. `work` counts the bytes the parser examines."""
    count = 1_000_000
    data = b"*%d\r\n" % count + b":1\r\n" * count
    parser = ReplyParser()
    replies = feed_all(parser, chunked(data, 1024))
    assert len(replies) == 1
    assert len(replies[0]) == count  # type: ignore[arg-type]
    assert parser.work <= 2 * len(data)


def test_one_byte_at_a_time_takes_linear_work() -> None:
    data = encode([b"x" * 3000, [b"abc"] * 5000, "OK", 12345]) * 2
    parser = ReplyParser()
    replies = feed_all(parser, chunked(data, 1))
    assert len(replies) == 2
    assert parser.work <= 2 * len(data)


def calls_to_parse(data: bytes, chunk: int) -> int:
    """Function calls (Python and C) while feeding `data` in chunks: a
    measure of work that does not depend on how the parser is written."""
    parser = ReplyParser()
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    pieces = chunked(data, chunk)
    previous: Callable[..., Any] | None = sys.getprofile()
    sys.setprofile(profile)
    try:
        for piece in pieces:
            parser.feed(piece)
    finally:
        sys.setprofile(previous)
    return calls


def test_work_grows_linearly_with_an_array_that_arrives_in_pieces() -> None:
    def array(count: int) -> bytes:
        return b"*%d\r\n" % count + b":1\r\n" * count

    small = calls_to_parse(array(1000), 16)
    large = calls_to_parse(array(2000), 16)
    assert large < 2.5 * small  # quadratic would be 4 times


# -- hypothesis -----------------------------------------------------------------------------

simple_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n", exclude_categories=["Cs"]),
    max_size=20,
)
leaves = st.one_of(
    st.none(),
    st.binary(max_size=50),
    st.integers(-(2**63), 2**63 - 1),
    simple_text,
    simple_text.map(RedisError),
)


def replies(depth: int) -> st.SearchStrategy[Reply]:
    if depth == 0:
        return leaves
    return st.one_of(leaves, st.lists(replies(depth - 1), max_size=5))


@given(st.lists(replies(4), max_size=6), st.lists(st.integers(0, 400), max_size=12))
def test_any_chunking_gives_the_same_replies(expected: list[Reply], cuts: list[int]) -> None:
    data = b"".join(encode(reply) for reply in expected)
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    parser = ReplyParser()
    assert normal(feed_all(parser, chunks)) == normal(expected)
    assert parser.work <= 3 * len(data) + len(chunks)


@given(st.lists(st.binary(max_size=64), max_size=10))
def test_arbitrary_bytes_raise_nothing_but_protocol_error(chunks: list[bytes]) -> None:
    parser = ReplyParser(max_bulk=32, max_reply=256, max_line=64)
    with contextlib.suppress(ProtocolError):
        feed_all(parser, chunks)


@given(
    st.lists(replies(2), max_size=3),
    st.binary(min_size=1, max_size=40),
    st.integers(1, 16),
)
def test_garbage_after_valid_replies(expected: list[Reply], garbage: bytes, size: int) -> None:
    data = b"".join(encode(reply) for reply in expected) + garbage
    parser = ReplyParser(max_line=64)
    got: list[Reply] = []
    try:
        for chunk in chunked(data, size):
            got.extend(parser.feed(chunk))
    except ProtocolError:
        pass
    assert normal(got[: len(expected)]) == normal(expected)


# -- the URL ----------------------------------------------------------------------------------


def test_redis_url() -> None:
    assert parse_redis_url("redis://127.0.0.1:6380/2") == RedisURL("127.0.0.1", 6380, 2)
    assert parse_redis_url("redis://cache") == RedisURL("cache", 6379, 0)
    assert parse_redis_url("redis://cache/") == RedisURL("cache", 6379, 0)
    assert parse_redis_url("redis://[::1]:7000/1") == RedisURL("::1", 7000, 1)


def test_redis_url_credentials() -> None:
    assert parse_redis_url("redis://:s3cret@cache") == RedisURL("cache", password="s3cret")
    assert parse_redis_url("redis://alice:pw@cache:6380/1") == RedisURL(
        "cache", 6380, 1, "alice", "pw"
    )
    # percent-encoded, as a password with @, : or / has to be written
    assert parse_redis_url("redis://al%40ce:p%3Aw%2F%40@cache") == RedisURL(
        "cache", username="al@ce", password="p:w/@"
    )


def test_rediss_urls_and_their_files() -> None:
    plain = parse_redis_url("rediss://:pw@cache:6380/1")
    assert plain == RedisURL("cache", 6380, 1, None, "pw", tls=True)
    assert str(plain) == "rediss://:***@cache:6380/1"
    files = parse_redis_url(
        "rediss://cache?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    )
    assert (files.ca_file, files.cert_file, files.key_file) == ("/etc/ca.pem", "/c.pem", "/k.pem")
    assert parse_redis_url("redis://cache").tls_context() is None
    context = parse_redis_url("rediss://cache").tls_context()
    assert context is not None
    assert context.check_hostname  # the system's CA store, and the name checked
    with pytest.raises(OSError):
        parse_redis_url("rediss://cache?ssl_ca_certs=/nonexistent/ca.pem").tls_context()


def test_a_redis_url_is_shown_without_its_password() -> None:
    shown = str(parse_redis_url("redis://alice:pw@cache:6380/1"))
    assert shown == "redis://alice:***@cache:6380/1"
    assert str(parse_redis_url("redis://:s3cret@[::1]")) == "redis://:***@[::1]:6379/0"
    assert str(parse_redis_url("redis://cache")) == "redis://cache:6379/0"
    with pytest.raises(ValueError, match=r"\*\*\*") as refused:
        parse_redis_url("redis://alice:s3cret@cache/zero")
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/zero",  # a database is a number
        "redis://localhost:6379/-1",
        "redis://localhost:6379/1/2",
        "redis://localhost:6379/٣",  # a digit, but not ASCII
        "redis://localhost:99999/0",  # port out of range
        "redis://localhost:0/0",
        "redis://localhost:port/0",
        "redis:///0",  # no host
        "http://localhost:6379/0",
        "redis://alice@localhost:6379/0",  # an ACL user without a password
        "redis://localhost/0?ssl_ca_certs=/ca.pem",  # a TLS option without TLS
        "rediss://localhost/0?ssl_ca_file=/ca.pem",  # not an option
        "rediss://localhost/0?ssl_keyfile=/key.pem",  # a key without its certificate
        "rediss://localhost/0?ssl_ca_certs=",
        "rediss://localhost/0?ssl_ca_certs=/a&ssl_ca_certs=/b",
        "redis://localhost:6379/0?timeout=1",
    ],
)
def test_bad_redis_urls_are_value_errors(url: str) -> None:
    with pytest.raises(ValueError):
        parse_redis_url(url)
