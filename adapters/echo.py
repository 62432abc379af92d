"""Echo server for conformance runs and demos.

    python -m adapters.echo --backend asyncio --host 127.0.0.1 --port 9001

Echoes text as text and binary as binary. Prints the address it listens on;
SIGINT or SIGTERM closes every connection with 1001 Going Away first.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._common import DEFAULT_MAX_MESSAGE_SIZE, ServerOptions


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m adapters.echo", description=__doc__)
    parser.add_argument("--backend", choices=["blocking", "asyncio", "trio"], default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="bytes; 0 for no limit (default: %(default)s)",
    )
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="do not accept permessage-deflate (on by default)",
    )
    return parser.parse_args(argv)


def options_of(args: argparse.Namespace) -> ServerOptions:
    options: ServerOptions = {"max_message_size": args.max_message_size or None}
    if args.no_compression:
        options["compression"] = None
    return options


def announce(host: str, port: int, backend: str) -> None:
    print(f"echo server ({backend}) listening on ws://{host}:{port}/", flush=True)


def run_blocking(args: argparse.Namespace) -> None:
    from . import blocking

    def echo(ws: blocking.WebSocket) -> None:
        for message in ws:
            ws.send(message)

    server = blocking.serve(echo, args.host, args.port, **options_of(args))

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    announce(args.host, server.port, "blocking")
    server.serve_forever()


async def run_asyncio(args: argparse.Namespace) -> None:
    from . import asyncio as ws_asyncio

    async def echo(ws: ws_asyncio.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    server = await ws_asyncio.serve(echo, args.host, args.port, **options_of(args))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    announce(args.host, server.port, "asyncio")
    await stopping.wait()
    await server.close()


async def run_trio(args: argparse.Namespace) -> None:
    import trio

    from . import trio as ws_trio

    async def echo(ws: ws_trio.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        server: ws_trio.Server = await nursery.start(
            lambda task_status: ws_trio.serve(
                echo, args.host, args.port, task_status=task_status, **options_of(args)
            )
        )
        announce(args.host, server.port, "trio")
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                await server.aclose()
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend == "blocking":
        run_blocking(args)
    elif args.backend == "asyncio":
        asyncio.run(run_asyncio(args))
    else:
        import trio

        trio.run(run_trio, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
