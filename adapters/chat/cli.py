"""`wschat` / `python -m adapters.chat`: the command line, the worker
processes (`--workers`), and what the chat serves on each backend; serving
until a signal is `adapters._running`'s."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from .._forwarded import trusted_networks
from .._running import BACKENDS, Drain, serve_until_signal
from .log import logger
from .monitor import MULTIPROCESS_DIR, Monitor
from .settings import ChatSettings, server_options

if TYPE_CHECKING:
    from .. import asyncio as ws_asyncio
    from .. import blocking as ws_blocking
    from .. import trio as ws_trio


def parse_args(argv: Sequence[str] | None) -> ChatSettings:
    parser = argparse.ArgumentParser(
        prog="wschat", description="A broadcast chat over WebSocket, with its page at /."
    )
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--history", type=int, default=50, help="messages a newcomer receives (default: 50)"
    )
    parser.add_argument(
        "--origins",
        nargs="+",
        metavar="ORIGIN",
        help="allowed Origin values, such as https://chat.example (default: the page's own)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share the room through Redis: redis[s]://[user:password@]host[:port][/db]"
        " (rediss: TLS; ?ssl_ca_certs=, &ssl_certfile=, &ssl_keyfile= as files)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (needs --redis)"
    )
    parser.add_argument("--rate", type=float, default=2.0, help="messages/s per client")
    parser.add_argument("--burst", type=int, default=10, help="messages a client may send at once")
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=32 * 1024,
        help="bytes per WebSocket message (default 32 KiB: any 2,000-character text, "
        "however its JSON escapes it)",
    )
    parser.add_argument(
        "--max-connections-per-ip", type=int, default=20, help="503 past it (default: 20)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after SIGTERM, serve on this long with /healthz answering 503, so that a load "
        "balancer sends new people elsewhere first (default: 0; a second signal cuts it short)",
    )
    parser.add_argument(
        "--trusted-proxies",
        nargs="+",
        default=[],
        metavar="ADDRESS",
        help="reverse proxies (addresses or networks, such as 127.0.0.1 or 10.0.0.0/8) whose "
        "X-Forwarded-For names the client for the per-address limits",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1 and args.redis is None:
        parser.error(
            "--workers needs --redis URL: without a hub, each worker would be a separate "
            "room and people would not see each other"
        )
    if args.workers > 1 and args.port == 0:
        parser.error("--workers needs a fixed --port for the workers to share")
    if args.history < 0 or args.rate <= 0 or args.burst < 1:
        parser.error("--history must be 0 or more, --rate positive, --burst at least 1")
    if not 0 <= args.drain <= 3600:
        parser.error("--drain must be between 0 and 3600 seconds")
    try:
        trusted_networks(args.trusted_proxies)
    except ValueError as error:
        parser.error(f"--trusted-proxies: {error}")
    if args.redis is not None:
        from .resp import parse_redis_url

        try:
            parse_redis_url(args.redis).tls_context()  # (a rediss:// URL's files, checked now)
        except ValueError as error:
            parser.error(str(error))
        except OSError as error:  # (ssl.SSLError is one)
            parser.error(f"the TLS files of --redis cannot be used: {error}")
    return ChatSettings(
        backend=args.backend,
        host=args.host,
        port=args.port,
        history=args.history,
        origins=None if args.origins is None else tuple(args.origins),
        redis=args.redis,
        workers=args.workers,
        rate=args.rate,
        burst=args.burst,
        max_message_size=args.max_message_size,
        max_connections_per_ip=args.max_connections_per_ip,
        drain=args.drain,
        trusted_proxies=tuple(args.trusted_proxies),
    )


class ChatApp:
    """The chat on each backend (see `adapters._running.App`); a backend's
    module is imported only when it is chosen."""

    def __init__(self, settings: ChatSettings, monitor: Monitor) -> None:
        self.settings = settings
        self.monitor = monitor

    def on_blocking(self) -> AbstractContextManager[ws_blocking.Handler]:
        from .run_blocking import serving

        return serving(self.settings, self.monitor)

    def on_asyncio(self) -> AbstractAsyncContextManager[ws_asyncio.Handler]:
        from .run_asyncio import serving

        return serving(self.settings, self.monitor)

    def on_trio(self) -> AbstractAsyncContextManager[ws_trio.Handler]:
        from .run_trio import serving

        return serving(self.settings, self.monitor)


def run(settings: ChatSettings, started: Callable[[int], None]) -> None:
    """Serve until SIGINT or SIGTERM (after `--drain`), then close every
    client with 1001."""
    # A name that no other worker, here or on another machine, has.
    settings = replace(settings, worker=f"{socket.gethostname()}:{os.getpid()}")
    monitor = Monitor(settings.backend, settings.worker, redis=settings.redis is not None)
    options = server_options(settings)
    options["http_handler"] = monitor.http_handler  # the page, /healthz and /metrics
    options["stats"] = monitor.stats
    serve_until_signal(
        settings.backend,
        ChatApp(settings, monitor),
        settings.host,
        settings.port,
        options,
        started,
        Drain(settings.drain, monitor.begin_drain),
    )


def page_url(settings: ChatSettings, port: int) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{port}/"


def describe(settings: ChatSettings, port: int) -> str:
    if settings.redis is None:
        hub = "in-memory hub"
    else:
        from .resp import parse_redis_url

        hub = f"Redis {parse_redis_url(settings.redis)}"  # (the password hidden)
    return f"wschat ({settings.backend}, {hub}): open {page_url(settings, port)}"


def _worker(settings: ChatSettings, ready: Any) -> None:
    _configure_logging()
    # No traceback for a Ctrl-C before serving: the parent sends SIGTERM for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run(settings, ready.put)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    _configure_logging()
    if settings.workers == 1:
        run(settings, lambda port: print(describe(settings, port), flush=True))
        return 0
    with _shared_metrics_dir():
        return _run_workers(settings)


@contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """A directory for the workers' metrics (see `monitor`), made here and
    removed at the end, unless the operator named one: then what an earlier
    run left in it is removed first, or it would be added to this run's."""
    named = os.environ.get(MULTIPROCESS_DIR)
    if named:
        for left in Path(named).glob("*.db"):
            left.unlink(missing_ok=True)
        yield
        return
    with tempfile.TemporaryDirectory(prefix="wschat-metrics-") as shared:
        os.environ[MULTIPROCESS_DIR] = shared  # (the spawned workers inherit it)
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR]


READY_POLL = 0.5  # seconds between looks at the workers while they start


def _run_workers(settings: ChatSettings) -> int:
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    workers = [
        context.Process(target=_worker, args=(settings, ready), name=f"wschat-worker-{i}")
        for i in range(settings.workers)
    ]
    for process in workers:
        process.start()

    requested = False  # a signal asked us to stop

    def stop_workers() -> None:
        for process in workers:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal requested
        requested = True
        stop_workers()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ports: list[int] = []
    while len(ports) < len(workers):
        try:
            ports.append(ready.get(timeout=READY_POLL))
        except queue.Empty:
            # A worker that ended before serving (the port taken, a bad
            # metrics directory...) will never report: stop the others and
            # say so, rather than wait for ever.
            ended = next((process for process in workers if process.exitcode is not None), None)
            if ended is None:
                continue
            if not requested:
                logger.error("worker %s ended (%s) before serving", ended.pid, ended.exitcode)
            stop_workers()
            for process in workers:
                process.join()
                _forget_worker(process.pid)
            return 0 if requested else 1
    print(f"{describe(settings, ports[0])} ({settings.workers} workers)", flush=True)
    running = {process.sentinel: process for process in workers}
    crashed = False  # a worker ended on its own: the service ran short (exit 1)
    while running:
        for sentinel in multiprocessing.connection.wait(list(running)):
            process = running.pop(cast(int, sentinel))
            process.join()
            if process.exitcode != 0 or not requested:
                crashed = crashed or not requested
                logger.warning("worker %s ended with %s", process.pid, process.exitcode)
            _forget_worker(process.pid)
    logger.info("all workers stopped")
    return 1 if crashed else 0


def _forget_worker(pid: int | None) -> None:
    """A dead worker's gauges leave the metrics (its counters stay)."""
    shared = os.environ.get(MULTIPROCESS_DIR)
    if pid is None or not shared:
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(pid, shared)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main())
