"""Broadcast fan-out on asyncio: ours against websockets, aiohttp and picows.

    python benchmarks/fanout_bench.py                   # N = 100 and 1,000
    python benchmarks/fanout_bench.py --receivers 100 --impls ours,websockets

One sender and N receivers, the receivers spread over several processes of
raw sockets (they count frames and nothing else, so that they cost the
server's CPU as little as possible on a small machine). For each server
(benchmarks/fanout_servers.py), in one run:

- deliveries per second: the sender writes M messages at once, and the
  clock runs until every receiver has all M of them (M x N deliveries);
- time to reach all N: the sender sends one message, and the clock runs
  until the last receiver has it; the median of several such messages,
  sent one after the other.

Every server gets the same messages (96-byte text frames) and the same
receivers, and runs alone. Ratios compare ours with each peer in the same
run.
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
    parent wait for that many text frames on every connection, and report
    when the last one arrived (time.monotonic, the same clock in every
    process)."""
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
        remaining = sum(1 for c in counters.values() if c.count < target)
        last = time.monotonic()
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
        pipe.send((remaining, last))
    for sock in socks:
        sock.close()


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(impl: str, receivers: int, messages: int, probes: int) -> tuple[float, float]:
    """(deliveries per second, median seconds for one message to reach all)."""
    port = free_port()
    server = run_server(impl, port)
    context = multiprocessing.get_context("fork")
    pipes, workers = [], []
    try:
        share = [receivers // PROCESSES + (i < receivers % PROCESSES) for i in range(PROCESSES)]
        for count in share:
            parent, child = context.Pipe()
            worker = context.Process(target=receiver, args=(port, count, child), daemon=True)
            worker.start()
            pipes.append(parent)
            workers.append(worker)
        for pipe in pipes:
            assert pipe.recv() == "ready"
        sender = handshake(port)
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        time.sleep(0.5)  # let the server register every handler
        expected = 0

        def wait_all(target: int, timeout: float) -> float:
            for pipe in pipes:
                pipe.send((target, time.monotonic() + timeout))
            results = [pipe.recv() for pipe in pipes]
            missing = sum(r[0] for r in results)
            if missing:
                raise RuntimeError(f"{impl}: {missing} receivers short of {target} messages")
            return max(r[1] for r in results)

        # Latency: one message at a time.
        latencies = []
        frame = masked_text(PAYLOAD)
        for _ in range(probes):
            start = time.monotonic()
            sender.sendall(frame)
            expected += 1
            latencies.append(wait_all(expected, 60) - start)
        # Throughput: M messages at once. The sender's own copies pile up
        # unread in its socket: drain them as we go.
        batch = frame * messages
        start = time.monotonic()
        sender.sendall(batch)
        expected += messages
        end = wait_all(expected, 120)
        rate = messages * receivers / (end - start)
        sender.close()
        return rate, statistics.median(latencies)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", default="100,1000")
    parser.add_argument("--impls", default="ours,websockets,aiohttp,picows")
    parser.add_argument("--messages", type=int, default=0, help="per throughput run (auto)")
    parser.add_argument("--probes", type=int, default=21, help="latency samples")
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell (median)")
    args = parser.parse_args()
    raise_fd_limit()
    impls = args.impls.split(",")
    print(f"Python {sys.version.split()[0]}; median of {args.rounds} rounds, impls interleaved\n")
    for receivers in (int(n) for n in args.receivers.split(",")):
        messages = args.messages or max(50, 300_000 // receivers)
        rates: dict[str, list[float]] = {impl: [] for impl in impls}
        latencies: dict[str, list[float]] = {impl: [] for impl in impls}
        for _ in range(args.rounds):
            for impl in impls:
                rate, latency = measure(impl, receivers, messages, args.probes)
                rates[impl].append(rate)
                latencies[impl].append(latency)
        print(f"N = {receivers} receivers, {messages} messages per throughput run\n")
        print("| server | deliveries/s | time to reach all N | ours vs it (deliveries/s) |")
        print("|---|---|---|---|")
        ours = statistics.median(rates["ours"]) if "ours" in rates else None
        for impl in impls:
            rate = statistics.median(rates[impl])
            latency = statistics.median(latencies[impl])
            ratio = f"{ours / rate:.2f}x" if ours is not None and impl != "ours" else ""
            print(f"| {impl} | {rate:,.0f} | {latency * 1000:.2f} ms | {ratio} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
