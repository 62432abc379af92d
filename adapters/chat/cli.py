"""`wschat` / `python -m adapters.chat`: start the chat server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any

from .service import ChatSettings, describe, logger


def parse_args(argv: Sequence[str] | None) -> ChatSettings:
    parser = argparse.ArgumentParser(
        prog="wschat", description="A broadcast chat over WebSocket, with its page at /."
    )
    parser.add_argument("--backend", choices=["blocking", "asyncio", "trio"], default="asyncio")
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
    parser.add_argument("--redis", metavar="URL", help="share the room through Redis, redis://…")
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
    if args.redis is not None:
        from .resp import parse_redis_url

        try:
            parse_redis_url(args.redis)
        except ValueError as error:
            parser.error(str(error))
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
    )


def run(settings: ChatSettings, started: Callable[[int], None]) -> None:
    """Serve until SIGINT or SIGTERM, then close every client with 1001."""
    # A name that no other worker, here or on another machine, has.
    settings = replace(settings, worker=f"{socket.gethostname()}:{os.getpid()}")
    if settings.backend == "asyncio":
        asyncio.run(_run_asyncio(settings, started))
    elif settings.backend == "trio":
        import trio

        from .run_trio import serve_chat as serve_trio

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                stop = trio.Event()

                async def on_signals() -> None:
                    # Keep receiving: a second Ctrl-C during the graceful
                    # shutdown must not turn into a KeyboardInterrupt.
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            stop.set()

                nursery.start_soon(on_signals)
                await serve_trio(settings, started, stop)
                nursery.cancel_scope.cancel()

        trio.run(main)
    else:
        from .run_blocking import serve_chat as serve_blocking

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        serve_blocking(settings, started, stop)


async def _run_asyncio(settings: ChatSettings, started: Callable[[int], None]) -> None:
    from .run_asyncio import serve_chat

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve_chat(settings, started, stop)
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Shut down already: another Ctrl-C must not become a traceback.
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


def _worker(settings: ChatSettings, ready: Any) -> None:
    _configure_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    run(settings, ready.put)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    _configure_logging()
    if settings.workers == 1:
        run(settings, lambda port: print(describe(settings, port), flush=True))
        return 0
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    workers = [
        context.Process(target=_worker, args=(settings, ready), name=f"wschat-worker-{i}")
        for i in range(settings.workers)
    ]
    for process in workers:
        process.start()

    def stop_workers(signum: int, frame: FrameType | None) -> None:
        for process in workers:
            if process.is_alive() and process.pid is not None:
                process.terminate()

    signal.signal(signal.SIGINT, stop_workers)
    signal.signal(signal.SIGTERM, stop_workers)
    port = ready.get()
    for _ in workers[1:]:
        ready.get()
    print(f"{describe(settings, port)} ({settings.workers} workers)", flush=True)
    for process in workers:
        process.join()
    logger.info("all workers stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
