"""Echo server for conformance runs and demos.

    python -m adapters.echo --backend asyncio --host 127.0.0.1 --port 9001

Echoes text as text and binary as binary. Prints the address it listens on;
SIGINT or SIGTERM closes every connection with 1001 Going Away first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from ._common import DEFAULT_MAX_MESSAGE_SIZE, ServerOptions
from ._running import BACKENDS, serve_until_signal

if TYPE_CHECKING:
    from . import asyncio as ws_asyncio
    from . import blocking
    from . import trio as ws_trio


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m adapters.echo", description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
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


class Echo:
    """The echo handler of each backend (see `_running.App`)."""

    def on_blocking(self) -> AbstractContextManager[blocking.Handler]:
        def echo(ws: blocking.WebSocket) -> None:
            for message in ws:
                ws.send(message)

        return nullcontext(echo)

    def on_asyncio(self) -> AbstractAsyncContextManager[ws_asyncio.Handler]:
        async def echo(ws: ws_asyncio.WebSocket) -> None:
            async for message in ws:
                await ws.send(message)

        return nullcontext(echo)

    def on_trio(self) -> AbstractAsyncContextManager[ws_trio.Handler]:
        async def echo(ws: ws_trio.WebSocket) -> None:
            async for message in ws:
                await ws.send(message)

        return nullcontext(echo)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def started(port: int) -> None:
        print(f"echo server ({args.backend}) listening on ws://{args.host}:{port}/", flush=True)

    serve_until_signal(args.backend, Echo(), args.host, args.port, options_of(args), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
