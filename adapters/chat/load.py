"""`python -m adapters.chat.load`: put N chatters on a running wschat and
measure what it delivers.

    python -m adapters.chat.load --url ws://127.0.0.1:8000/ws \\
        --clients 100 --rate 100 --duration 10 [--plot load.svg] [--json]

N real WebSocket clients (our asyncio client, all on one event loop) connect,
join with unique nicknames, then say R messages a second in total, taking
turns, for S seconds. Every message carries this run's tag and a sequence
number; all the clients live in this one process, so one clock times each
message from its send to its arrival at every client in the room (the
sender included: the chat broadcasts to everyone, and the page shows your
own message when it comes back). Whatever else arrives (welcome, joins and
leaves, presence, other people's messages) is ignored, whatever its format.

Phases: connect and join (at most `--concurrency` handshakes at a time);
settle (until the room has been quiet for a moment: the joins' broadcasts
must not count as chat latency); chat; drain (until every delivery is in,
or none came for a second); close. A progress line goes to stderr every
second; the summary to stdout at the end (`--json`: as JSON).

The chat limits each client address (20 connections, 2 messages a second
and 1 join a second after a burst, by default), so on loopback each client
binds a source address of its own, 127.0.0.2 upwards (on Linux every
127.x.y.z is local); `--source` names other addresses or ranges.

Exit status: 0 when every client joined and every message reached everyone;
1 when the run could not happen (no client got in; the message says why);
2 for bad arguments; 3 when it ran with problems (refused clients, closes,
losses: the summary counts them); 130 when interrupted (summary printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import resource
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .. import InvalidURI
from .._common import parse_uri
from .load_report import problems, render_summary
from .load_run import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    LoadConfig,
    LoadError,
    LoadRun,
    describe_os_error,
    fatal_message,
)
from .load_stats import Sources, auto_sources, parse_sources
from .settings import ChatSettings

MAX_DELIVERIES = 200_000_000  # a run's bookkeeping stays within some 200 MB

# What wschat allows by default (cli.py, room.py): said in the warnings
# when a run would run into them.
CHAT_CONNECTIONS_PER_IP = ChatSettings().max_connections_per_ip
CHAT_RATE_PER_IP = ChatSettings().rate


# -- the command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[LoadConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.chat.load",
        description="Put N chatters on a running wschat; measure deliveries and latency.",
    )
    parser.add_argument(
        "--url", required=True, help="the chat's WebSocket, such as ws://127.0.0.1:8000/ws"
    )
    parser.add_argument("--clients", type=int, default=100, help="clients (default: 100)")
    parser.add_argument(
        "--rate", type=float, default=10.0, help="messages per second, in total (default: 10)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of chat (default: 10)"
    )
    parser.add_argument(
        "--source",
        default="auto",
        help="source addresses, such as 127.0.0.2-127.0.3.255 (comma-separated addresses and "
        "ranges); 'auto' (default): one 127.x address per client when the chat is on IPv4 "
        "loopback; 'none': the system's choice",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="handshakes at once (default: 64)"
    )
    parser.add_argument(
        "--size", type=int, default=0, help="pad each message to this many characters"
    )
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument(
        "--drain", type=float, default=10.0, help="at most this long for late deliveries"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="uvloop if installed (auto)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE", help="write an SVG plot of latency over time"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.concurrency < 1:
        parser.error(
            "--clients and --concurrency must be at least 1, --rate and --duration positive"
        )
    if args.size < 0 or args.size > 100_000 or args.drain < 0:
        parser.error("--size must be from 0 to 100000, --drain 0 or more")
    if args.rate * args.duration * args.clients > MAX_DELIVERIES:
        # (each message keeps a byte per client until everyone has it)
        parser.error(f"at most {MAX_DELIVERIES:,} deliveries (messages x clients) a run")
    try:
        uri = parse_uri(args.url)
    except InvalidURI as error:
        parser.error(str(error))
    sources: Sources | None
    if args.source == "auto":
        sources = auto_sources(uri.host, args.clients)
    elif args.source == "none":
        sources = None
    else:
        try:
            sources = parse_sources(args.source)
        except ValueError as error:
            parser.error(f"--source: {error}")
    config = LoadConfig(
        url=args.url,
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        sources=sources,
        concurrency=args.concurrency,
        drain=args.drain,
        size=args.size,
        deflate=not args.no_deflate,
        progress=not args.quiet,
    )
    return config, args


def warnings_for(config: LoadConfig) -> list[str]:
    """What the chat's default per-address limits will make of this run."""
    said = []
    per_address = (
        config.clients
        if config.sources is None
        else config.sources.most_per_address(config.clients)
    )
    if per_address > CHAT_CONNECTIONS_PER_IP:
        said.append(
            f"up to {per_address} clients share a source address; wschat admits "
            f"{CHAT_CONNECTIONS_PER_IP} per address by default (--source spreads them)"
        )
    rate = config.rate / config.clients * per_address
    if rate > CHAT_RATE_PER_IP:
        said.append(
            f"{rate:.1f} messages/s per source address; wschat allows {CHAT_RATE_PER_IP:g}/s"
            " per address by default (its --rate), so some will be refused"
        )
    return said


def raise_file_limit(needed: int) -> None:
    """Raise the soft limit on open files to what the clients need, up to
    the hard limit; LoadError if that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and soft < needed:
            raise LoadError(f"{needed} open files needed, but `ulimit -n` allows {soft}")


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for (or available, with auto), else None:
    the default loop. uvloop is optional: not a dependency."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise LoadError("--loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    config, args = parse_args(argv)
    try:
        raise_file_limit(config.clients + 64)
        factory = event_loop_factory(args.loop)
    except LoadError as error:
        print(f"load: {error}", file=err)
        return EXIT_FATAL
    for warning in warnings_for(config):
        print(f"load: warning: {warning}", file=err)
    if config.progress:
        sources = "" if config.sources is None else f" from {config.sources.describe()}"
        print(
            f"load: {config.clients} clients{sources} to {config.url}; "
            f"{config.messages} messages at {config.rate:g}/s",
            file=err,
            flush=True,
        )

    holder: list[LoadRun] = []

    async def go() -> None:
        run = LoadRun(config, progress_out=err)
        holder.append(run)
        await run.run()

    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            runner.run(go())
        except KeyboardInterrupt:  # (a second Ctrl-C, or one before the handler was set)
            print("load: interrupted", file=err)
            return EXIT_INTERRUPTED
    run = holder[0]
    if not run.joined:
        if run.interrupted:
            print("load: interrupted before any client joined", file=err)
            return EXIT_INTERRUPTED
        print(f"load: {fatal_message(run)}", file=err)
        return EXIT_FATAL
    summary = run.summary()
    if args.json:
        print(json.dumps(summary, indent=2), file=out)
    else:
        print(render_summary(summary), file=out)
    if args.plot is not None:
        try:
            args.plot.write_text(run.plot(), encoding="utf-8")
        except OSError as error:
            print(
                f"load: cannot write the plot to {args.plot}: {describe_os_error(error)}", file=err
            )
            return EXIT_FATAL
        print(f"load: plot written to {args.plot}", file=err)
    if run.interrupted:
        return EXIT_INTERRUPTED
    found = problems(summary)
    if found:
        print(f"load: problems: {'; '.join(found)}", file=err)
        if summary["closes"] and not run.alive:
            print("load: the server closed every connection", file=err)
        return EXIT_PROBLEMS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
