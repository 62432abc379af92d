"""Serve until a signal: what `python -m adapters.echo` and `wschat` share.

`serve_until_signal(backend, app, host, port, options, started)` starts a
server on `backend` ("blocking", "asyncio" or "trio"), calls
`started(port)`, and serves until SIGINT or SIGTERM. Then it closes the
server (1001 Going Away to every client, waiting for them at most
`close_timeout`), ignores those signals from then on (a second Ctrl-C must
not turn the end of a graceful shutdown into a traceback) and returns, so
that the command exits with 0.

With a `Drain`, the first signal calls `drain.begin()` and the server goes
on serving for `drain.seconds` before it closes: time for a load balancer,
told by the application's health check (which `begin` turns to 503), to
send new people elsewhere while the listener still answers. A second
signal ends the drain at once.

What is served is an `App`: for each backend, a context manager that yields
the connection handler. Entering it may start background work (the chat's
ticker and Redis link); leaving it, once the server is closed, stops that.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from ._common import ServerOptions

if TYPE_CHECKING:
    from . import asyncio as ws_asyncio
    from . import blocking as ws_blocking
    from . import trio as ws_trio

BACKENDS = ("blocking", "asyncio", "trio")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


SIGNAL_ECHO = 1.0  # seconds in which more signals are the first one's echo


class _StopRequests:
    """Signals in: the first stops; one at least `SIGNAL_ECHO` seconds
    later ends the drain. Closer ones are the same request arriving twice:
    a worker of `wschat --workers` gets Ctrl-C from the terminal (or
    SIGTERM from systemd, which signals the whole group) and then its
    parent's SIGTERM."""

    __slots__ = ("_clock", "_first", "_hurry", "_stop")

    def __init__(
        self,
        stop: Callable[[], object],
        hurry: Callable[[], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stop, self._hurry, self._clock = stop, hurry, clock
        self._first: float | None = None

    def __call__(self) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
            self._stop()
        elif now - self._first >= SIGNAL_ECHO:
            self._hurry()


@dataclass(frozen=True, slots=True)
class Drain:
    """Serve on for `seconds` after the first signal, having called `begin`."""

    seconds: float
    begin: Callable[[], None]


class App(Protocol):
    """What a command serves, on each backend."""

    def on_blocking(self) -> AbstractContextManager[ws_blocking.Handler]: ...

    def on_asyncio(self) -> AbstractAsyncContextManager[ws_asyncio.Handler]: ...

    def on_trio(self) -> AbstractAsyncContextManager[ws_trio.Handler]: ...


def serve_until_signal(
    backend: str,
    app: App,
    host: str,
    port: int,
    options: ServerOptions,
    started: Callable[[int], None],
    drain: Drain | None = None,
) -> None:
    """See the module's docstring."""
    if backend == "blocking":
        _serve_blocking(app, host, port, options, started, drain)
    elif backend == "asyncio":
        asyncio.run(_serve_asyncio(app, host, port, options, started, drain))
    elif backend == "trio":
        import trio

        trio.run(_serve_trio, app, host, port, options, started, drain)
    else:
        raise ValueError(f"no backend {backend!r}: one of {', '.join(BACKENDS)}")


# -- stopping a server: the one place per backend --------------------------------


def _stop_blocking(server: ws_blocking.Server) -> None:
    server.close()


async def _stop_asyncio(server: ws_asyncio.Server) -> None:
    await server.close()


async def _stop_trio(server: ws_trio.Server) -> None:
    await server.close()


# -- the three backends ----------------------------------------------------------


def _ignore_signals() -> None:
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _serve_blocking(
    app: App,
    host: str,
    port: int,
    options: ServerOptions,
    started: Callable[[int], None],
    drain: Drain | None,
) -> None:
    from . import blocking as ws_blocking

    stop, hurry = threading.Event(), threading.Event()
    requests = _StopRequests(stop.set, hurry.set)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requests()

    for signum in SIGNALS:
        signal.signal(signum, on_signal)
    with app.on_blocking() as handler:
        server = ws_blocking.serve(handler, host, port, **options)
        try:
            # The accept loop in a thread: the main thread waits for the
            # signal, and stopping the server waits for that loop to end.
            threading.Thread(target=server.serve_forever, daemon=True, name="ws-accept").start()
            started(server.port)
            while not stop.wait(0.5):
                pass
            if drain is not None:
                drain.begin()
                hurry.wait(drain.seconds)
        finally:
            _stop_blocking(server)
    _ignore_signals()


async def _serve_asyncio(
    app: App,
    host: str,
    port: int,
    options: ServerOptions,
    started: Callable[[int], None],
    drain: Drain | None,
) -> None:
    from . import asyncio as ws_asyncio

    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    requests = _StopRequests(stop.set, hurry.set)
    for signum in SIGNALS:
        loop.add_signal_handler(signum, requests)
    async with app.on_asyncio() as handler:
        server = await ws_asyncio.serve(handler, host, port, **options)
        try:
            started(server.port)
            await stop.wait()
            if drain is not None:
                drain.begin()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(drain.seconds):
                        await hurry.wait()
        finally:
            await _stop_asyncio(server)
    for signum in SIGNALS:
        loop.remove_signal_handler(signum)
    _ignore_signals()


async def _serve_trio(
    app: App,
    host: str,
    port: int,
    options: ServerOptions,
    started: Callable[[int], None],
    drain: Drain | None,
) -> None:
    import trio

    from . import trio as ws_trio

    stop, hurry = trio.Event(), trio.Event()

    async def on_signals(signals: AsyncIterator[int]) -> None:
        # Keep receiving: a second Ctrl-C during the graceful shutdown
        # must not turn into a KeyboardInterrupt.
        requests = _StopRequests(stop.set, hurry.set)
        async for _ in signals:
            requests()

    with trio.open_signal_receiver(*SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(on_signals, signals)
            async with (
                app.on_trio() as handler,
                ws_trio.serve(handler, host, port, **options) as server,
            ):
                try:
                    started(server.port)
                    await stop.wait()
                    if drain is not None:
                        drain.begin()
                        with trio.move_on_after(drain.seconds):
                            await hurry.wait()
                finally:
                    await _stop_trio(server)
            nursery.cancel_scope.cancel()
    _ignore_signals()
