"""Just enough of the Redis protocol (RESP2), sans-IO, for the chat's hub:
commands out as bytes, replies in as bytes. The three backends each move
these bytes over their own sockets (through `redis_session.RedisSession`).

Whatever arrives from Redis is input from outside the process: a server
that misbehaves, or a fake one, can send anything. So the reply parser is
iterative (no recursion to exhaust), resumable (an incomplete reply is
never parsed again from its start: total work is linear in the bytes fed)
and bounded (nesting depth, elements, bytes held, line length). Anything
outside those bounds raises `ProtocolError`, which means: drop this
connection and reconnect.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import parse_qs, quote, unquote, urlsplit


class RedisError(Exception):
    """An error reply from the server (`-ERR ...`)."""


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A bulk string over the parser's `max_bulk`, skipped without being
    kept: Redis accepts values of up to 512 MB from anyone who can write to
    it, and one such value must cost neither the memory nor the connection."""

    size: int


Reply: TypeAlias = "bytes | int | str | list[Reply] | RedisError | TooLarge | None"


class ProtocolError(Exception):
    """The bytes are not RESP, or break the parser's bounds: the connection
    is unusable. `replies` holds those completed before the violation in
    the same `feed` (what arrived intact is not lost with what followed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.replies: list[Reply] = []


def command(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


# Redis itself never sends a bulk string over 512 MB (proto-max-bulk-len):
# a longer one is not Redis talking.
_MAX_DECLARED_BULK = 512 << 20
_MAX_DIGITS = 19  # a signed 64-bit integer


class _Array:
    """An array whose elements are still arriving."""

    __slots__ = ("count", "items")

    def __init__(self, count: int) -> None:
        self.count = count
        self.items: list[Reply] = []


class ReplyParser:
    """Incremental reply parser: `feed` returns every complete reply.

    The parser keeps its place between calls: the arrays being filled (a
    stack, not recursion), the position in its buffer, how far it has
    already looked for the end of the current line, and the size of a
    bulk string whose header it has read. So feeding a reply one byte at a
    time costs the same as feeding it at once, and `work` (the bytes it has
    examined, for tests) grows linearly with the input.

    Bounds (each violation raises `ProtocolError`):

    - `max_depth`: arrays nested in arrays (the chat needs 1);
    - `max_elements`: elements declared by all the arrays of one reply,
      checked from each array's header before any element arrives;
    - `max_reply`: bytes held for one incomplete reply (its bulk strings,
      and what is buffered);
    - `max_line`: a simple string, an error, or a header.

    A bulk string over `max_bulk` is skipped as it arrives and becomes a
    `TooLarge` (see there); one over 512 MiB is a `ProtocolError`.
    """

    __slots__ = (
        "_buffer",
        "_bulk",
        "_elements",
        "_held",
        "_max_bulk",
        "_max_depth",
        "_max_elements",
        "_max_line",
        "_max_reply",
        "_pos",
        "_scan",
        "_skip",
        "_skipped",
        "_stack",
        "_start",
        "work",
    )

    def __init__(
        self,
        *,
        max_depth: int = 8,
        max_elements: int = 1 << 20,
        max_bulk: int = 16 << 20,
        max_reply: int = 32 << 20,
        max_line: int = 64 << 10,
    ) -> None:
        self._max_depth = max_depth
        self._max_elements = max_elements
        self._max_bulk = max_bulk
        self._max_reply = max_reply
        self._max_line = max_line
        self._buffer = bytearray()
        self._pos = 0  # where the next unparsed byte is in _buffer
        self._scan = 0  # no CRLF in _buffer[_pos:_scan]: where to look next
        self._bulk = -1  # the size of a bulk string whose header is read
        self._skip = 0  # bytes of an oversized bulk string still to discard
        self._skipped: TooLarge | None = None  # the value it becomes
        self._stack: list[_Array] = []
        self._elements = 0  # declared by the arrays of the current reply
        self._start = 0  # where the current reply begins in _buffer
        self._held = 0  # bytes of it already parsed and dropped from _buffer
        self.work = 0  # bytes examined, in all

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        stack = self._stack
        try:
            while True:
                value, complete = self._next_value()
                if not complete:
                    break
                while stack:  # put it in the array being filled
                    top = stack[-1]
                    top.items.append(value)
                    if len(top.items) < top.count:
                        break
                    stack.pop()
                    value = top.items
                else:  # a whole reply
                    replies.append(value)
                    self._elements = self._held = 0
                    self._start = self._pos
            self._compact()
            if self._held + len(self._buffer) > self._max_reply:
                raise ProtocolError(f"a reply over {self._max_reply} bytes")
        except ProtocolError as error:
            error.replies = replies
            raise
        return replies

    def _compact(self) -> None:
        """Forget the bytes already parsed (deleting from the front of a
        bytearray is cheap: CPython moves its start), counting those of
        the incomplete reply in `_held`."""
        pos = self._pos
        if pos:
            del self._buffer[:pos]
            self._held += pos - self._start
            self._start = self._pos = 0
            self._scan -= pos

    def _next_value(self) -> tuple[Reply, bool]:
        """The next complete value (a whole array is placed element by
        element), or (None, False) if more bytes are needed."""
        buffer = self._buffer
        while True:
            if self._skip:
                available = len(buffer) - self._pos
                taken = min(available, self._skip)
                self.work += taken
                self._skip -= taken
                del buffer[self._pos : self._pos + taken]
                self._scan = self._pos
                if self._skip:
                    return None, False
                self._bulk = 0  # then its CRLF
            if self._bulk >= 0:
                start = self._pos
                end = start + self._bulk + 2
                if len(buffer) < end:
                    return None, False
                self.work += self._bulk + 2
                if buffer[end - 2 : end] != b"\r\n":
                    raise ProtocolError("a bulk string without its CRLF")
                value: Reply
                if self._skipped is not None:
                    value, self._skipped = self._skipped, None
                else:
                    value = bytes(buffer[start : end - 2])
                self._bulk = -1
                self._pos = self._scan = end
                return value, True
            # A line: a type byte, then up to CRLF.
            scan = max(self._scan, self._pos)
            eol = buffer.find(b"\r\n", scan)
            if eol < 0:
                self.work += len(buffer) - scan
                self._scan = max(self._pos, len(buffer) - 1)  # a CR may end it
                if len(buffer) - self._pos > self._max_line:
                    raise ProtocolError(f"a RESP line over {self._max_line} bytes")
                return None, False
            self.work += eol + 2 - scan
            if eol - self._pos > self._max_line:
                raise ProtocolError(f"a RESP line over {self._max_line} bytes")
            kind = buffer[self._pos]
            line = bytes(buffer[self._pos + 1 : eol])
            self._pos = self._scan = eol + 2
            if kind == 0x2B:  # +
                return line.decode("utf-8", "replace"), True
            if kind == 0x2D:  # -
                return RedisError(line.decode("utf-8", "replace")), True
            if kind == 0x3A:  # :
                return _integer(line), True
            if kind == 0x24:  # $
                size = _integer(line)
                if size == -1:
                    return None, True
                if size < 0 or size > _MAX_DECLARED_BULK:
                    raise ProtocolError(f"a bulk string of {size} bytes")
                if size > self._max_bulk:
                    self._skip, self._skipped = size, TooLarge(size)
                else:
                    self._bulk = size
                continue
            if kind == 0x2A:  # *
                count = _integer(line)
                if count == -1:
                    return None, True
                if count < 0:
                    raise ProtocolError(f"an array of {count} elements")
                if count == 0:
                    return [], True
                if len(self._stack) >= self._max_depth:
                    raise ProtocolError(f"arrays nested over {self._max_depth} deep")
                self._elements += count
                if self._elements > self._max_elements:
                    raise ProtocolError(f"a reply of over {self._max_elements} elements")
                self._stack.append(_Array(count))
                continue
            raise ProtocolError(f"unknown RESP type {bytes([kind])!r}")


def _integer(line: bytes) -> int:
    """A RESP integer, strictly: int() would also take spaces, '+' and '_'."""
    digits = line[1:] if line[:1] == b"-" else line
    if not digits or len(digits) > _MAX_DIGITS or not digits.isdigit():
        raise ProtocolError(f"not an integer: {line[:32]!r}")
    return int(line)


@dataclass(frozen=True, slots=True)
class RedisURL:
    """What `parse_redis_url` reads; `password` None: no AUTH is sent."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None  # an ACL user (Redis 6+); None: the default user
    password: str | None = None
    tls: bool = False  # rediss://
    ca_file: str | None = None  # ?ssl_ca_certs=: trust this CA, not the system's store
    cert_file: str | None = None  # ?ssl_certfile= (and ?ssl_keyfile=): a client certificate
    key_file: str | None = None

    def __str__(self) -> str:
        """The URL as it may be shown (in a log line): the password hidden."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        who = "" if self.username is None else quote(self.username, safe="")
        if self.password is not None:
            who += ":***"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{who + '@' if who else ''}{host}:{self.port}/{self.db}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS settings of a rediss:// URL (None for redis://): the
        system's CA store unless `ca_file`, and the server's name checked;
        OSError or ssl.SSLError if a file cannot be used."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


TLS_OPTIONS = {"ssl_ca_certs": "ca_file", "ssl_certfile": "cert_file", "ssl_keyfile": "key_file"}


def parse_redis_url(url: str) -> RedisURL:
    """redis[s]://[user[:password]@]host[:port][/db][?options] -> RedisURL,
    as Redis's own clients read it: user and password percent-decoded
    (`:password@` alone is the default user's password); rediss:// is TLS,
    with the options ssl_ca_certs, ssl_certfile and ssl_keyfile (file
    paths, as redis-py names them). ValueError if it is not one this
    client can use."""
    problem = f"expected redis://[user:password@]host[:port][/db], not {_hidden(url)!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.fragment:
        raise ValueError(problem)
    files: dict[str, str] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True, strict_parsing=False).items():
        if name not in TLS_OPTIONS or len(values) != 1 or not values[0]:
            raise ValueError(f"unknown or repeated option {name!r} in {_hidden(url)!r}")
        if parts.scheme != "rediss":
            raise ValueError(f"{name} needs a rediss:// (TLS) URL: {_hidden(url)!r}")
        files[TLS_OPTIONS[name]] = values[0]
    if parts.query and not files:
        raise ValueError(problem)
    if "key_file" in files and "cert_file" not in files:
        raise ValueError(f"ssl_keyfile without ssl_certfile in {_hidden(url)!r}")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port out of range in {_hidden(url)!r}")
    db = parts.path[1:] if parts.path.startswith("/") else parts.path
    if db == "":
        db = "0"
    if not (db.isascii() and db.isdigit()) or len(db) > 9:
        raise ValueError(
            f"the database must be a number, as in redis://host:6379/0: {_hidden(url)!r}"
        )
    username = unquote(parts.username) if parts.username else None
    password = None if parts.password is None else unquote(parts.password)
    if username is not None and password is None:
        raise ValueError(f"an ACL user needs a password, as in redis://user:password@host: {url!r}")
    return RedisURL(
        parts.hostname,
        port or 6379,
        int(db),
        username,
        password,
        tls=parts.scheme == "rediss",
        **files,
    )


def _hidden(url: str) -> str:
    """`url` with any password replaced, for an error message."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
