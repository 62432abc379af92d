"""End-to-end echo servers on loopback: ours against websockets, aiohttp,
picows and trio-websocket, with one common load client in its own process.

    python benchmarks/e2e_bench.py                 # every server, about 3 minutes
    python benchmarks/e2e_bench.py --impls ours-asyncio,websockets --seconds 1

For each server: pipelined echo throughput (64 messages in flight) for 16 B,
1 KiB and 64 KiB binary messages; one-at-a-time round-trip latency (p50,
p99); and the server's resident memory per idle open connection, from
/proc, with 1,000 connections. The load client is raw sockets with
pre-built masked frames, so it favours no library. Ratios compare ours with
each peer measured in the same run. "raw" is no library at all (see
`raw_server` in e2e_servers.py): the ceiling the load client and the loop
set, which no server can pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = [16, 1024, 64 * 1024]
WINDOW = 64
DEFAULT_IMPLS = [
    "ours-asyncio",
    "ours-asyncio-uvloop",
    "ours-trio",
    "ours-blocking",
    "websockets",
    "websockets-uvloop",
    "websockets-threads",
    "aiohttp",
    "aiohttp-uvloop",
    "picows",
    "picows-uvloop",
    "trio-websocket",
    "raw",
    "raw-uvloop",
]
# Which peer each of ours is judged against (the targets), then all.
HEADLINE = [
    ("ours-asyncio", "websockets"),
    ("ours-asyncio", "aiohttp"),
    ("ours-asyncio", "picows"),
    ("ours-asyncio-uvloop", "websockets-uvloop"),
    ("ours-asyncio-uvloop", "aiohttp-uvloop"),
    ("ours-asyncio-uvloop", "picows-uvloop"),
    ("ours-trio", "trio-websocket"),
    ("ours-blocking", "websockets-threads"),
]

# -- the load client (runs in its own process) ---------------------------------


def masked_frame(size: int) -> bytes:
    mask = b"\x11\x22\x33\x44"
    payload = bytes(i % 251 for i in range(size))
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if size < 126:
        head = bytes([0x82, 0x80 | size])
    elif size < 65536:
        head = bytes([0x82, 0xFE]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0xFF]) + size.to_bytes(8, "big")
    return head + mask + body


def reply_size(size: int) -> int:
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


def open_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:100])
    return sock


def pipelined(port: int, size: int, seconds: float) -> float:
    """Round trips per second with WINDOW messages in flight."""
    sock = open_connection(port)
    sock.setblocking(False)
    frame, expect = masked_frame(size), reply_size(size)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    outgoing = memoryview(b"")
    sent = done = received_bytes = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        if not outgoing and sent - done < WINDOW:
            batch = WINDOW - (sent - done)
            outgoing = memoryview(frame * batch)
            sent += batch
        # Register for writing before waiting, or a new batch waits for a
        # reply that cannot come until it is sent.
        selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if outgoing else 0))
        for _, events in selector.select(0.5):
            if events & selectors.EVENT_WRITE and outgoing:
                with contextlib.suppress(BlockingIOError):
                    outgoing = outgoing[sock.send(outgoing) :]
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionError("server closed")
                received_bytes += len(data)
                done = received_bytes // expect
    elapsed = time.perf_counter() - start
    sock.close()
    return done / elapsed


def latency(port: int, count: int) -> tuple[float, float]:
    """p50 and p99 of one-at-a-time round trips of 16 B, in microseconds."""
    sock = open_connection(port)
    frame, expect = masked_frame(16), reply_size(16)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(frame)
        got = 0
        while got < expect:
            got += len(sock.recv(expect - got))
        samples.append((time.perf_counter() - start) * 1e6)
    sock.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def hold_idle(port: int, count: int) -> None:
    """Open `count` idle connections, say so, and hold them until stdin closes."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = [open_connection(port) for _ in range(count)]
    print("held", len(held), flush=True)
    sys.stdin.read()


def load_main(args: argparse.Namespace) -> None:
    port = args.port
    if args.load == "idle":
        hold_idle(port, args.connections)
        return
    result: dict[str, object] = {}
    for size in SIZES:
        result[f"rt/s {size}"] = pipelined(port, size, args.seconds)
    p50, p99 = latency(port, args.latency_count)
    result["p50 us"], result["p99 us"] = p50, p99
    print(json.dumps(result), flush=True)


# -- the driver ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_server(impl: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "e2e_servers.py"), "--impl", impl, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # some peers log every write after a client leaves
        text=True,
        # Our servers from this tree, not from wherever the package is
        # installed: a before/after comparison runs two trees.
        cwd=HERE.parent,
        env={**os.environ, "PYTHONPATH": f"{HERE}:{HERE.parent}"},
    )
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        server.kill()
        raise RuntimeError(f"{impl} did not start")
    return server, port


def measure(impl: str, args: argparse.Namespace) -> dict[str, float]:
    server, port = start_server(impl)
    try:
        load = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                "echo",
                "--port",
                str(port),
                "--seconds",
                str(args.seconds),
                "--latency-count",
                str(args.latency_count),
            ],
            capture_output=True,
            text=True,
            timeout=args.seconds * 10 + 120,
            check=True,
        )
        result: dict[str, float] = json.loads(load.stdout)
        time.sleep(0.5)
        before = rss_kib(server.pid)
        idle = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--load",
                "idle",
                "--port",
                str(port),
                "--connections",
                str(args.connections),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert idle.stdout is not None
        assert idle.stdin is not None
        idle.stdout.readline()
        time.sleep(1.0)
        result["KiB/conn"] = (rss_kib(server.pid) - before) / args.connections
        idle.stdin.close()
        idle.wait(timeout=60)
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impls", default=",".join(DEFAULT_IMPLS))
    parser.add_argument("--seconds", type=float, default=3.0, help="per pipelined size")
    parser.add_argument("--latency-count", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--load", choices=["echo", "idle"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args)
        return 0
    impls = [name for name in args.impls.split(",") if name]
    results: dict[str, dict[str, float]] = {}
    columns = [f"rt/s {size}" for size in SIZES] + ["p50 us", "p99 us", "KiB/conn"]
    print(f"{'server':<22}" + "".join(f"{c:>13}" for c in columns), flush=True)
    for impl in impls:
        results[impl] = measure(impl, args)
        row = results[impl]
        print(f"{impl:<22}" + "".join(f"{row[c]:>13,.1f}" for c in columns), flush=True)
    print("\nratios (ours / peer; for latency and memory, peer / ours: higher is better for us)")
    for ours, peer in [(o, p) for o, p in HEADLINE if o in results and p in results]:
        a, b = results[ours], results[peer]
        parts = [f"{a[f'rt/s {s}'] / b[f'rt/s {s}']:.2f}x @{s}B" for s in SIZES]
        parts.append(f"p50 {b['p50 us'] / a['p50 us']:.2f}x")
        parts.append(f"mem {b['KiB/conn'] / a['KiB/conn']:.2f}x" if a["KiB/conn"] > 0 else "mem -")
        print(f"{ours} vs {peer}: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
