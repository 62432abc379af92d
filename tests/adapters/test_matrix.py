"""The behaviours every adapter must share, on every server x client pair
(our own client against our own server, across backends)."""

from __future__ import annotations

import json
import threading

import pytest

from adapters import ConnectionClosedError, ConnectionClosedOK, HandshakeError

from .harness import BACKENDS, client, running_server

pairs = pytest.mark.parametrize(
    ("server_backend", "client_backend"),
    [(s, c) for s in BACKENDS for c in BACKENDS],
    ids=[f"{s}-server-{c}-client" for s in BACKENDS for c in BACKENDS],
)

SIZES = [0, 1, 125, 126, 65535, 65536, 300_000]


@pairs
def test_handshake_subprotocol_and_request(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend, subprotocols=["v2", "v1"]) as server,
        client(
            client_backend,
            server.url("/info?room=1"),
            subprotocols=["v1", "v2"],
            origin="http://test.example",
            extra_headers=[("X-Test", "yes")],
        ) as ws,
    ):
        assert ws.subprotocol == "v2"  # the server's preference wins
        info = json.loads(ws.recv())
        assert info["path"] == "/info"
        assert info["query"] == "room=1"
        assert info["origin"] == "http://test.example"
        assert info["subprotocol"] == "v2"
        assert info["x-test"] == "yes"
        assert info["remote"][0] == "127.0.0.1"


@pairs
def test_echo_text_and_binary_of_many_sizes(server_backend: str, client_backend: str) -> None:
    with running_server(server_backend) as server, client(client_backend, server.url()) as ws:
        for size in SIZES:
            text = "é" * (size // 2)
            ws.send(text)
            assert ws.recv() == text
            data = bytes(range(256)) * (size // 256) + bytes(size % 256)
            ws.send(data)
            assert ws.recv() == data


DEFAULT_DEFLATE = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


@pairs
@pytest.mark.parametrize("off", ["nobody", "server", "client"])
def test_compression_is_on_by_default_and_each_side_can_refuse(
    server_backend: str, client_backend: str, off: str
) -> None:
    server_options = {"compression": None} if off == "server" else {}
    client_options = {"compression": None} if off == "client" else {}
    expected = [DEFAULT_DEFLATE] if off == "nobody" else []
    with (
        running_server(server_backend, **server_options) as server,
        client(client_backend, server.url("/info"), **client_options) as ws,
    ):
        assert json.loads(ws.recv())["extensions"] == expected
        assert list(ws.extensions) == expected
        chat = json.dumps({"type": "message", "nick": "ann", "text": "hello " * 50})
        for message in [chat, chat.encode(), "", "x" * 300_000, bytes(range(256)) * 1000]:
            ws.send(message)
            assert ws.recv() == message


@pairs
def test_fragmented_messages_both_ways(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend) as server,
        client(client_backend, server.url("/stream")) as ws,
    ):
        ws.send_fragments(["Hel", "lo", " wörld"])
        assert "".join(ws.recv_streaming()) == "Hello wörld"  # type: ignore[arg-type]
        # Send from another thread while reading here: a peer that echoes a
        # large message to us while we do not read would (rightly) block
        # once the bounded queues and socket buffers on both sides are full.
        big = [bytes([i]) * 100_000 for i in range(5)]
        sender = threading.Thread(target=ws.send_fragments, args=(big,))
        sender.start()
        assert ws.recv() == b"".join(big)
        sender.join(10)
        ws.send_fragments([])  # an empty fragmented message is still a message
        assert ws.recv() == b""


@pairs
def test_ping_returns_round_trip_both_ways(server_backend: str, client_backend: str) -> None:
    with running_server(server_backend) as server:
        with client(client_backend, server.url()) as ws:
            rtt = ws.ping()
            assert 0 < rtt < 5
        with client(client_backend, server.url("/ping")) as ws:
            assert 0 < float(ws.recv()) < 5  # the server pinged us and got our pong


@pairs
def test_client_close_with_code_and_reason(server_backend: str, client_backend: str) -> None:
    with running_server(server_backend) as server, client(client_backend, server.url()) as ws:
        ws.send("before")
        assert ws.recv() == "before"
        ws.close(4001, "client done")
        assert ws.close_code == 4001  # the server echoed our code
        with pytest.raises(ConnectionClosedError):
            ws.send("after")


@pairs
def test_server_close_with_code_and_reason(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend) as server,
        client(client_backend, server.url("/close/4002/server%20done")) as ws,
    ):
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv()
        assert (caught.value.code, caught.value.reason) == (4002, "server%20done")
        assert (ws.close_code, ws.close_reason) == (4002, "server%20done")


@pairs
def test_normal_close_ends_iteration_cleanly(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend) as server,
        client(client_backend, server.url("/close/1000/bye")) as ws,
        pytest.raises(ConnectionClosedOK),
    ):
        ws.recv()


@pairs
def test_message_over_limit_fails_with_1009(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend, max_message_size=1000) as server,
        client(client_backend, server.url()) as ws,
    ):
        ws.send(b"x" * 1000)
        assert ws.recv() == b"x" * 1000
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv()
        assert caught.value.code == 1009


@pairs
def test_handler_error_closes_with_1011(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend) as server,
        client(client_backend, server.url("/fail")) as ws,
    ):
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv()
        assert caught.value.code == 1011


@pairs
def test_graceful_shutdown_sends_1001(server_backend: str, client_backend: str) -> None:
    with running_server(server_backend) as server, client(client_backend, server.url()) as ws:
        ws.send("hello")
        assert ws.recv() == "hello"
        server.stop()
        with pytest.raises(ConnectionClosedOK) as caught:
            ws.recv()
        assert caught.value.code == 1001


@pytest.mark.parametrize("server_backend", BACKENDS)
@pytest.mark.parametrize("client_backend", BACKENDS)
def test_rejected_handshake_raises_with_status(server_backend: str, client_backend: str) -> None:
    with running_server(server_backend, origins=["http://good.example"]) as server:
        with (
            pytest.raises(HandshakeError) as caught,
            client(client_backend, server.url(), origin="http://evil.example"),
        ):
            pass
        assert caught.value.status == 403
        assert b"origin not allowed" in caught.value.body


def test_trio_connect_lets_the_bodys_exception_through() -> None:
    """Not an ExceptionGroup from the reader's nursery: `except ConnectionClosed`
    around `async with connect(...)` must work."""
    import trio

    from adapters import trio as ws_trio

    async def run(port: int) -> None:
        with pytest.raises(ConnectionClosedError) as caught:
            async with ws_trio.connect(f"ws://127.0.0.1:{port}/close/4005/x") as ws:
                await ws.recv()
        assert caught.value.code == 4005

    with running_server("asyncio") as server:
        trio.run(run, server.port)


@pairs
def test_prepared_messages_reach_every_client(server_backend: str, client_backend: str) -> None:
    with (
        running_server(server_backend) as server,
        client(client_backend, server.url("/prepared")) as ws,
    ):
        assert [ws.recv() for _ in range(3)] == ["prepared " * 100] * 3
        ws.send("and the echo after")
        assert ws.recv() == "and the echo after"
