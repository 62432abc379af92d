"""Drive one of our clients against the Autobahn|Testsuite fuzzing server.

    python tests/compliance/client.py --backend asyncio --url ws://127.0.0.1:9001 --agent NAME

Asks the fuzzing server for the number of cases, runs each one echoing
every message back until the server closes, then asks it to write reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable

from adapters import ConnectionClosed, HandshakeError

MAX_SIZE = 64 << 20  # case 9.x sends messages of up to 16 MiB


def case_urls(url: str, agent: str, count: int) -> list[str]:
    return [f"{url}/runCase?case={case}&agent={agent}" for case in range(1, count + 1)]


def run_blocking(url: str, agent: str, report: Callable[[str], None]) -> None:
    from adapters import blocking

    with blocking.connect(f"{url}/getCaseCount") as ws:
        count = json.loads(ws.recv())
    for case_url in case_urls(url, agent, count):
        report(case_url)
        try:
            with blocking.connect(case_url, max_message_size=MAX_SIZE) as ws:
                for message in ws:
                    ws.send(message)
        except (ConnectionClosed, HandshakeError, OSError):
            pass
    blocking.connect(f"{url}/updateReports?agent={agent}").close()


async def run_asyncio(url: str, agent: str, report: Callable[[str], None]) -> None:
    from adapters import asyncio as ws_asyncio

    async with ws_asyncio.connect(f"{url}/getCaseCount") as ws:
        count = json.loads(await ws.recv())
    for case_url in case_urls(url, agent, count):
        report(case_url)
        try:
            async with ws_asyncio.connect(case_url, max_message_size=MAX_SIZE) as ws:
                async for message in ws:
                    await ws.send(message)
        except (ConnectionClosed, HandshakeError, OSError):
            pass
    await (await ws_asyncio.connect(f"{url}/updateReports?agent={agent}")).close()


async def run_trio(url: str, agent: str, report: Callable[[str], None]) -> None:
    from adapters import trio as ws_trio

    async with ws_trio.connect(f"{url}/getCaseCount") as ws:
        count = json.loads(await ws.recv())
    for case_url in case_urls(url, agent, count):
        report(case_url)
        try:
            async with ws_trio.connect(case_url, max_message_size=MAX_SIZE) as ws:
                async for message in ws:
                    await ws.send(message)
        except (ConnectionClosed, HandshakeError, OSError):
            pass
    async with ws_trio.connect(f"{url}/updateReports?agent={agent}"):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["blocking", "asyncio", "trio"], required=True)
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    def report(case_url: str) -> None:
        if not args.quiet:
            print(case_url, flush=True)

    if args.backend == "blocking":
        run_blocking(args.url, args.agent, report)
    elif args.backend == "asyncio":
        asyncio.run(run_asyncio(args.url, args.agent, report))
    else:
        import trio

        trio.run(run_trio, args.url, args.agent, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
