"""The chat's wire schema: small JSON objects with a `type`, both ways.

Client to server:

    {"type": "join", "nick": "ann"}          take a nickname (again to rename)
    {"type": "message", "text": "hello"}     say something (after joining)

Server to client:

    {"type": "welcome", "history": [<message>...], "online": 3, "max_text": 2000}
    {"type": "you", "nick": "ann"}           your join or rename went through
    {"type": "joined", "nick": "ann"}
    {"type": "renamed", "from": "ann", "to": "bob"}
    {"type": "left", "nick": "bob"}
    {"type": "message", "nick": "ann", "text": "hello", "time": 1763750000.0}
    {"type": "presence", "online": 4}        people online, across workers
    {"type": "error", "code": "...", "text": "...", "retry_after": 1.5}

Error codes: "invalid_json", "unknown_type", "invalid_nick", "nick_taken",
"not_joined", "empty", "too_long", "rate_limited" (with `retry_after`, in
seconds). The page shows every error as a notice.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

MAX_NICK = 24
MAX_TEXT = 2000


@dataclass(frozen=True, slots=True)
class Join:
    nick: str


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Invalid:
    code: str
    text: str


Command = Join | Say | Invalid


def parse_command(raw: str | bytes, *, max_text: int = MAX_TEXT) -> Command:
    """Turn one client message into a command, or say why it is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Invalid("invalid_json", "messages are JSON objects")
    if not isinstance(data, dict):
        return Invalid("invalid_json", "messages are JSON objects")
    kind = data.get("type")
    if kind == "join":
        nick = data.get("nick")
        problem = nick_problem(nick)
        if problem is not None:
            return Invalid("invalid_nick", problem)
        assert isinstance(nick, str)
        return Join(nick.strip())
    if kind == "message":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            return Invalid("empty", "a message needs some text")
        if len(text) > max_text:
            return Invalid("too_long", f"messages are limited to {max_text} characters")
        return Say(text)
    return Invalid("unknown_type", "type must be 'join' or 'message'")


def nick_problem(nick: object) -> str | None:
    """Why `nick` is not a valid nickname, or None: 1-24 characters of
    letters, digits, spaces and - _ . (any script), not only spaces."""
    if not isinstance(nick, str):
        return "a nickname is a string"
    nick = nick.strip()
    if not 1 <= len(nick) <= MAX_NICK:
        return f"a nickname has 1 to {MAX_NICK} characters"
    for char in nick:
        if not (char.isalnum() or char in " -_." or unicodedata.category(char) == "Mn"):
            return f"a nickname cannot contain {char!r}"
    return None


def encode(event: dict[str, object]) -> str:
    """Compact JSON: the same event is framed once and sent to everyone."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def error(code: str, text: str, **extra: object) -> str:
    return encode({"type": "error", "code": code, "text": text, **extra})
