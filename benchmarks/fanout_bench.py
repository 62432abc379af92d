"""Broadcast fan-out: our three adapters against websockets, aiohttp and picows.

    python benchmarks/fanout_bench.py                   # N = 100 and 1,000
    python benchmarks/fanout_bench.py --receivers 100 --impls ours-asyncio,websockets

One sender and N receivers, the receivers spread over several processes of
raw sockets (they count frames and nothing else, so that they cost the
server's CPU as little as possible on a small machine). For each server
(benchmarks/fanout_servers.py), in one run:

- deliveries per second: the sender writes M messages at once, and the
  clock runs until every receiver has all M of them (M x N deliveries);
- time to the first and to the last subscriber: the sender sends one
  message, and the clock runs until the first receiver has it, and until
  the last one (of N) has it; p50 and p99 over every such message of every
  round (`--probes` per round, sent one after the other, each once the
  receivers are watching for it).

Every server gets the same messages (96-byte text frames) and the same
receivers, and runs alone. The ratio column compares the first server of
`--impls` (ours-asyncio by default) with each of the others, in the same
run. The receivers stamp a frame when they have read it, so the times
include their own scheduling (4 processes sharing the machine with the
server): on a small machine the last subscriber's time is partly theirs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAYLOAD = b'{"type":"message","nick":"ann","text":"' + b"x" * 44 + b'","n":000000}'
assert len(PAYLOAD) == 96
PROCESSES = 4  # receiver processes


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    assert head.endswith(b"\r\n\r\n"), "frames before we asked (unexpected)"
    return sock


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


class FrameCounter:
    """Counts the text frames on one connection (server frames: unmasked)."""

    __slots__ = ("buffer", "count")

    def __init__(self) -> None:
        self.buffer = b""
        self.count = 0

    def feed(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            if end - pos < header + length:
                break
            if buffer[pos] & 0x0F == 0x1:
                self.count += 1
            pos += header + length
        self.buffer = buffer[pos:]


def receiver(port: int, connections: int, pipe: Connection) -> None:
    """One receiver process: open `connections`, then on each order from the
    parent say "armed" and wait for that many text frames on every
    connection, and report when the first and the last connection got there
    (time.monotonic, the same clock in every process)."""
    raise_fd_limit()
    socks = [handshake(port) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    counters = {}
    for sock in socks:
        sock.setblocking(False)
        counters[sock] = FrameCounter()
        selector.register(sock, selectors.EVENT_READ)
    pipe.send("ready")
    while True:
        order = pipe.recv()
        if order is None:
            break
        target, deadline = order
        pipe.send("armed")
        remaining = sum(1 for c in counters.values() if c.count < target)
        first = last = time.monotonic()
        reached = connections - remaining
        while remaining and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                counter = counters[sock]  # type: ignore[index]
                try:
                    data = sock.recv(1 << 20)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionError("the server closed a receiver")
                before = counter.count
                counter.feed(data)
                if before < target <= counter.count:
                    remaining -= 1
                    last = time.monotonic()
                    if not reached:
                        first = last
                    reached += 1
        pipe.send((remaining, first, last))
    for sock in socks:
        sock.close()


def drain(sock: socket.socket) -> None:
    """Read and drop what the server sends the sender (its own copies of
    the broadcast), so that a server writing to it never waits for room."""
    with contextlib.suppress(OSError):
        while sock.recv(1 << 20):
            pass


def run_server(impl: str, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fanout_servers.py"), "--impl", impl, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # peers log every receiver that hangs up at the end
        text=True,
        cwd=HERE.parent,
        env={**os.environ, "PYTHONPATH": f"{HERE}:{HERE.parent}"},
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError(f"{impl} did not start")
    return process


def stop_server(server: subprocess.Popen[str]) -> None:
    """Terminate a server we started (by its PID), killing it if it lingers."""
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Result:
    """One server's run: deliveries per second, and per probe message the
    seconds until the first and until the last receiver had it."""

    def __init__(self, rate: float, first: list[float], last: list[float]) -> None:
        self.rate = rate
        self.first = first
        self.last = last


def measure(impl: str, receivers: int, messages: int, probes: int) -> Result:
    port = free_port()
    server = run_server(impl, port)
    context = multiprocessing.get_context("fork")
    pipes, workers = [], []
    sender: socket.socket | None = None
    try:
        share = [receivers // PROCESSES + (i < receivers % PROCESSES) for i in range(PROCESSES)]
        for count in share:
            if not count:
                continue
            parent, child = context.Pipe()
            worker = context.Process(target=receiver, args=(port, count, child), daemon=True)
            worker.start()
            pipes.append(parent)
            workers.append(worker)
        for pipe in pipes:
            assert pipe.recv() == "ready"
        sender = handshake(port)
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=drain, args=(sender,), daemon=True).start()
        time.sleep(0.5)  # let the server register every handler
        expected = 0

        def arm(target: int, timeout: float) -> None:
            for pipe in pipes:
                pipe.send((target, time.monotonic() + timeout))
            for pipe in pipes:
                assert pipe.recv() == "armed"

        def collect(target: int) -> tuple[float, float]:
            results = [pipe.recv() for pipe in pipes]
            missing = sum(r[0] for r in results)
            if missing:
                raise RuntimeError(f"{impl}: {missing} receivers short of {target} messages")
            return min(r[1] for r in results), max(r[2] for r in results)

        # Latency: one message at a time.
        firsts, lasts = [], []
        frame = masked_text(PAYLOAD)
        for _ in range(probes):
            expected += 1
            arm(expected, 60)
            start = time.monotonic()
            sender.sendall(frame)
            first, last = collect(expected)
            firsts.append(first - start)
            lasts.append(last - start)
        # Throughput: M messages at once.
        batch = frame * messages
        expected += messages
        arm(expected, 120)
        start = time.monotonic()
        sender.sendall(batch)
        _, end = collect(expected)
        return Result(messages * receivers / (end - start), firsts, lasts)
    finally:
        if sender is not None:
            sender.close()
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
        stop_server(server)


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", default="100,1000")
    parser.add_argument(
        "--impls",
        default="ours-asyncio,ours-blocking,ours-trio,websockets,websockets-threaded,aiohttp,picows,raw",
        help="servers of benchmarks/fanout_servers.py; the first is the ratios' base",
    )
    parser.add_argument("--messages", type=int, default=0, help="per throughput run (auto)")
    parser.add_argument("--probes", type=int, default=100, help="latency samples per round")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell")
    args = parser.parse_args()
    raise_fd_limit()
    impls = args.impls.split(",")
    base = impls[0]
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.rounds} rounds, "
        f"impls interleaved; deliveries/s: median of the rounds; times: p50/p99 of "
        f"{args.rounds} x {args.probes} messages\n"
    )
    for receivers in (int(n) for n in args.receivers.split(",")):
        messages = args.messages or max(50, 300_000 // receivers)
        results: dict[str, list[Result]] = {impl: [] for impl in impls}
        for _ in range(args.rounds):
            for impl in impls:
                results[impl].append(measure(impl, receivers, messages, args.probes))
        print(f"N = {receivers} receivers, {messages} messages per throughput run\n")
        print(
            f"| server | deliveries/s | first p50 | first p99 | last p50 | last p99 "
            f"| {base} vs it (deliveries/s) |"
        )
        print("|---|---|---|---|---|---|---|")
        rates = {impl: statistics.median(r.rate for r in results[impl]) for impl in impls}
        for impl in impls:
            firsts = [t for r in results[impl] for t in r.first]
            lasts = [t for r in results[impl] for t in r.last]
            times = [percentile(ts, q) * 1000 for ts in (firsts, lasts) for q in (0.5, 0.99)]
            ratio = f"{rates[base] / rates[impl]:.2f}x" if impl != base else ""
            cells = " | ".join(f"{t:.2f} ms" for t in times)
            print(f"| {impl} | {rates[impl]:,.0f} | {cells} | {ratio} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
