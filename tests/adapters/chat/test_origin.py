"""The default Origin policy (`origin.py`): the page's own origin, and
no DNS rebinding."""

from __future__ import annotations

import pytest

from adapters.chat.origin import origin_policy
from wsproto_core import HandshakeRequest
from wsproto_core.http import Headers


def request(host: str, origin: str | None) -> HandshakeRequest:
    return HandshakeRequest(
        target="/ws",
        path="/ws",
        query="",
        headers=Headers(),
        host=host,
        origin=origin,
        subprotocols=(),
        extensions=(),
    )


@pytest.mark.parametrize(
    ("bound", "host", "origin", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1:8000", "http://127.0.0.1:8000", True),
        ("127.0.0.1", "localhost:8000", "http://localhost:8000", True),
        ("127.0.0.1", "LocalHost:8000", "http://localhost:8000", True),
        ("127.0.0.1", "[::1]:8000", "http://[::1]:8000", True),
        ("127.0.0.1", "127.0.0.1:8000", "https://127.0.0.1:8000", True),
        ("127.0.0.1", "127.0.0.1:8000", None, True),  # not a browser
        # DNS rebinding: evil.example now resolves to 127.0.0.1.
        ("127.0.0.1", "evil.example:8000", "http://evil.example:8000", False),
        ("127.0.0.1", "localhost.:8000", "http://localhost.:8000", False),
        ("127.0.0.1", "127.0.0.1:8000", "http://evil.example", False),
        ("127.0.0.1", "127.0.0.1:8000", "http://127.0.0.1:9999", False),  # another local server
        ("127.0.0.1", "127.0.0.1:8000", "null", False),
        ("127.0.0.1", "127.0.0.1:80x", "http://127.0.0.1:80x", False),
        ("127.0.0.1", "[evil]:80", "http://[evil]:80", False),
        ("0.0.0.0", "192.168.1.5:8000", "http://192.168.1.5:8000", True),
        ("0.0.0.0", "chat.example:8000", "http://chat.example:8000", False),
        ("::", "[2001:db8::1]:8000", "http://[2001:db8::1]:8000", True),
        ("chat.example", "chat.example", "https://chat.example", True),
        ("chat.example", "Chat.Example:8000", "http://chat.example:8000", True),
        ("chat.example", "evil.example", "https://evil.example", False),
    ],
)
def test_origin_policy(bound: str, host: str, origin: str | None, allowed: bool) -> None:
    check = origin_policy(bound)
    assert check(request(host, origin)) is allowed
