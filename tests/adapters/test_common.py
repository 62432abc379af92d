"""The pieces the adapters share (adapters/_common.py), and the error paths
every adapter must take the same way."""

from __future__ import annotations

import asyncio
import sys
import tracemalloc

import pytest

from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from adapters._common import (
    READ_SIZE,
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

from ..wsproto_core.wire import one_byte_frames, open_server
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


@pytest.mark.parametrize(
    "fragment",
    [BytesFragment(data=b"\xff", final=False), TextFragment(data="€", final=False)],
    ids=["bytes", "text"],
)
def test_reassembly_of_a_million_tiny_fragments_costs_about_the_message_size(
    fragment: BytesFragment | TextFragment,
) -> None:
    """What a peer sending one byte per read would hand recv() if the core
    did not coalesce: 2**20 one-character fragments. Without merging, the
    list alone would take 8 MiB. tracemalloc's peak, not time, is checked."""
    count = 1 << 20
    assembly = Reassembly()
    tracemalloc.start()
    try:
        for _ in range(count):
            assembly.add(fragment)
        # Merged pieces of SETTLED or more, and a short tail of smaller ones.
        assert len(assembly.parts) <= count // Reassembly.SETTLED + 32
        if isinstance(fragment, TextFragment):
            message = assembly.add(TextFragment(data=fragment.data, final=True))
        else:
            message = assembly.add(BytesFragment(data=fragment.data, final=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == fragment.data * (count + 1)
    size = sys.getsizeof(message)
    assert peak < 3 * size + 256 * 1024, f"peak of {peak} bytes for a message of {size}"


def test_reassembly_parts_stay_what_recv_streaming_hands_out() -> None:
    """A cancelled recv() leaves `parts`; the adapters yield them, then
    reset the list."""
    assembly = Reassembly()
    big = b"B" * Reassembly.SETTLED
    for piece in [b"a", b"bc", big, b"d", b"e", b"f"]:
        assert assembly.add(BytesFragment(data=piece, final=False)) is None
    assert all(type(part) is bytes for part in assembly.parts)
    assert b"".join(assembly.parts) == b"abc" + big + b"def"  # type: ignore[arg-type]
    assert any(part is big for part in assembly.parts)  # a large piece is never copied early
    assembly.parts = []
    assert assembly.add(TextFragment(data="fresh", final=True)) == "fresh"


def test_core_and_reassembly_receive_one_byte_fragments_in_about_the_message_size() -> None:
    """The path every adapter takes: streaming core, 64 KiB reads, recv()."""
    size = 256 * 1024  # tracing is slow; see tests/wsproto_core/test_fragment_memory.py
    payload = bytes(range(256)) * (size // 256)
    data = one_byte_frames(payload, 0x2, masked=True)
    core = open_server(streaming=True)
    reads = [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]
    assembly = Reassembly()
    messages = []
    tracemalloc.start()
    try:
        for read in reads:
            events = core.receive_data(read)
            assert len(events) <= 1  # one fragment per read, not one per frame
            for event in events:
                assert isinstance(event, BytesFragment)
                message = assembly.add(event)
                if message is not None:
                    messages.append(message)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert messages == [payload]
    assert peak < 3 * size + 64 * 1024, f"peak of {peak} bytes for a message of {size}"


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
