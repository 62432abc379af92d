"""Just enough of the Redis protocol (RESP2), sans-IO, for the chat's hub:
commands out as bytes, replies in as bytes. The three backends each move
these bytes over their own sockets."""

from __future__ import annotations

from typing import TypeAlias


class RedisError(Exception):
    """An error reply from the server (`-ERR ...`)."""


Reply: TypeAlias = "bytes | int | str | list[Reply] | RedisError | None"


class ProtocolError(Exception):
    """The bytes are not RESP: the connection is unusable."""


def command(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class ReplyParser:
    """Incremental reply parser: `feed` returns every complete reply."""

    __slots__ = ("_buffer", "_max_bulk")

    def __init__(self, max_bulk: int = 64 << 20) -> None:
        self._buffer = bytearray()
        self._max_bulk = max_bulk

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        while True:
            parsed = self._parse(0)
            if parsed is None:
                return replies
            reply, end = parsed
            del self._buffer[:end]
            replies.append(reply)

    def _parse(self, pos: int) -> tuple[Reply, int] | None:
        buffer = self._buffer
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            if len(buffer) - pos > 1024:
                raise ProtocolError("a RESP line over 1 KiB")
            return None
        kind, line = buffer[pos : pos + 1], bytes(buffer[pos + 1 : eol])
        after = eol + 2
        if kind == b"+":
            return line.decode("utf-8", "replace"), after
        if kind == b"-":
            return RedisError(line.decode("utf-8", "replace")), after
        if kind == b":":
            return _integer(line), after
        if kind == b"$":
            size = _integer(line)
            if size < 0:
                return None, after
            if size > self._max_bulk:
                raise ProtocolError(f"a bulk string of {size} bytes")
            if len(buffer) < after + size + 2:
                return None
            return bytes(buffer[after : after + size]), after + size + 2
        if kind == b"*":
            count = _integer(line)
            if count < 0:
                return None, after
            items: list[Reply] = []
            for _ in range(count):
                parsed = self._parse(after)
                if parsed is None:
                    return None
                item, after = parsed
                items.append(item)
            return items, after
        raise ProtocolError(f"unknown RESP type {bytes(kind)!r}")


def _integer(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"not an integer: {line!r}") from None


def text_items(reply: Reply) -> list[str] | None:
    """A reply that is a list of bulk strings, decoded; None otherwise."""
    if not isinstance(reply, list) or not all(isinstance(item, bytes) for item in reply):
        return None
    return [item.decode("utf-8", "replace") for item in reply if isinstance(item, bytes)]


def pushed_message(reply: Reply) -> str | None:
    """The payload of a pub/sub ["message", channel, payload] push, or None."""
    items = text_items(reply)
    if items is None or len(items) != 3 or items[0] != "message":
        return None
    return items[2]


class Subscription:
    """The replies on a connection that has sent SUBSCRIBE: `feed` returns
    the published payloads; `confirmed` turns true with the subscription.
    An error reply raises RedisError."""

    __slots__ = ("_parser", "confirmed")

    def __init__(self) -> None:
        self._parser = ReplyParser()
        self.confirmed = False

    def feed(self, data: bytes) -> list[str]:
        payloads = []
        for reply in self._parser.feed(data):
            pushed = pushed_message(reply)
            if pushed is not None:
                payloads.append(pushed)
            elif isinstance(reply, list) and reply[:1] == [b"subscribe"]:
                self.confirmed = True
            elif isinstance(reply, RedisError):
                raise reply
        return payloads


def parse_redis_url(url: str) -> tuple[str, int, int]:
    """redis://host:port/db -> (host, port, db)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"expected redis://host:port/db, not {url!r}")
    db = int(parts.path.lstrip("/") or 0)
    return parts.hostname, parts.port or 6379, db
