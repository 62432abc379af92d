"""Close codes and close payloads."""

from __future__ import annotations

import pytest

from wsproto_core.errors import LocalProtocolError, ProtocolViolation
from wsproto_core.frames import build_close_payload, is_sendable_close_code, parse_close_payload


def test_sendable_close_codes_are_exactly_the_rfc_ranges() -> None:
    valid = {c for c in range(70000) if is_sendable_close_code(c)}
    expected = {1000, 1001, 1002, 1003} | set(range(1007, 1015)) | set(range(3000, 5000))
    assert valid == expected


def test_close_payload_round_trip() -> None:
    assert parse_close_payload(build_close_payload(1001, "bye ✓")) == (1001, "bye ✓")
    assert parse_close_payload(b"") == (1005, "")
    assert build_close_payload(None, "") == b""


def test_parse_close_payload_violations() -> None:
    for payload, code in [(b"\x03", 1002), (b"\x03\xed", 1002), (b"\x03\xe8\xc0", 1007)]:
        with pytest.raises(ProtocolViolation) as caught:
            parse_close_payload(payload)
        assert caught.value.code == code
        assert str(code) in str(caught.value)


def test_build_close_payload_refuses_what_the_rfc_forbids() -> None:
    with pytest.raises(LocalProtocolError):
        build_close_payload(1006, "")
    with pytest.raises(LocalProtocolError):
        build_close_payload(None, "reason")
    assert len(build_close_payload(1000, "x" * 123)) == 125
    with pytest.raises(LocalProtocolError):
        build_close_payload(1000, "x" * 124)


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (None, "reason", "a close reason needs a close code"),
        (1006, "", "close code 1006 may not be sent"),
        (1000, "x" * 124, "close reason is longer than 123 bytes once encoded as UTF-8"),
        (1000, "é" * 62, "close reason is longer than 123 bytes once encoded as UTF-8"),
    ],
)
def test_build_close_payload_says_what_it_refuses(
    code: int | None, reason: str, message: str
) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        build_close_payload(code, reason)
    assert str(caught.value) == message
