"""Interop with third-party peers: our three servers against the clients of
websockets, websocket-client, aiohttp and trio-websocket; our three clients
against the servers of websockets and aiohttp; and permessage-deflate both
ways with websockets, aiohttp and wsproto."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import aiohttp
import pytest
import trio
import trio_websocket
import websocket
import wsproto
import wsproto.events as wsp
from aiohttp import web
from websockets.asyncio.server import serve as websockets_serve
from websockets.sync.client import connect as websockets_connect
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

from adapters import ConnectionClosedError, ConnectionClosedOK

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


# -- permessage-deflate with each peer, both directions -----------------------

CHAT: list[str | bytes] = [
    json.dumps({"type": "message", "nick": "ann", "text": "hello " * n}) for n in (1, 40, 700)
] + ["é" * 40_000, bytes(range(256)) * 300, ""]


def is_deflate(extensions: list[str] | tuple[str, ...]) -> bool:
    return len(extensions) == 1 and extensions[0].startswith("permessage-deflate")


def websockets_deflate_client(url: str) -> tuple[list[str], bool, list[str | bytes]]:
    with websockets_connect(url, max_size=None, compression="deflate") as ws:
        ours = json.loads(ws.recv())["extensions"]
        echoed = []
        for message in CHAT:
            ws.send(message)
            echoed.append(ws.recv())
        return ours, [e.name for e in ws.protocol.extensions] == ["permessage-deflate"], echoed


def aiohttp_deflate_client(url: str) -> tuple[list[str], bool, list[str | bytes]]:
    async def run() -> tuple[list[str], bool, list[str | bytes]]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, max_msg_size=0, compress=15) as ws,
        ):
            ours = json.loads((await ws.receive(timeout=10)).data)["extensions"]
            echoed: list[str | bytes] = []
            for message in CHAT:
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
                echoed.append((await ws.receive(timeout=10)).data)
            return ours, ws.compress > 0, echoed

    return asyncio.run(run())


class WsprotoPeer:
    """wsproto's sans-IO connection over a blocking socket."""

    def __init__(self, sock: socket.socket, conn: wsproto.WSConnection) -> None:
        self.sock = sock
        self.conn = conn
        self.events: list[wsp.Event] = []
        self.parts: list[str | bytes] = []

    def send(self, event: wsp.Event) -> None:
        self.sock.sendall(self.conn.send(event))

    def next_event(self) -> wsp.Event:
        while not self.events:
            data = self.sock.recv(65536)
            self.conn.receive_data(data or None)
            self.events.extend(self.conn.events())
        return self.events.pop(0)

    def recv(self) -> str | bytes:
        while True:
            event = self.next_event()
            if isinstance(event, wsp.Ping):
                self.send(event.response())
            elif isinstance(event, wsp.Message):
                self.parts.append(event.data)
                if event.message_finished:
                    parts, self.parts = self.parts, []
                    return "".join(parts) if isinstance(event, wsp.TextMessage) else b"".join(parts)  # type: ignore[arg-type]
            else:
                raise AssertionError(f"unexpected {event!r}")


def wsproto_deflate_client(url: str) -> tuple[list[str], bool, list[str | bytes]]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        peer = WsprotoPeer(sock, wsproto.WSConnection(wsproto.ConnectionType.CLIENT))
        peer.send(wsp.Request(host=host, target="/info", extensions=[WsprotoDeflate()]))
        accepted = peer.next_event()
        assert isinstance(accepted, wsp.AcceptConnection)
        ours = json.loads(peer.recv())["extensions"]
        echoed = []
        for message in CHAT:
            peer.send(wsp.Message(data=message))
            echoed.append(peer.recv())
        peer.send(wsp.CloseConnection(code=1000))
        return ours, [e.name for e in accepted.extensions] == ["permessage-deflate"], echoed


DEFLATE_CLIENTS = {
    "websockets": websockets_deflate_client,
    "aiohttp": aiohttp_deflate_client,
    "wsproto": wsproto_deflate_client,
}


@pytest.mark.parametrize("peer", list(DEFLATE_CLIENTS))
@pytest.mark.parametrize("server_backend", BACKENDS)
def test_compressing_peer_clients_against_our_servers(server_backend: str, peer: str) -> None:
    with running_server(server_backend) as server:
        ours, theirs, echoed = DEFLATE_CLIENTS[peer](server.url("/info"))
    assert is_deflate(ours)
    assert theirs
    assert echoed == CHAT


@contextmanager
def wsproto_server() -> Iterator[int]:
    """An echo server on wsproto with permessage-deflate, one thread per client."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads = []

    def serve_one(sock: socket.socket) -> None:
        with sock:
            peer = WsprotoPeer(sock, wsproto.WSConnection(wsproto.ConnectionType.SERVER))
            request = peer.next_event()
            assert isinstance(request, wsp.Request)
            peer.send(wsp.AcceptConnection(extensions=[WsprotoDeflate()]))
            try:
                while True:
                    peer.send(wsp.Message(data=peer.recv()))
            except (AssertionError, OSError):
                return  # the client closed

    listener.settimeout(0.1)  # so that the loop sees the listener close
    stopping = threading.Event()

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(10)
            thread = threading.Thread(target=serve_one, args=(sock,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        acceptor.join(5)
        listener.close()
        for thread in threads:
            thread.join(5)


DEFLATE_SERVERS = {
    "websockets": websockets_server,
    "aiohttp": aiohttp_server,
    "wsproto": wsproto_server,
}


@pytest.mark.parametrize("peer", list(DEFLATE_SERVERS))
@pytest.mark.parametrize("client_backend", BACKENDS)
def test_our_clients_compress_with_peer_servers(client_backend: str, peer: str) -> None:
    with DEFLATE_SERVERS[peer]() as port, client(client_backend, f"ws://127.0.0.1:{port}/") as ws:
        assert is_deflate(ws.extensions)
        for message in CHAT:
            ws.send(message)
            assert ws.recv() == message
