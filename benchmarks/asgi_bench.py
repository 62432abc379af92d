"""ASGI WebSockets under uvicorn: our protocol class (adapters.asgi) against
uvicorn's own three, serving the same raw ASGI echo application.

    python benchmarks/asgi_bench.py                  # 4 classes x 2 loops, about 2 minutes
    python benchmarks/asgi_bench.py --repeat 3       # median of 3 runs
    python benchmarks/asgi_bench.py --impls ours,websockets-sansio --loops uvloop --seconds 1

Each server is uvicorn in its own process (benchmarks/asgi_servers.py) with
`--ws` set to one of websockets (uvicorn's legacy class), websockets-sansio,
wsproto and ours, on the asyncio loop and on uvloop; httptools, no access
log, compression and keepalive pings off. The application is no framework:
it accepts and echoes every message back.

For each server, after checking that it echoes a text and a binary message
exactly: pipelined echo throughput (64 messages in flight) for 16 B and
1 KiB binary messages; one-at-a-time round-trip latency of 16 B (p50,
p99); and the server's resident memory per idle open connection, from
/proc, with 1,000 connections. The load client is benchmarks/e2e_bench.py's
(raw sockets, pre-built masked frames, its own process), so it favours no
class. With `--repeat N` every number is the median of N runs, the runs
interleaved across servers (and the order rotated) so that drift of the
machine hits all of them alike. Ratios compare ours with the best of
uvicorn's classes measured on the same loop in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from e2e_bench import hold_idle, latency, open_connection, pipelined, rss_kib

HERE = Path(__file__).resolve().parent
SIZES = [16, 1024]
UVICORN_CLASSES = ["websockets", "websockets-sansio", "wsproto"]
IMPLS = ["ours", *UVICORN_CLASSES]
LOOPS = ["asyncio", "uvloop"]
COLUMNS = [f"rt/s {size}" for size in SIZES] + ["p50 us", "p99 us", "KiB/conn"]
HEADINGS = ["rt/s 16 B", "rt/s 1 KiB", "p50 µs", "p99 µs", "KiB/conn"]
# Which way is better, per column: more round trips, less time and memory.
HIGHER_IS_BETTER = {
    "rt/s 16": True,
    "rt/s 1024": True,
    "p50 us": False,
    "p99 us": False,
    "KiB/conn": False,
}
START_TIMEOUT = 30.0  # seconds for uvicorn to listen
IDLE_TIMEOUT = 120.0  # seconds to open the idle connections

Server = tuple[str, str]  # (--ws, --loop)

# -- the load client (runs in its own process) ---------------------------------


def load_main(args: argparse.Namespace) -> None:
    if args.load == "idle":
        hold_idle(args.port, args.connections)
        return
    result: dict[str, float] = {}
    for size in SIZES:
        result[f"rt/s {size}"] = pipelined(args.port, size, args.seconds)
    result["p50 us"], result["p99 us"] = latency(args.port, args.latency_count)
    print(json.dumps(result), flush=True)


# -- the driver ----------------------------------------------------------------


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("server closed")
        data += chunk
    return data


def check_echo(port: int) -> None:
    """One text and one binary message come back exactly as they went."""
    sock = open_connection(port)
    try:
        sock.settimeout(10.0)
        mask = b"\x5a\x13\xc4\x07"
        for opcode, payload in ((0x1, "écho ✓".encode()), (0x2, bytes(range(100)))):
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)
            expected = bytes([0x80 | opcode, len(payload)]) + payload
            got = recv_exactly(sock, len(expected))
            if got != expected:
                raise RuntimeError(f"echo of opcode {opcode}: {got[:40]!r}")
    finally:
        sock.close()


def read_line(process: subprocess.Popen[str], timeout: float, what: str) -> str:
    """The next line `process` prints, waiting at most `timeout` seconds."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    if not readable:
        raise TimeoutError(f"{what}: nothing after {timeout:.0f} s")
    return process.stdout.readline()


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_server(server: Server, log: IO[bytes]) -> tuple[subprocess.Popen[str], int]:
    ws, loop = server
    process = subprocess.Popen(
        [sys.executable, str(HERE / "asgi_servers.py"), "--ws", ws, "--loop", loop],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        line = read_line(process, START_TIMEOUT, f"{ws} on {loop}").split()
        if line[:1] != ["ready"]:
            raise RuntimeError(f"{ws} on {loop} did not start")
        return process, int(line[1])
    except BaseException:
        stop(process)
        log.seek(0)
        sys.stderr.write(log.read()[-2000:].decode(errors="replace"))
        raise


def measure(server: Server, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryFile() as log:
        process, port = start_server(server, log)
        idle: subprocess.Popen[str] | None = None
        try:
            check_echo(port)
            load = subprocess.run(
                [
                    *(sys.executable, __file__, "--load", "echo", "--port", str(port)),
                    *("--seconds", str(args.seconds)),
                    *("--latency-count", str(args.latency_count)),
                ],
                capture_output=True,
                text=True,
                timeout=args.seconds * 10 + 120,
                check=True,
            )
            result: dict[str, float] = json.loads(load.stdout)
            time.sleep(args.settle)
            before = rss_kib(process.pid)
            idle = subprocess.Popen(
                [
                    *(sys.executable, __file__, "--load", "idle", "--port", str(port)),
                    *("--connections", str(args.connections)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            if not read_line(idle, IDLE_TIMEOUT, "idle connections").startswith("held"):
                raise RuntimeError(f"{server}: the idle connections were not all accepted")
            time.sleep(args.settle)
            result["KiB/conn"] = (rss_kib(process.pid) - before) / args.connections
            return result
        finally:
            if idle is not None:
                assert idle.stdin is not None
                with contextlib.suppress(OSError):
                    idle.stdin.close()  # it closes its connections and exits
                stop(idle)
            stop(process)


def label(server: Server) -> str:
    return f"{server[0]} ({server[1]})"


def cell(column: str, value: float) -> str:
    return f"{value:,.1f}" if column == "KiB/conn" else f"{value:,.0f}"


def print_table(medians: dict[Server, dict[str, float]]) -> None:
    rows = [[label(s), *(cell(c, medians[s][c]) for c in COLUMNS)] for s in medians]
    heads = ["server", *HEADINGS]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    print(line(heads))
    print("|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(line(row))


def ratios(medians: dict[Server, dict[str, float]], loop: str) -> dict[str, Any] | None:
    """Ours against the best of uvicorn's classes on `loop`, per column
    (a different class may be best in each). Each ratio is >1 when ours is
    better: ours/best for round trips, best/ours for time and memory."""
    ours = medians.get(("ours", loop))
    peers = {ws: medians[(ws, loop)] for ws in UVICORN_CLASSES if (ws, loop) in medians}
    if ours is None or not peers:
        return None
    result: dict[str, Any] = {}
    for column in ["rt/s 16", "rt/s 1024", "p50 us", "KiB/conn"]:
        higher = HIGHER_IS_BETTER[column]
        pick = max if higher else min
        best = pick(peers, key=lambda ws: peers[ws][column])
        a, b = ours[column], peers[best][column]
        num, den = (a, b) if higher else (b, a)
        ratio = num / den if den > 0 else None
        result[column] = {"ratio": ratio, "best": best, "ours": a, "theirs": b}
    result["target met"] = (
        result["rt/s 16"]["ratio"] is not None
        and result["rt/s 16"]["ratio"] >= 2.0
        and all(ours["KiB/conn"] < peer["KiB/conn"] for peer in peers.values())
    )
    return result


def print_ratios(all_ratios: dict[str, dict[str, Any]]) -> None:
    print(
        "\nratios: ours vs the best of uvicorn's own classes on the same loop "
        "(ours/best for rt/s, best/ours for p50 and memory: higher is better for us)"
    )
    names = {"rt/s 16": "rt/s 16 B", "rt/s 1024": "rt/s 1 KiB", "p50 us": "p50", "KiB/conn": "mem"}
    for loop, found in all_ratios.items():
        parts = []
        for column, name in names.items():
            ratio = found[column]["ratio"]
            shown = "-" if ratio is None else f"{ratio:.2f}x"
            parts.append(f"{name} {shown} (vs {found[column]['best']})")
        print(f"{loop}: " + ", ".join(parts))
    print(
        "\ntarget (>= 2x the best rt/s at 16 B, and less memory per idle connection "
        "than every uvicorn class):"
    )
    for loop, found in all_ratios.items():
        print(f"{loop}: {'met' if found['target met'] else 'not met'}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impls", default=",".join(IMPLS), help=f"of {','.join(IMPLS)}")
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"of {','.join(LOOPS)}")
    parser.add_argument("--seconds", type=float, default=3.0, help="per pipelined size")
    parser.add_argument("--latency-count", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=1000, help="idle connections")
    parser.add_argument("--repeat", type=int, default=1, help="runs per server (median)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before reading RSS")
    parser.add_argument("--json", type=Path, help="also write every run and the medians here")
    parser.add_argument("--load", choices=["echo", "idle"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args)
        return 0
    impls = [name for name in args.impls.split(",") if name]
    loops = [name for name in args.loops.split(",") if name]
    for name in impls:
        if name not in IMPLS:
            parser.error(f"--impls: unknown {name!r}")
    for name in loops:
        if name not in LOOPS:
            parser.error(f"--loops: unknown {name!r}")
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat: 1 to 50")
    if not 1 <= args.connections <= 10_000:
        parser.error("--connections: 1 to 10,000")
    if not 0 < args.seconds <= 600 or not 1 <= args.latency_count <= 1_000_000:
        parser.error("--seconds: up to 600; --latency-count: 1 to 1,000,000")

    import uvicorn

    servers = [(ws, loop) for loop in loops for ws in impls]
    print(
        f"Python {sys.version.split()[0]}, uvicorn {uvicorn.__version__}; "
        f"{args.seconds:g} s per size, {args.latency_count} round trips for latency, "
        f"{args.connections} idle connections; median of {args.repeat}; "
        f"load average {loadavg()}\n",
        flush=True,
    )
    runs: dict[Server, list[dict[str, float]]] = {server: [] for server in servers}
    for repeat in range(args.repeat):
        shift = repeat % len(servers)
        for server in servers[shift:] + servers[:shift]:
            runs[server].append(measure(server, args))
            print(f"  run {repeat + 1}: {label(server)} done", file=sys.stderr, flush=True)
    medians = {
        server: {c: statistics.median(run[c] for run in runs[server]) for c in COLUMNS}
        for server in servers
    }
    print_table(medians)
    all_ratios = {loop: found for loop in loops if (found := ratios(medians, loop)) is not None}
    if all_ratios:
        print_ratios(all_ratios)
    print(f"\nload average after: {loadavg()}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "runs": {label(s): r for s, r in runs.items()},
                    "medians": {label(s): m for s, m in medians.items()},
                    "ratios": all_ratios,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
