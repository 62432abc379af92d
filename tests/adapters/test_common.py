"""The pieces the adapters share (adapters/_common.py), and the error paths
every adapter must take the same way."""

from __future__ import annotations

import asyncio

import pytest

from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from adapters._common import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidURI,
    Reassembly,
    Settings,
    answer_pings,
    closed_error,
    parse_uri,
)
from wsproto_core import BytesFragment, TextFragment

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


def test_a_pong_answers_its_ping_and_every_earlier_one() -> None:
    pings = {b"a": [1.0], b"b": [2.0], b"c": [3.0]}
    records = dict(pings)
    assert not answer_pings(pings, b"unknown", 5.0)
    assert answer_pings(pings, b"b", 5.0)
    assert records[b"a"] == [1.0, 4.0]
    assert records[b"b"] == [2.0, 3.0]
    assert list(pings) == [b"c"]  # still waiting


def test_reassembly_joins_fragments_of_either_kind() -> None:
    assembly = Reassembly()
    assert assembly.add(TextFragment(data="whole", final=True)) == "whole"
    assert assembly.add(TextFragment(data="a", final=False)) is None
    assert assembly.add(TextFragment(data="b", final=True)) == "ab"
    assert assembly.add(BytesFragment(data=b"x", final=False)) is None
    assert assembly.add(BytesFragment(data=b"y", final=True)) == b"xy"


def test_closed_error_classifies_codes() -> None:
    assert isinstance(closed_error(1000, ""), ConnectionClosedOK)
    assert isinstance(closed_error(1001, ""), ConnectionClosedOK)
    assert isinstance(closed_error(1005, ""), ConnectionClosedOK)
    assert isinstance(closed_error(1006, ""), ConnectionClosedError)
    assert isinstance(closed_error(4000, "x"), ConnectionClosedError)
    assert "4000 x" in str(closed_error(4000, "x"))
    assert "no status" in str(closed_error(None, ""))


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
