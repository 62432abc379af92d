"""Sec-WebSocket-Extensions header syntax (RFC 6455 section 9.1).

Only the syntax lives here: which extensions exist and what their
parameters mean is for each extension to decide. The grammar is parsed with
a real tokenizer rather than `split(",")` because a quoted parameter value
is allowed, and a sloppy split lets a peer smuggle one offer inside another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import HandshakeViolation

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SPACE = re.compile(r"[ \t]*")

ExtensionParams = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionOffer:
    """One extension with its parameters, as offered or as accepted."""

    name: str
    params: ExtensionParams = ()

    def __str__(self) -> str:
        return format_extension(self)


def format_extension(offer: ExtensionOffer) -> str:
    parts = [offer.name]
    for key, value in offer.params:
        parts.append(key if value is None else f"{key}={value}")
    return "; ".join(parts)


class _Cursor:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # the pattern matches the empty string
        self.pos = match.end()

    def token(self, what: str) -> str:
        self.skip_space()
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            raise HandshakeViolation(400, f"expected {what} in Sec-WebSocket-Extensions")
        self.pos = match.end()
        return match.group()

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]


def parse_extensions(values: list[str]) -> tuple[ExtensionOffer, ...]:
    """Parse every Sec-WebSocket-Extensions field into offers, in order.

    Raises `HandshakeViolation` (status 400) on any syntax error.
    """
    offers: list[ExtensionOffer] = []
    for value in values:
        cursor = _Cursor(value)
        while True:
            if cursor.peek() == ",":  # empty list elements are legal
                cursor.pos += 1
                continue
            if cursor.peek() == "":
                break
            offers.append(_parse_one(cursor))
            following = cursor.peek()
            if following == ",":
                cursor.pos += 1
            elif following:
                raise HandshakeViolation(400, "malformed Sec-WebSocket-Extensions")
    return tuple(offers)


def _parse_one(cursor: _Cursor) -> ExtensionOffer:
    name = cursor.token("an extension name")
    params: list[tuple[str, str | None]] = []
    while cursor.peek() == ";":
        cursor.pos += 1
        key = cursor.token("a parameter name")
        value: str | None = None
        if cursor.peek() == "=":
            cursor.pos += 1
            cursor.skip_space()
            quoted = _QUOTED.match(cursor.text, cursor.pos)
            if quoted is not None:
                cursor.pos = quoted.end()
                value = re.sub(r"\\(.)", r"\1", quoted.group(1))
                if not _TOKEN.fullmatch(value):
                    raise HandshakeViolation(400, "quoted extension parameter is not a token")
            else:
                value = cursor.token("a parameter value")
        params.append((key, value))
    return ExtensionOffer(name=name, params=tuple(params))
