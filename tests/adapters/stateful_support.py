"""Both ends of real connections, for `test_stateful.py`, driven from the
test thread.

Each end (a server handler's connection, or a client) is run by an *agent*
in that end's own thread or event loop: it takes operations from the test
(`Op`) and answers each with a `concurrent.futures.Future`, so that the
test can start a send now and look at its outcome later (a send blocked by
backpressure, a ping waiting for its pong, a close waiting for the peer).

- "send" and "close" go through one sender per end, in order, as an
  application that sends from one task would;
- "ping", "recv" and "wait_closed" run concurrently with the sender;
- "close_nowait", "vanish" (the end is gone without a close frame, see
  `VANISH`) and "status" are done at once, in the end's own thread or loop;
- "finish" ends the agent (and with it the server's handler, or the
  client's connect block) once every operation it started is over.

The servers (`Servers`) choose nothing by path: `/stateful/<token>` hands
the handler's agent to the test under that token.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from adapters import asyncio as ws_asyncio
from adapters import blocking as ws_blocking
from adapters import trio as ws_trio
from adapters.blocking import housekeeper
from tests.adapters.harness import AsyncioThread, TrioThread
from wsproto_core import HandshakeRequest, ServerConnection, State

BACKENDS = ("blocking", "asyncio", "trio")
TIMEOUT = 10.0  # every wait of an agent (a recv, a close) is bounded by this
WAIT = TIMEOUT + 5.0  # the test's wait for an agent's answer
PING_WAIT = 60.0  # a blocking ping waits this long (the test bounds its own wait)
SERVER_OPTIONS: dict[str, Any] = {"ping_interval": None}  # no keepalive: see test_stateful
Message = str | bytes


@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[Any, ...] = ()
    future: Future[Any] = field(default_factory=Future)


ORDERED = frozenset({"send", "close"})
CONCURRENT = frozenset({"ping", "recv", "wait_closed"})


def settle(future: Future[Any], call: Callable[[], Any]) -> None:
    """Run `call`, putting its result or exception into `future`."""
    try:
        result = call()
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(result)


async def asettle(future: Future[Any], make: Callable[[], Awaitable[Any]]) -> None:
    try:
        result = await make()
    except BaseException as error:
        future.set_exception(error)
        if not isinstance(error, Exception):
            raise  # (a cancellation must still propagate)
    else:
        future.set_result(result)


class Handle:
    """The test thread's end of one agent."""

    def __init__(self, role: str, backend: str, post: Callable[[Op], None], ws: Any) -> None:
        self.role = role
        self.backend = backend
        self._post = post
        self.ws = ws  # (read only by the leak checks, and by nothing else)
        # Set when the handler (server) or the connect block (client) has
        # returned, with what it raised if it did.
        self.exited: Future[None] = Future()

    def __repr__(self) -> str:
        return f"{self.role} ({self.backend})"

    def submit(self, kind: str, *args: Any) -> Future[Any]:
        op = Op(kind, args)
        self._post(op)
        return op.future

    def call(self, kind: str, *args: Any, timeout: float = WAIT) -> Any:
        future = self.submit(kind, *args)
        return wait_for(future, timeout, f"{self}: {kind}{args!r:.60}")


def wait_for(future: Future[Any], timeout: float, what: str) -> Any:
    try:
        return future.result(timeout)
    except TimeoutError:
        if future.done():  # (the operation itself timed out)
            raise
        raise AssertionError(f"{what} did not finish within {timeout} s") from None


def wait_done(future: Future[Any], timeout: float, what: str) -> None:
    """Wait for `future` to finish, whatever its outcome (bounded)."""
    done, _ = wait([future], timeout)
    if not done:
        raise AssertionError(f"{what} did not finish within {timeout} s")


# -- the agents ------------------------------------------------------------------


# How an end vanishes, with no close frame:
# - "reset": as a process that dies with unread data: SO_LINGER 0, then the
#   adapter's own abort (`_abort`), which closes the socket: the peer gets RST;
# - "shutdown": the socket is shut down both ways and kept open until the
#   adapter notices (a peer whose kernel stops taking data): the survivor's
#   last write is cut only by its `close_timeout` (10 s), so it is slow.
VANISH = ("reset", "shutdown")


def _linger_zero(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _shutdown(sock: Any) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class BlockingAgent:
    """Runs one blocking connection: the caller's thread dispatches, a
    sender thread sends in order, a thread per concurrent operation."""

    def __init__(self, ws: ws_blocking.WebSocket) -> None:
        self.ws = ws
        self.inbox: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._ordered: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def handle(self, role: str) -> Handle:
        return Handle(role, "blocking", self.inbox.put, self.ws)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name="stateful-agent")
        self._threads.append(thread)
        thread.start()

    def _do(self, op: Op) -> Any:
        ws = self.ws
        match op.kind, op.args:
            case "send", (message, compress):
                if isinstance(message, list):
                    ws.send_fragments(message, compress=compress)
                else:
                    ws.send(message, compress=compress)
                return None
            case "close", (code, reason):
                ws.close(code, reason)
                return None
            case "ping", (payload,):
                return ws.ping(payload, timeout=PING_WAIT)
            case "recv", ():
                return ws.recv(timeout=TIMEOUT)
            case "wait_closed", (timeout,):
                if not ws.wait_closed(timeout):
                    raise TimeoutError("wait_closed timed out")
                return None
            case "close_nowait", (code, reason):
                ws.close_nowait(code, reason)
                return None
            case "vanish", ("reset",):
                _linger_zero(ws._sock)
                ws._abort()
                return None
            case "vanish", ("shutdown",):
                _shutdown(ws._sock)
                return None
            case "status", ():
                return ws.state.name, ws.close_code, ws.close_reason
        raise AssertionError(f"unknown operation {op}")

    def _send_in_order(self) -> None:
        while (op := self._ordered.get()) is not None:
            settle(op.future, lambda op=op: self._do(op))  # type: ignore[misc]

    def run(self) -> None:
        self._spawn(self._send_in_order)
        while (op := self.inbox.get()).kind != "finish":
            if op.kind in ORDERED:
                self._ordered.put(op)
            elif op.kind in CONCURRENT:
                self._spawn(lambda op=op: settle(op.future, lambda: self._do(op)))  # type: ignore[misc]
            else:
                settle(op.future, lambda op=op: self._do(op))  # type: ignore[misc]
        self._ordered.put(None)
        for thread in self._threads:
            thread.join(WAIT)
        stuck = [thread for thread in self._threads if thread.is_alive()]
        if stuck:
            op.future.set_exception(AssertionError(f"{len(stuck)} agent threads still running"))
        else:
            op.future.set_result(None)


class AsyncKit:
    """What an async agent needs from its library (asyncio or trio)."""

    backend: str

    def inbox(self) -> tuple[Callable[[Op], None], Callable[[Op | None], None], Any]:
        """(post from another thread, post from this one, receiver)."""
        raise NotImplementedError

    async def get(self, receiver: Any) -> Op | None:
        raise NotImplementedError

    def group(self) -> Any:
        """An async context manager: a task group (asyncio) or a nursery (trio)."""
        raise NotImplementedError

    def spawn(self, group: Any, make: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError

    def timeout(self, seconds: float) -> Any:
        raise NotImplementedError

    def raw_socket(self, ws: Any) -> Any:
        raise NotImplementedError

    async def abort(self, ws: Any) -> None:
        """The adapter's own abort: the socket is closed at once."""
        raise NotImplementedError


class AsyncioKit(AsyncKit):
    backend = "asyncio"

    def inbox(self) -> tuple[Callable[[Op], None], Callable[[Op | None], None], Any]:
        loop = asyncio.get_running_loop()
        box: asyncio.Queue[Op | None] = asyncio.Queue()

        def post(op: Op) -> None:
            loop.call_soon_threadsafe(box.put_nowait, op)

        return post, box.put_nowait, box

    async def get(self, receiver: Any) -> Op | None:
        op: Op | None = await receiver.get()
        return op

    def group(self) -> Any:
        return asyncio.TaskGroup()

    def spawn(self, group: Any, make: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await make()

        group.create_task(run())

    @asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        async with asyncio.timeout(seconds):
            yield

    def raw_socket(self, ws: Any) -> Any:
        transport = ws._transport
        return None if transport is None else transport.get_extra_info("socket")

    async def abort(self, ws: Any) -> None:
        ws._abort()


class TrioKit(AsyncKit):
    backend = "trio"

    def inbox(self) -> tuple[Callable[[Op], None], Callable[[Op | None], None], Any]:
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[Op | None](math.inf)

        def post(op: Op) -> None:
            trio.from_thread.run_sync(send.send_nowait, op, trio_token=token)

        return post, send.send_nowait, receive

    async def get(self, receiver: Any) -> Op | None:
        op: Op | None = await receiver.receive()
        return op

    def group(self) -> Any:
        return trio.open_nursery()

    def spawn(self, group: Any, make: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await make()

        group.start_soon(run)

    @asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        try:
            with trio.fail_after(seconds):
                yield
        except trio.TooSlowError:
            raise TimeoutError(f"no answer within {seconds} s") from None

    def raw_socket(self, ws: Any) -> Any:
        stream = ws._stream
        return stream.socket if isinstance(stream, trio.SocketStream) else None

    async def abort(self, ws: Any) -> None:
        await ws._abort()


class AsyncAgent:
    """Runs one asyncio or trio connection, in its loop: the dispatcher,
    a sender task that sends in order, a task per concurrent operation."""

    def __init__(self, kit: AsyncKit, ws: Any) -> None:
        self.kit = kit
        self.ws = ws
        self.post, _, self._inbox = kit.inbox()
        _, self._put_ordered, self._ordered = kit.inbox()

    def handle(self, role: str) -> Handle:
        return Handle(role, self.kit.backend, self.post, self.ws)

    async def _do(self, op: Op) -> Any:
        ws = self.ws
        match op.kind, op.args:
            case "send", (message, compress):
                if isinstance(message, list):
                    await ws.send_fragments(message, compress=compress)
                else:
                    await ws.send(message, compress=compress)
                return None
            case "close", (code, reason):
                await ws.close(code, reason)
                return None
            case "ping", (payload,):
                return await ws.ping(payload)
            case "recv", ():
                async with self.kit.timeout(TIMEOUT):
                    return await ws.recv()
            case "wait_closed", (timeout,):
                async with self.kit.timeout(timeout):
                    await ws.wait_closed()
                return None
            case "close_nowait", (code, reason):
                ws.close_nowait(code, reason)
                return None
            case "vanish", ("reset",):
                sock = self.kit.raw_socket(ws)
                if sock is not None:
                    _linger_zero(sock)
                    await self.kit.abort(ws)
                return None
            case "vanish", ("shutdown",):
                _shutdown(self.kit.raw_socket(ws))
                return None
            case "status", ():
                return ws.state.name, ws.close_code, ws.close_reason
        raise AssertionError(f"unknown operation {op}")

    async def _send_in_order(self) -> None:
        while (op := await self.kit.get(self._ordered)) is not None:
            await asettle(op.future, lambda op=op: self._do(op))  # type: ignore[misc]

    async def run(self) -> None:
        kit = self.kit
        async with kit.group() as group:
            kit.spawn(group, self._send_in_order)
            while True:
                op = await kit.get(self._inbox)
                assert op is not None
                if op.kind == "finish":
                    break
                if op.kind in ORDERED:
                    self._put_ordered(op)
                elif op.kind in CONCURRENT:
                    kit.spawn(group, lambda op=op: asettle(op.future, lambda: self._do(op)))  # type: ignore[misc]
                else:
                    await asettle(op.future, lambda op=op: self._do(op))  # type: ignore[misc]
            self._put_ordered(None)
        op.future.set_result(None)


@contextlib.contextmanager
def exiting(handle: Handle) -> Iterator[None]:
    """Resolve `handle.exited` as the block ends, with what it raised."""
    try:
        yield
    except BaseException as error:
        handle.exited.set_exception(error)
        raise
    else:
        handle.exited.set_result(None)


# -- servers and clients ---------------------------------------------------------


class Registry:
    """Server agents' handles, by the token in the request path."""

    def __init__(self) -> None:
        self._handles: dict[str, Handle] = {}
        self._changed = threading.Condition()

    def publish(self, token: str, handle: Handle) -> None:
        with self._changed:
            self._handles[token] = handle
            self._changed.notify_all()

    def take(self, token: str, timeout: float = WAIT) -> Handle:
        with self._changed:
            if not self._changed.wait_for(lambda: token in self._handles, timeout):
                raise AssertionError(f"no server connection for {token} within {timeout} s")
            return self._handles.pop(token)


REGISTRY = Registry()
_tokens = itertools.count()


def _token_of(path: str) -> str | None:
    prefix = "/stateful/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def blocking_handler(ws: ws_blocking.WebSocket) -> None:
    token = _token_of(ws.request.path)
    if token is None:
        return
    agent = BlockingAgent(ws)
    handle = agent.handle("server")
    REGISTRY.publish(token, handle)
    with exiting(handle):
        agent.run()


async def _async_handler(kit: AsyncKit, ws: Any) -> None:
    token = _token_of(ws.request.path)
    if token is None:
        return
    agent = AsyncAgent(kit, ws)
    handle = agent.handle("server")
    REGISTRY.publish(token, handle)
    with exiting(handle):
        await agent.run()


async def asyncio_handler(ws: ws_asyncio.WebSocket) -> None:
    await _async_handler(AsyncioKit(), ws)


async def trio_handler(ws: ws_trio.WebSocket) -> None:
    await _async_handler(TrioKit(), ws)


@dataclass
class Servers:
    """A server of each backend, and a loop (or nothing, for blocking) on
    which each backend's clients run; all on loopback."""

    asyncio_server_loop: AsyncioThread
    trio_server_thread: TrioThread
    asyncio_client_loop: AsyncioThread
    trio_client_thread: TrioThread
    servers: dict[str, Any]
    stops: list[Callable[[], None]]

    def port(self, backend: str) -> int:
        return int(self.servers[backend].port)

    def connections(self, backend: str) -> int:
        """Open connections the server of `backend` holds (read on its loop)."""
        server = self.servers[backend]
        if backend == "asyncio":
            count = self.asyncio_server_loop.run(
                lambda: _count(server.connections, server.handler_tasks)
            )
            return int(count)
        if backend == "trio":
            return int(
                trio.from_thread.run_sync(
                    len, server.connections, trio_token=self.trio_server_thread.token
                )
            )
        return len(server.connections)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


async def _count(*collections: Any) -> int:
    return sum(map(len, collections))


def start_servers() -> Servers:
    housekeeper.current()  # the blocking backend's one per process: made before any fd count
    stops: list[Callable[[], None]] = []
    servers: dict[str, Any] = {}

    blocking = ws_blocking.serve(blocking_handler, "127.0.0.1", 0, **SERVER_OPTIONS)
    accepting = threading.Thread(target=blocking.serve_forever, daemon=True, name="stateful-accept")
    accepting.start()
    servers["blocking"] = blocking

    def stop_blocking() -> None:
        blocking.close()
        accepting.join(WAIT)

    stops.append(stop_blocking)

    asyncio_loop = AsyncioThread()
    asyncio_server = asyncio_loop.run(
        lambda: ws_asyncio.serve(asyncio_handler, "127.0.0.1", 0, **SERVER_OPTIONS)
    )
    servers["asyncio"] = asyncio_server

    def stop_asyncio() -> None:
        asyncio_loop.run(asyncio_server.close, timeout=20)
        asyncio_loop.stop()

    stops.append(stop_asyncio)

    trio_thread = TrioThread()

    async def run_trio_server(task_status: trio.TaskStatus[ws_trio.Server]) -> None:
        async with ws_trio.serve(trio_handler, "127.0.0.1", 0, **SERVER_OPTIONS) as server:
            task_status.started(server)
            await server.serve_forever()

    async def start_trio() -> ws_trio.Server:
        assert trio_thread.nursery is not None
        started: ws_trio.Server = await trio_thread.nursery.start(run_trio_server)
        return started

    trio_server = trio_thread.run(start_trio)
    servers["trio"] = trio_server

    def stop_trio() -> None:
        trio_thread.run(trio_server.close, timeout=20)
        trio_thread.stop()

    stops.append(stop_trio)

    asyncio_clients = AsyncioThread()
    stops.append(asyncio_clients.stop)
    trio_clients = TrioThread()
    stops.append(trio_clients.stop)
    return Servers(asyncio_loop, trio_thread, asyncio_clients, trio_clients, servers, stops)


def open_pair(
    servers: Servers, server_backend: str, client_backend: str, **client_options: Any
) -> tuple[Handle, Handle]:
    """Connect a client of `client_backend` to the server of
    `server_backend`; returns the (server, client) agents' handles."""
    token = f"{os.getpid()}-{next(_tokens)}"
    url = f"ws://127.0.0.1:{servers.port(server_backend)}/stateful/{token}"
    options = {"ping_interval": None, **client_options}
    opened: Future[Handle] = Future()
    if client_backend == "blocking":

        def run_client() -> None:
            try:
                ws = ws_blocking.connect(url, **options)
            except BaseException as error:
                opened.set_exception(error)
                return
            agent = BlockingAgent(ws)
            handle = agent.handle("client")
            opened.set_result(handle)
            with exiting(handle):
                try:
                    agent.run()
                finally:
                    ws.close()

        threading.Thread(target=run_client, daemon=True, name="stateful-client").start()
    elif client_backend == "asyncio":

        async def run_asyncio_client() -> None:
            try:
                ws = await ws_asyncio.connect(url, **options)
            except BaseException as error:
                opened.set_exception(error)
                return
            agent = AsyncAgent(AsyncioKit(), ws)
            handle = agent.handle("client")
            opened.set_result(handle)
            with exiting(handle):
                try:
                    await agent.run()
                finally:
                    await ws.close()

        asyncio.run_coroutine_threadsafe(run_asyncio_client(), servers.asyncio_client_loop.loop)
    else:
        thread = servers.trio_client_thread

        async def run_trio_client() -> None:
            handle: Handle | None = None
            try:
                async with ws_trio.connect(url, **options) as ws:
                    agent = AsyncAgent(TrioKit(), ws)
                    handle = agent.handle("client")
                    opened.set_result(handle)
                    await agent.run()
            except BaseException as error:
                if handle is None:
                    opened.set_exception(error)
                else:
                    handle.exited.set_exception(error)
                if not isinstance(error, Exception):
                    raise
            else:
                assert handle is not None
                handle.exited.set_result(None)

        assert thread.nursery is not None
        trio.from_thread.run_sync(
            thread.nursery.start_soon, run_trio_client, trio_token=thread.token
        )
    client = wait_for(opened, WAIT, f"connecting a {client_backend} client")
    server = REGISTRY.take(token)
    return server, client


# -- what is running ------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What runs in the process: threads, the tasks of every loop, descriptors."""

    threads: frozenset[threading.Thread]
    tasks: frozenset[Any]
    fds: frozenset[tuple[int, str]]

    def new_since(self, before: Snapshot) -> list[str]:
        lines = [f"thread {t.name}" for t in self.threads - before.threads if t.is_alive()]
        lines += [f"task {_task_name(t)}" for t in self.tasks - before.tasks]
        lines += [f"descriptor {fd} -> {target}" for fd, target in sorted(self.fds - before.fds)]
        return lines


# Threads started on first use and kept for the process: not a connection's.
PERSISTENT_THREADS = ("ws-housekeeper", "asyncio_", "Trio thread", "ThreadPoolExecutor")


def _task_name(task: Any) -> str:
    if isinstance(task, asyncio.Task):
        return f"{task.get_name()} {task.get_coro()!r:.80}"
    return str(task.name)


async def _asyncio_tasks() -> frozenset[asyncio.Task[Any]]:
    return frozenset(task for task in asyncio.all_tasks() if task is not asyncio.current_task())


def _trio_tasks() -> frozenset[trio.lowlevel.Task]:
    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return frozenset(walk(root))


def _fds() -> frozenset[tuple[int, str]]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own descriptor, gone)
            found.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
    return frozenset(found)


def snapshot(servers: Servers) -> Snapshot:
    threads = frozenset(
        thread for thread in threading.enumerate() if not thread.name.startswith(PERSISTENT_THREADS)
    )
    tasks: set[Any] = set()
    for loop in (servers.asyncio_server_loop, servers.asyncio_client_loop):
        tasks |= loop.run(_asyncio_tasks)
    for thread in (servers.trio_server_thread, servers.trio_client_thread):
        tasks |= trio.from_thread.run_sync(_trio_tasks, trio_token=thread.token)
    return Snapshot(threads, frozenset(tasks), _fds())


def wait_until_quiet(servers: Servers, before: Snapshot, timeout: float = WAIT) -> None:
    """Wait (bounded) until nothing started since `before` runs any more:
    no new thread, task or descriptor, and no connection on any server."""
    deadline = time.monotonic() + timeout
    while True:
        left = snapshot(servers).new_since(before)
        left += [
            f"{backend} server: {count} connections or handler tasks"
            for backend in BACKENDS
            if (count := servers.connections(backend))
        ]
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still running {timeout} s after the end: {left}")
        time.sleep(0.01)


@contextlib.contextmanager
def servers_running() -> Iterator[Servers]:
    servers = start_servers()
    try:
        yield servers
    finally:
        servers.stop()


# -- a scripted server, for the regression found by the state machine -----------


@contextlib.contextmanager
def server_closing_mid_message() -> Iterator[tuple[int, threading.Event]]:
    """A one-connection server made of a socket and our core: after the
    handshake it writes, in one write, the first fragment of a text message
    it never finishes and a close frame (1000, "bye"); it closes TCP as soon
    as the client's echo arrives, and sets the event. Yields (port, event)."""
    listener = socket.create_server(("127.0.0.1", 0))
    echoed = threading.Event()

    def serve() -> None:
        sock, _ = listener.accept()
        with sock:
            sock.settimeout(TIMEOUT)
            core = ServerConnection()
            while core.state is State.CONNECTING:
                data = sock.recv(65536)
                if not data:
                    return
                for event in core.receive_data(data):
                    if isinstance(event, HandshakeRequest):
                        core.accept()
            core.send_text("part", final=False)
            core.close(1000, "bye")
            sock.sendall(core.data_to_send())  # the handshake's answer, fragment, close
            while core.state is not State.CLOSED and (data := sock.recv(65536)):
                core.receive_data(data)
            if core.state is State.CLOSED:
                echoed.set()
            # leaving the block closes the socket: the server's TCP close

    thread = threading.Thread(target=serve, daemon=True, name="stateful-scripted")
    thread.start()
    try:
        yield listener.getsockname()[1], echoed
    finally:
        listener.close()
        thread.join(WAIT)
