"""Options and URLs (adapters/_common.py), and the error paths every
adapter must take the same way."""

from __future__ import annotations

import asyncio

import pytest

from adapters import ConcurrencyError, InvalidURI
from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from adapters._common import FINAL_WRITE_BOUND, Settings, parse_uri

from .harness import running_server


@pytest.mark.parametrize(
    ("url", "secure", "host", "port", "target", "host_header"),
    [
        ("ws://example.com", False, "example.com", 80, "/", "example.com"),
        ("wss://example.com/chat?x=1", True, "example.com", 443, "/chat?x=1", "example.com"),
        ("ws://127.0.0.1:8000/a", False, "127.0.0.1", 8000, "/a", "127.0.0.1:8000"),
        ("ws://[::1]:9000/", False, "::1", 9000, "/", "[::1]:9000"),
    ],
)
def test_parse_uri(
    url: str, secure: bool, host: str, port: int, target: str, host_header: str
) -> None:
    uri = parse_uri(url)
    assert (uri.secure, uri.host, uri.port, uri.target) == (secure, host, port, target)
    assert uri.host_header == host_header


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com", "not a ws://"),
        ("ws://", "no host"),
        ("ws://user:secret@example.com", "credentials"),
        ("ws://example.com:99999", "invalid port"),
    ],
)
def test_invalid_uri(url: str, why: str) -> None:
    with pytest.raises(InvalidURI, match=why):
        parse_uri(url)
    with pytest.raises(ValueError, match=why):  # InvalidURI is a ValueError too
        ws_blocking.connect(url)


def test_settings_defaults_and_validation() -> None:
    settings = Settings.of({"subprotocols": ["a", "b"], "origins": ["http://x", None]})
    assert settings.subprotocols == ("a", "b")
    assert settings.origins == ("http://x", None)
    assert settings.max_message_size == 1 << 20
    assert settings.core_options()["streaming"] is True
    with pytest.raises(ValueError, match="max_queue"):
        Settings.of({"max_queue": 0})
    with pytest.raises(ValueError, match="write_limit"):
        Settings.of({"write_limit": 0})


def test_every_none_timeout_has_one_meaning() -> None:
    """close_timeout=None: shutdown waits for as long as closing takes, and
    the last write after a close is still bounded."""
    assert Settings.of({"close_timeout": None}).shutdown_wait is None
    assert Settings.of({"close_timeout": None}).final_write_bound == FINAL_WRITE_BOUND
    assert Settings.of({"close_timeout": 3.0}).shutdown_wait == 3.0
    assert Settings.of({"close_timeout": 3.0}).final_write_bound == 3.0


# -- error paths every adapter takes -----------------------------------------


def test_blocking_recv_and_ping_time_out() -> None:
    with running_server("asyncio") as server, ws_blocking.connect(server.url("/noread")) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        ws.send("fills nothing")  # the server never reads, but TCP takes this


def test_concurrent_recv_is_refused() -> None:
    async def run(port: int) -> None:
        async with ws_asyncio.connect(f"ws://127.0.0.1:{port}/noread") as ws:
            first = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0.05)
            with pytest.raises(ConcurrencyError):
                await ws.recv()
            first.cancel()

    with running_server("asyncio") as server:
        asyncio.run(run(server.port))


def test_duplicate_ping_payload_is_refused() -> None:
    async def run(port: int) -> None:
        async with ws_asyncio.connect(f"ws://127.0.0.1:{port}/noread") as ws:
            first = asyncio.ensure_future(ws.ping(b"same"))
            await asyncio.sleep(0)
            with pytest.raises(ConcurrencyError):
                await ws.ping(b"same")
            await first  # the server's core answers pings even if its handler never reads

    with running_server("asyncio") as server:
        asyncio.run(run(server.port))


def test_send_refuses_other_types() -> None:
    with running_server("asyncio") as server, ws_blocking.connect(server.url()) as ws:
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        ws.send("still fine")
        assert ws.recv(timeout=5) == "still fine"
