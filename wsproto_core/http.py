"""The small slice of HTTP/1.1 (RFC 9110/9112) that a WebSocket endpoint needs.

Only message heads are parsed here: a request line or status line and the
header fields, from bytes that the caller has already cut at the blank line.
Everything is validated strictly because the head arrives from an untrusted
peer before any authentication happens; a lenient parser here is how request
smuggling starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import HandshakeViolation

HeaderPairs = tuple[tuple[str, str], ...]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_TARGET = re.compile(rb"[\x21-\x7e]+")
# A status is 100-599 (RFC 9110, section 15): 0 stands for "none" here.
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) ([1-5]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?")

# Header names and values that most upgrade requests carry (browsers',
# proxies' and WebSocket clients'), and the method, decoded once for every
# connection: a connection keeps its request's headers for its whole life,
# and a dozen small strings of its own are most of what an idle one costs.
# A field found here is the same text the decoding would give.
_COMMON_TEXT: dict[bytes, str] = {
    text.encode("ascii"): text
    for word in (
        "GET",
        "Host",
        "Connection",
        "Upgrade",
        "Origin",
        "User-Agent",
        "Pragma",
        "Cache-Control",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Cookie",
        "Authorization",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
        "Sec-Fetch-Dest",
        "Sec-Fetch-Mode",
        "Sec-Fetch-Site",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Real-IP",
        "websocket",
        "keep-alive, Upgrade",
        "13",
        "no-cache",
        "*/*",
        "same-origin",
        "same-site",
        "cross-site",
        "gzip, deflate",
        "gzip, deflate, br",
        "gzip, deflate, br, zstd",
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
    )
    for text in (word, word.lower())
}


def _text(raw: bytes) -> str:
    """`raw` as text (Latin-1, of which ASCII is a part), shared if common."""
    return _COMMON_TEXT.get(raw) or raw.decode("latin-1")


REASON_PHRASES = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class Headers:
    """An immutable, ordered list of header fields with case-insensitive lookup.

    Order and duplicates are kept because both matter on the wire (several
    Sec-WebSocket-Protocol lines are one list; two Host lines are an attack).
    """

    # Kept flat, name, value, name, value: a connection keeps its request's
    # headers for its whole life, and a tuple per field would be some 56
    # bytes more each (700 for a browser's request).
    __slots__ = ("_fields",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        fields: list[str] = []
        for name, value in pairs:
            fields += (str(name), str(value))
        self._fields: tuple[str, ...] = tuple(fields)

    @classmethod
    def _of(cls, fields: tuple[str, ...]) -> Headers:
        """Headers holding the parser's `fields` (flat, already str) as they are."""
        headers = cls.__new__(cls)
        headers._fields = fields
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the only field called `name`, joined with ", " if repeated."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        fields = self._fields
        return [fields[i + 1] for i in range(0, len(fields), 2) if fields[i].lower() == wanted]

    def count(self, name: str) -> int:
        wanted = name.lower()
        return sum(1 for n in self._fields[::2] if n.lower() == wanted)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.count(name) > 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        fields = self._fields
        return zip(fields[::2], fields[1::2], strict=True)

    def __len__(self) -> int:
        return len(self._fields) // 2

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    @property
    def pairs(self) -> HeaderPairs:
        return tuple(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead:
    method: str
    target: str
    version: tuple[int, int]
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHead:
    version: tuple[int, int]
    status: int
    reason: str
    headers: Headers


def take_head(buffer: bytearray, *, max_size: int, what: str, status: int) -> bytes | None:
    """Remove and return the message head (without its blank line) from
    `buffer` once it is complete; None while more bytes are needed.

    Raises HandshakeViolation(`status`) as soon as the head cannot fit in
    `max_size` bytes, without waiting for a blank line that may never come.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0 or end + 4 > max_size:
        # `max_size` bytes without a whole blank line: the head's end is
        # still to come, so the head is longer than that.
        if end >= 0 or len(buffer) >= max_size:
            raise HandshakeViolation(status, f"{what} head is over {max_size} bytes")
        return None
    head = bytes(buffer[:end])
    del buffer[: end + 4]
    return head


def _parse_header_lines(lines: list[bytes], max_count: int) -> Headers:
    if len(lines) > max_count:
        raise HandshakeViolation(431, f"more than {max_count} header fields")
    fields: list[str] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise HandshakeViolation(400, "obsolete line folding in a header field")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HandshakeViolation(400, "malformed header field")
        value = value.strip(b" \t")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise HandshakeViolation(400, f"control character in header {name.decode('ascii')}")
        fields += (_text(name), _text(value))  # (a name is a token: ASCII)
    return Headers._of(tuple(fields))


def _split_head(head: bytes) -> tuple[bytes, list[bytes]]:
    """Split a head (without its final blank line) into start line and fields."""
    lines = head.split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        raise HandshakeViolation(400, "bare CR or LF in the message head")
    return lines[0], lines[1:]


def parse_request_head(head: bytes, *, max_header_count: int) -> RequestHead:
    start, lines = _split_head(head)
    parts = start.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _REQUEST_TARGET.fullmatch(parts[1]):
        raise HandshakeViolation(400, "malformed request line")
    version = parts[2]
    if not re.fullmatch(rb"HTTP/\d\.\d", version):
        raise HandshakeViolation(400, "malformed HTTP version")
    major, minor = version[5] - 0x30, version[7] - 0x30
    if major != 1:
        raise HandshakeViolation(505, "only HTTP/1.x is supported")
    return RequestHead(
        method=_text(parts[0]),  # (a token: ASCII)
        target=parts[1].decode("ascii"),
        version=(major, minor),
        headers=_parse_header_lines(lines, max_header_count),
    )


def parse_response_head(head: bytes, *, max_header_count: int) -> ResponseHead:
    start, lines = _split_head(head)
    match = _STATUS_LINE.fullmatch(start)
    if match is None:
        raise HandshakeViolation(0, "malformed status line")
    major, minor, status, reason = match.groups()
    return ResponseHead(
        version=(int(major), int(minor)),
        status=int(status),
        reason=(reason or b"").decode("latin-1"),
        headers=_parse_header_lines(lines, max_header_count),
    )


def token_list(headers: Headers, name: str) -> list[str]:
    """All comma-separated elements of every `name` field, lower-cased.

    For headers whose elements are case-insensitive tokens (Connection,
    Upgrade); empty elements are allowed by the list syntax and dropped.
    """
    return [
        item.strip(" \t").lower()
        for value in headers.get_all(name)
        for item in value.split(",")
        if item.strip(" \t")
    ]


def value_list(headers: Headers, name: str) -> list[str]:
    """Like `token_list` but keeps case (subprotocol names are case-sensitive)."""
    return [
        item.strip(" \t")
        for value in headers.get_all(name)
        for item in value.split(",")
        if item.strip(" \t")
    ]


def _encode_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in fields:
        raw_name = name.encode("ascii")
        raw_value = value.encode("latin-1")
        if not _TOKEN.fullmatch(raw_name) or _FORBIDDEN_IN_VALUE.search(raw_value):
            raise ValueError(f"invalid header field {name!r}: {value!r}")
        out += raw_name + b": " + raw_value + b"\r\n"
    return bytes(out)


def build_response(status: int, fields: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """Serialize a response head (and body, if any)."""
    if not 100 <= status <= 999:
        raise ValueError(f"invalid HTTP status {status}")
    reason = REASON_PHRASES.get(status, "Unknown")
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode("ascii") + _encode_fields(fields) + b"\r\n" + body
    )


def build_request(method: str, target: str, fields: Iterable[tuple[str, str]]) -> bytes:
    raw_target = target.encode("ascii")
    if not _TOKEN.fullmatch(method.encode("ascii")) or not _REQUEST_TARGET.fullmatch(raw_target):
        raise ValueError(f"invalid request line {method!r} {target!r}")
    return f"{method} {target} HTTP/1.1\r\n".encode("ascii") + _encode_fields(fields) + b"\r\n"
