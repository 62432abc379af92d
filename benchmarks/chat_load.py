"""The real `wschat` under the load generator, on every backend, with and
without Redis, at each N: one markdown table.

    python benchmarks/chat_load.py [--clients 100 1000] [--backends asyncio trio blocking]
                                   [--duration 10] [--rate-per-100 5] [--redis-workers 2]

Each row starts a fresh `wschat` on a free loopback port (with Redis: a
redis-server of our own and `--workers`), runs `python -m adapters.chat.load`
against it with `--json`, and stops both. The rate grows with N (R = N/100 x
`--rate-per-100` messages a second, so deliveries a second grow as N^2 / 100
x R): the point is how the chat copes as the room grows. The generator's own
CPU share is printed too: near 100%, latencies are the generator's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def chat_server(backend: str, redis_port: int | None, workers: int) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "adapters.chat", "--backend", backend, "--port", str(port)]
    if redis_port is not None:
        command += ["--redis", f"redis://127.0.0.1:{redis_port}", "--workers", str(workers)]
    # The room's own limits stay as they are: the generator gives each
    # client its own address. The connection limit per address is per
    # worker, so it does not matter here either.
    # Its log goes to a file: a pipe nobody reads would stall it once full.
    with tempfile.TemporaryFile(mode="a+") as log:  # (O_APPEND: reading moves no write)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not re.search(r"http://", line):
                raise SystemExit(f"wschat did not start: {line!r}")
            if redis_port is not None:  # the first messages must cross: every worker subscribed
                deadline = time.monotonic() + READY_TIMEOUT
                while _logged(log).count("redis connected") < workers:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the workers did not reach Redis: {_logged(log)}")
                    time.sleep(0.05)
            yield port
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _logged(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def load(port: int, clients: int, rate: float, duration: float) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "adapters.chat.load",
        "--url",
        f"ws://127.0.0.1:{port}/ws",
        "--clients",
        str(clients),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--json",
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 300)
    if done.returncode not in (0, 3):
        raise SystemExit(f"the load generator failed ({done.returncode}): {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def row(backend: str, hub: str, clients: int, rate: float, summary: dict[str, Any]) -> str:
    deliveries = summary["deliveries"]
    latency = summary["latency_s"]
    to_all = summary["to_all_receivers_s"]
    joined = summary["clients"]["joined"]
    cpu = summary["generator"]["cpu_share"]
    per_s = deliveries["per_s"] or 0.0
    return (
        f"| {backend} | {hub} | {clients} ({joined} joined) | {rate:g} | "
        f"{deliveries['received']:,} / {deliveries['expected']:,} | {per_s:,.0f} | "
        f"{ms(latency['p50'])} / {ms(latency['p99'])} | "
        f"{ms(to_all['p50'])} / {ms(to_all['p99'])} | "
        f"{'-' if cpu is None else f'{cpu:.0%}'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--backends", nargs="+", default=["asyncio", "trio", "blocking"])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate-per-100", type=float, default=5.0)
    parser.add_argument("--redis-workers", type=int, default=2)
    parser.add_argument("--hubs", nargs="+", default=["memory", "redis"])
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.duration:g} s per run")
    print()
    print(
        "| backend | hub | clients | msgs/s | delivered / expected | deliveries/s "
        "| latency p50 / p99 ms | to all p50 / p99 ms | generator CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for clients in args.clients:
        rate = clients / 100 * args.rate_per_100
        for backend in args.backends:
            for hub in args.hubs:
                with contextlib.ExitStack() as stack:
                    redis_port = None
                    label = "memory"
                    if hub == "redis":
                        redis_port = stack.enter_context(redis_server())
                        label = f"redis, {args.redis_workers} workers"
                    port = stack.enter_context(chat_server(backend, redis_port, args.redis_workers))
                    summary = load(port, clients, rate, args.duration)
                print(row(backend, label, clients, rate, summary), flush=True)


if __name__ == "__main__":
    main()
