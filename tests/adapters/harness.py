"""Run every adapter from plain synchronous test code.

Servers and clients of the async backends live on an event loop in a
background thread; the test thread talks to them through a small facade, so
each behaviour is written once and checked on every server x client pair.
The server's behaviour is chosen by the request path (see `async_handler`).
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from adapters import trio as ws_trio
from wsproto_core import ClientConnection, PreparedMessage, State

BACKENDS = ["blocking", "asyncio", "trio"]
TIMEOUT = 10.0
# What "/prepared-flood" saw: (bytes waiting for the peer, frames queued).
FLOOD_RESULTS: list[tuple[int, int]] = []
FLOOD_TARGET = 4 << 20
PREPARED = PreparedMessage("prepared " * 100)
# "/take": the handler takes one message per token the test puts in
# TAKE_TOKENS (and nothing otherwise), and appends it to TAKEN.
TAKE_TOKENS: queue.SimpleQueue[None] = queue.SimpleQueue()
TAKEN: list[str | bytes] = []
TAKE_POLLS = 2000  # at 10 ms each: the handler gives up after some 20 s


class AsyncioThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(timeout):
                return await make()

        return asyncio.run_coroutine_threadsafe(bounded(), self.loop).result(timeout + 5)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class TrioThread:
    def __init__(self) -> None:
        ready = threading.Event()
        self.token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None

        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                ready.set()
                await trio.sleep_forever()

        self.thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def run(self, make: Callable[[], Awaitable[Any]], timeout: float = TIMEOUT) -> Any:
        async def bounded() -> Any:
            with trio.fail_after(timeout):
                return await make()

        return trio.from_thread.run(bounded, trio_token=self.token)

    def stop(self) -> None:
        assert self.nursery is not None
        trio.from_thread.run_sync(self.nursery.cancel_scope.cancel, trio_token=self.token)
        self.thread.join(5)


# -- the server's behaviours ---------------------------------------------------


def info_of(ws: Any) -> str:
    request = ws.request
    return json.dumps(
        {
            "path": request.path,
            "query": request.query,
            "origin": request.origin,
            "subprotocol": ws.subprotocol,
            "remote": list(ws.remote_address)[:2],
            "x-test": request.headers.get("X-Test"),
            "extensions": list(ws.extensions),
        }
    )


async def async_handler(ws: Any, sleep: Callable[[float], Awaitable[None]]) -> None:
    path = ws.request.path
    if path.startswith("/close/"):
        _, _, code, reason = path.split("/", 3)
        await ws.close(int(code), reason)
    elif path == "/info":
        await ws.send(info_of(ws))
    elif path == "/stream":  # echo each message piece by piece
        while True:
            await ws.send_fragments(ws.recv_streaming())
    elif path == "/noread":
        await sleep(60)
    elif path == "/ping":
        await ws.send(str(await ws.ping()))
    elif path == "/prepared":
        for _ in range(3):
            ws.send_prepared(PREPARED)
    elif path == "/prepared-flood":  # the peer does not read: how much waits?
        flood = PreparedMessage(bytes(64 * 1024))
        waiting = sends = 0
        while waiting < FLOOD_TARGET and sends < 1000:
            waiting = ws.send_prepared(flood)
            sends += 1
            await sleep(0.001)  # let the writer run
        FLOOD_RESULTS.append((waiting, sends))
    elif path == "/fail":
        raise RuntimeError("handler bug")
    elif path == "/take":  # take a message only when the test says so
        for _ in range(TAKE_POLLS):
            if ws.state is State.CLOSED:
                return
            try:
                TAKE_TOKENS.get_nowait()
            except queue.Empty:
                await sleep(0.01)
            else:
                TAKEN.append(await ws.recv())
        return
    async for message in ws:
        await ws.send(message)


def sync_handler(ws: ws_blocking.WebSocket) -> None:
    path = ws.request.path
    if path.startswith("/close/"):
        _, _, code, reason = path.split("/", 3)
        ws.close(int(code), reason)
    elif path == "/info":
        ws.send(info_of(ws))
    elif path == "/stream":
        while True:
            ws.send_fragments(ws.recv_streaming())
    elif path == "/noread":
        ws.wait_closed(60)
    elif path == "/ping":
        ws.send(str(ws.ping(timeout=TIMEOUT)))
    elif path == "/prepared":
        for _ in range(3):
            ws.send_prepared(PREPARED)
    elif path == "/prepared-flood":
        flood = PreparedMessage(bytes(64 * 1024))
        waiting = sends = 0
        while waiting < FLOOD_TARGET and sends < 1000:
            waiting = ws.send_prepared(flood)
            sends += 1
            time.sleep(0.001)
        FLOOD_RESULTS.append((waiting, sends))
    elif path == "/fail":
        raise RuntimeError("handler bug")
    elif path == "/take":
        for _ in range(TAKE_POLLS):
            if ws.state is State.CLOSED:
                return
            try:
                TAKE_TOKENS.get_nowait()
            except queue.Empty:
                time.sleep(0.01)
            else:
                TAKEN.append(ws.recv(timeout=TIMEOUT))
        return
    for message in ws:
        ws.send(message)


@dataclass
class RunningServer:
    backend: str
    port: int
    stop: Callable[[], None]
    server: Any

    def url(self, path: str = "/echo", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@contextmanager
def running_server(backend: str, **options: Any) -> Iterator[RunningServer]:
    """A server of `backend` on a free loopback port, stopped (gracefully) after."""
    if backend == "blocking":
        server = ws_blocking.serve(sync_handler, "127.0.0.1", 0, **options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield RunningServer(backend, server.port, server.close, server)
        finally:
            server.close()
            thread.join(10)
    elif backend == "asyncio":
        loop = AsyncioThread()

        async def handler(ws: ws_asyncio.WebSocket) -> None:
            await async_handler(ws, asyncio.sleep)

        server = loop.run(lambda: ws_asyncio.serve(handler, "127.0.0.1", 0, **options))
        try:
            yield RunningServer(backend, server.port, lambda: loop.run(server.close), server)
        finally:
            loop.run(server.close, timeout=20)
            loop.stop()
    else:
        thread = TrioThread()

        async def trio_handler(ws: ws_trio.WebSocket) -> None:
            await async_handler(ws, trio.sleep)

        async def run_server(task_status: trio.TaskStatus[ws_trio.Server]) -> None:
            async with ws_trio.serve(trio_handler, "127.0.0.1", 0, **options) as server:
                task_status.started(server)
                await server.serve_forever()

        async def start() -> ws_trio.Server:
            assert thread.nursery is not None
            started: ws_trio.Server = await thread.nursery.start(run_server)
            return started

        server = thread.run(start)
        try:
            yield RunningServer(backend, server.port, lambda: thread.run(server.close), server)
        finally:
            thread.run(server.close, timeout=20)
            thread.stop()


# -- a synchronous face on every client --------------------------------------


class Client:
    """The same synchronous methods over any backend's client connection."""

    def __init__(self, ws: Any, call: Callable[[Callable[[], Any]], Any], sync: bool) -> None:
        self.ws = ws
        self._call = call
        self._sync = sync

    def _do(self, name: str, *args: Any) -> Any:
        method = getattr(self.ws, name)
        if self._sync:
            return method(*args)
        return self._call(lambda: method(*args))

    def send(self, message: str | bytes) -> None:
        self._do("send", message)

    def recv(self) -> str | bytes:
        if self._sync:
            return self.ws.recv(timeout=TIMEOUT)  # type: ignore[no-any-return]
        return self._do("recv")  # type: ignore[no-any-return]

    def ping(self) -> float:
        return self._do("ping")  # type: ignore[no-any-return]

    def send_fragments(self, pieces: list[str] | list[bytes]) -> None:
        self._do("send_fragments", pieces)

    def recv_streaming(self) -> list[str | bytes]:
        if self._sync:
            return list(self.ws.recv_streaming(timeout=TIMEOUT))

        async def collect() -> list[str | bytes]:
            return [piece async for piece in self.ws.recv_streaming()]

        return self._call(collect)  # type: ignore[no-any-return]

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._do("close", code, reason)

    def wait_closed(self) -> None:
        if self._sync:
            self.ws.wait_closed(TIMEOUT)
        else:
            self._do("wait_closed")

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol  # type: ignore[no-any-return]

    @property
    def extensions(self) -> tuple[str, ...]:
        return self.ws.extensions  # type: ignore[no-any-return]

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code  # type: ignore[no-any-return]

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason  # type: ignore[no-any-return]


@contextmanager
def client(backend: str, url: str, **options: Any) -> Iterator[Client]:
    """An open client of `backend`; closed when the block ends."""
    if backend == "blocking":
        ws = ws_blocking.connect(url, **options)
        try:
            yield Client(ws, lambda make: make(), sync=True)
        finally:
            ws.close()
    elif backend == "asyncio":
        loop = AsyncioThread()
        try:
            ws = loop.run(lambda: ws_asyncio.connect(url, **options))
            try:
                yield Client(ws, loop.run, sync=False)
            finally:
                loop.run(ws.close, timeout=20)
        finally:
            loop.stop()
    else:
        thread = TrioThread()
        opened: list[Any] = []
        done = trio.Event()

        async def hold(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with ws_trio.connect(url, **options) as ws:
                    opened.append(ws)
                    task_status.started()
                    await done.wait()
            except BaseException as error:  # hand handshake errors to the test thread
                opened.append(error)
                task_status.started()

        async def start() -> None:
            assert thread.nursery is not None
            await thread.nursery.start(hold)

        try:
            thread.run(start)
            if isinstance(opened[0], BaseException):
                raise opened[0]
            ws = opened[0]
            try:
                yield Client(ws, thread.run, sync=False)
            finally:
                thread.run(ws.close, timeout=20)
                trio.from_thread.run_sync(done.set, trio_token=thread.token)
        finally:
            thread.stop()


def open_raw(port: int, *, rcvbuf: int | None = None) -> tuple[socket.socket, ClientConnection]:
    """A peer made of a plain socket and our core (whole messages, no
    limits, no timers), past the opening handshake: for tests that decide
    byte by byte what the server gets and when it is read."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    core = ClientConnection(
        f"127.0.0.1:{port}",
        "/",
        max_message_size=None,
        ping_interval=None,
        ping_timeout=None,
        close_timeout=None,
        open_timeout=None,
    )
    sock.sendall(core.data_to_send())
    while core.state is State.CONNECTING:
        data = sock.recv(65536)
        assert data, "the server closed during the handshake"
        core.receive_data(data)
    return sock, core
