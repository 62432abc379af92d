"""The chat's JSON schema: what a client may send, and why not."""

from __future__ import annotations

import json

import pytest

from adapters.chat.protocol import (
    MAX_NICK,
    Invalid,
    Join,
    Say,
    encode,
    error,
    nick_problem,
    parse_command,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type": "join", "nick": "ann"}', Join("ann")),
        ('{"type": "join", "nick": "  Zoë_99.x-y  "}', Join("Zoë_99.x-y")),
        ('{"type": "join", "nick": "李小龍"}', Join("李小龍")),
        ('{"type": "message", "text": "hi <b>"}', Say("hi <b>")),
        (b'{"type": "message", "text": "bytes work too"}', Say("bytes work too")),
    ],
)
def test_valid_commands(raw: str | bytes, expected: object) -> None:
    assert parse_command(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ('{"type": "dance"}', "unknown_type"),
        ("{}", "unknown_type"),
        ('{"type": "join"}', "invalid_nick"),
        ('{"type": "join", "nick": 5}', "invalid_nick"),
        ('{"type": "join", "nick": "   "}', "invalid_nick"),
        ('{"type": "join", "nick": "<script>"}', "invalid_nick"),
        ('{"type": "join", "nick": "a\\u0000b"}', "invalid_nick"),
        (json.dumps({"type": "join", "nick": "x" * (MAX_NICK + 1)}), "invalid_nick"),
        ('{"type": "message"}', "empty"),
        ('{"type": "message", "text": "  \\n "}', "empty"),
        ('{"type": "message", "text": ["no"]}', "empty"),
        (json.dumps({"type": "message", "text": "x" * 2001}), "too_long"),
    ],
)
def test_invalid_commands_say_why(raw: str | bytes, code: str) -> None:
    result = parse_command(raw)
    assert isinstance(result, Invalid)
    assert result.code == code
    assert result.text


def test_the_text_limit_is_configurable() -> None:
    assert parse_command('{"type": "message", "text": "12345"}', max_text=5) == Say("12345")
    assert isinstance(parse_command('{"type": "message", "text": "123456"}', max_text=5), Invalid)


def test_nick_rules() -> None:
    assert nick_problem("ann") is None
    assert nick_problem("x" * MAX_NICK) is None
    assert nick_problem("a/b") == "a nickname cannot contain '/'"


def test_server_messages_are_compact_json() -> None:
    assert encode({"type": "message", "text": "é"}) == '{"type":"message","text":"é"}'
    assert json.loads(error("rate_limited", "slow down", retry_after=1.5)) == {
        "type": "error",
        "code": "rate_limited",
        "text": "slow down",
        "retry_after": 1.5,
    }
