"""Memory per idle connection of the fan-out benchmark's servers.

    python benchmarks/idle_memory.py                    # K = 1,000
    python benchmarks/idle_memory.py --connections 500 --impls ours-blocking

For each server of benchmarks/fanout_servers.py (each in its own process,
alone): open a few connections to warm it up, read the process's resident
memory (VmRSS), open K more WebSocket connections that then send nothing,
wait until its RSS stops growing, and read it again. The growth over K is
the cost of one idle connection, as the kernel counts it: a thread's stack
counts for the pages it touched, not for its 8 MiB of address space, and
socket buffers (kernel memory) do not count at all.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import time

from fanout_bench import free_port, handshake, raise_fd_limit, run_server, stop_server

WARMUP = 20  # connections opened before the baseline is read
SETTLE = 1.0  # seconds without growth that mean "settled"
SETTLE_LIMIT = 20.0  # seconds to wait for that at most


def status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, from /proc."""
    values = {}
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                values[key] = int(value.split()[0])
    return values


def settled_rss(pid: int) -> tuple[int, bool]:
    """RSS once it stopped changing for SETTLE seconds (False: it never did)."""
    deadline = time.monotonic() + SETTLE_LIMIT
    rss, since = status(pid)["VmRSS"], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = status(pid)["VmRSS"]
        if now != rss:
            rss, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE:
            return rss, True
    return rss, False


def measure(impl: str, connections: int) -> tuple[int, int, int, bool]:
    """(RSS KiB before, RSS KiB with `connections` more, threads with them, settled)."""
    port = free_port()
    server = run_server(impl, port)
    socks: list[socket.socket] = []
    try:
        socks.extend(handshake(port) for _ in range(WARMUP))
        before, _ = settled_rss(server.pid)
        socks.extend(handshake(port) for _ in range(connections))
        after, settled = settled_rss(server.pid)
        threads = status(server.pid)["Threads"]
        return before, after, threads, settled
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
        stop_server(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000, help="K idle connections")
    parser.add_argument(
        "--impls",
        default="ours-blocking,websockets-threaded,ours-asyncio,ours-trio,websockets",
        help="servers of benchmarks/fanout_servers.py",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs per server (median)")
    args = parser.parse_args()
    if not 0 < args.connections <= 10_000:
        parser.error("--connections: 1 to 10,000")
    raise_fd_limit()
    k = args.connections
    print(f"Python {sys.version.split()[0]}; K = {k} idle connections, median of {args.rounds}\n")
    print("| server | RSS before | RSS with K more | KiB per connection | threads with K |")
    print("|---|---|---|---|---|")
    for impl in args.impls.split(","):
        runs = [measure(impl, k) for _ in range(args.rounds)]
        before = statistics.median(r[0] for r in runs)
        after = statistics.median(r[1] for r in runs)
        per = statistics.median((r[1] - r[0]) / k for r in runs)
        threads = statistics.median(r[2] for r in runs)
        note = "" if all(r[3] for r in runs) else " (still growing)"
        print(
            f"| {impl} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | "
            f"{per:.1f}{note} | {threads:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
