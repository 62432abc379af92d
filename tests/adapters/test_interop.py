"""Interop with third-party peers: our three servers against the clients of
websockets, websocket-client, aiohttp and trio-websocket; our three clients
against the servers of websockets and aiohttp."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp
import pytest
import trio
import trio_websocket
import websocket
from aiohttp import web
from websockets.asyncio.server import serve as websockets_serve
from websockets.sync.client import connect as websockets_connect

from adapters._common import ConnectionClosedError, ConnectionClosedOK

from .harness import BACKENDS, AsyncioThread, client, running_server

MESSAGES: list[str | bytes] = ["", "hello", "é" * 40_000, b"", b"\x00\xff" * 35_000]

# -- third-party clients against our servers ----------------------------------


def websockets_client(url: str) -> tuple[list[str | bytes], int | None]:
    echoed = []
    with websockets_connect(url, max_size=None) as ws:
        for message in MESSAGES:
            ws.send(message)
            echoed.append(ws.recv())
        ws.ping().wait(5)
        ws.close(4000, "bye")
        code = ws.close_code
    return echoed, code


def websocket_client_client(url: str) -> tuple[list[str | bytes], int | None]:
    ws = websocket.create_connection(url, timeout=10)
    echoed: list[str | bytes] = []
    for message in MESSAGES:
        if isinstance(message, str):
            ws.send(message)
        else:
            ws.send_binary(message)
        echoed.append(ws.recv())
    ws.ping(b"x")
    ws.close(status=4000, reason=b"bye")
    return echoed, 4000  # websocket-client does not expose the echoed code


def aiohttp_client(url: str) -> tuple[list[str | bytes], int | None]:
    async def run() -> tuple[list[str | bytes], int | None]:
        echoed: list[str | bytes] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, max_msg_size=0) as ws,
        ):
            for message in MESSAGES:
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
                echoed.append((await ws.receive(timeout=10)).data)
            await ws.ping()
            await ws.close(code=4000, message=b"bye")
            return echoed, ws.close_code

    return asyncio.run(run())


def trio_websocket_client(url: str) -> tuple[list[str | bytes], int | None]:
    async def run() -> tuple[list[str | bytes], int | None]:
        echoed: list[str | bytes] = []
        async with trio_websocket.open_websocket_url(url, max_message_size=1 << 20) as ws:
            for message in MESSAGES:
                await ws.send_message(message)
                echoed.append(await ws.get_message())
            await ws.ping()
            await ws.aclose(4000, "bye")
            assert ws.closed is not None
            return echoed, ws.closed.code

    return trio.run(run)


PEER_CLIENTS: dict[str, Callable[[str], tuple[list[str | bytes], int | None]]] = {
    "websockets": websockets_client,
    "websocket-client": websocket_client_client,
    "aiohttp": aiohttp_client,
    "trio-websocket": trio_websocket_client,
}


@pytest.mark.parametrize("peer", list(PEER_CLIENTS))
@pytest.mark.parametrize("server_backend", BACKENDS)
def test_peer_clients_against_our_servers(server_backend: str, peer: str) -> None:
    with running_server(server_backend) as server:
        echoed, code = PEER_CLIENTS[peer](server.url())
    assert echoed == MESSAGES
    assert code == 4000


@pytest.mark.parametrize("server_backend", BACKENDS)
def test_websockets_client_sees_our_servers_close_code(server_backend: str) -> None:
    from websockets.exceptions import ConnectionClosedError as PeerClosed

    with (
        running_server(server_backend) as server,
        websockets_connect(server.url("/close/4002/done")) as ws,
    ):
        with pytest.raises(PeerClosed) as caught:
            ws.recv()
        assert caught.value.rcvd is not None
        assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4002, "done")


# -- our clients against third-party servers ----------------------------------


@contextmanager
def websockets_server() -> Iterator[int]:
    loop = AsyncioThread()

    async def echo(ws: object) -> None:
        async for message in ws:  # type: ignore[attr-defined]
            if message == "close-please":
                await ws.close(4003, "as you wish")  # type: ignore[attr-defined]
                return
            await ws.send(message)  # type: ignore[attr-defined]

    server = loop.run(lambda: websockets_serve(echo, "127.0.0.1", 0, max_size=None))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        loop.run(server.wait_closed)
        loop.stop()


@contextmanager
def aiohttp_server() -> Iterator[int]:
    loop = AsyncioThread()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                if message.data == "close-please":
                    await ws.close(code=4003, message=b"as you wish")
                    break
                await ws.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner

    runner = loop.run(start)
    try:
        yield runner.addresses[0][1]
    finally:
        loop.run(runner.cleanup)
        loop.stop()


PEER_SERVERS = {"websockets": websockets_server, "aiohttp": aiohttp_server}
# The code a peer answers our close 4000 with: websockets echoes it, aiohttp
# answers 1000 (RFC 6455 section 5.5.1 only says "typically echoes").
REPLY_TO_OUR_CLOSE = {"websockets": 4000, "aiohttp": 1000}


@pytest.mark.parametrize("peer", list(PEER_SERVERS))
@pytest.mark.parametrize("client_backend", BACKENDS)
def test_our_clients_against_peer_servers(client_backend: str, peer: str) -> None:
    with PEER_SERVERS[peer]() as port:
        url = f"ws://127.0.0.1:{port}/"
        with client(client_backend, url) as ws:
            for message in MESSAGES:
                ws.send(message)
                assert ws.recv() == message
            assert 0 < ws.ping() < 5
            ws.close(4000, "bye")
            assert ws.close_code == REPLY_TO_OUR_CLOSE[peer]
        with client(client_backend, url) as ws:
            ws.send("close-please")
            with pytest.raises((ConnectionClosedError, ConnectionClosedOK)) as caught:
                ws.recv()
            assert (caught.value.code, caught.value.reason) == (4003, "as you wish")
