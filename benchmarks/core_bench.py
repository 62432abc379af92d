"""Sans-IO core, side by side with wsproto, websockets, picows and aiohttp.

    python benchmarks/core_bench.py            # full run (about two minutes)
    python benchmarks/core_bench.py --quick    # a smoke run

Three paths, each for payloads of 16 B to 1 MiB, text and binary:

- server receive: masked client frames fed in 64 KiB chunks, until every
  message has been turned into events;
- server send: unmasked frames, drained after each message as an adapter
  does (ours with `chunks_to_send()`, websockets' `data_to_send()`: both
  hand over the pieces unjoined, for a scatter-gather write);
- client send: the same, masked.

"ours" is whichever build of the core this process runs (the compiled one
when it is installed: the first line says), "ours-source" the source with
the C accelerators (the mask, the event constructor), which is what
installing with WSPROTO_CORE_PURE_PYTHON=1 builds, and "ours-pure" the source
with no C at all (WSPROTO_CORE_PURE_PYTHON=1 at run time); each of those two
runs in a worker process. picows and
aiohttp are compiled with Cython; only their receive paths are measured
(their send paths need a transport), see `picows_receive` and
`aiohttp_receive` for how each is driven.

Each cell is the median of several runs, the libraries interleaved within
each run so that machine noise hits them alike. What each library does per
message differs in ways the table cannot show, so here it is in words:
websockets' sans-IO layer does not validate or decode UTF-8 (its I/O layer
does that later), while wsproto and this core hand over a checked `str`, so
"websockets+utf8" adds the decode its own I/O layer does, for a like-for-like
column (it differs from "websockets" only on the text receive rows); and
websockets' `send_text` takes bytes, so the benchmark encodes the `str` first
as a user would.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wsproto_core
from wsproto_core import ClientConnection, ServerConnection, masking

SIZES = [16, 125, 1024, 16 * 1024, 1 << 20]
CHUNK = 64 * 1024
LIMIT = 2 << 20  # every library is given the same 2 MiB message limit


@dataclass
class Workload:
    size: int
    text: bool
    count: int

    @property
    def payload(self) -> str | bytes:
        return "x" * self.size if self.text else b"x" * self.size


Runner = Callable[[], int]  # runs once, returns how many messages it handled


# -- how each library is driven ---------------------------------------------


def ours_open_pair() -> tuple[ClientConnection, ServerConnection]:
    opts = {"max_message_size": LIMIT, "ping_interval": None, "open_timeout": None}
    client = ClientConnection("bench", "/", **opts)  # type: ignore[arg-type]
    server = ServerConnection(**opts)  # type: ignore[arg-type]
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    return client, server


def masked_stream(work: Workload) -> list[bytes]:
    """The client frames of `work`, cut in 64 KiB chunks (built once, untimed)."""
    client, _ = ours_open_pair()
    for _ in range(work.count):
        if isinstance(work.payload, str):
            client.send_text(work.payload)
        else:
            client.send_bytes(work.payload)
    data = client.data_to_send()
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def ours_receive(chunks: list[bytes]) -> Runner:
    def run() -> int:
        _, server = ours_open_pair()
        handled = 0
        for chunk in chunks:
            handled += len(server.receive_data(chunk))
        return handled

    return run


def ours_send(work: Workload, client_side: bool) -> Runner:
    def run() -> int:
        client, server = ours_open_pair()
        conn = client if client_side else server
        payload = work.payload
        if isinstance(payload, str):
            send_text = conn.send_text
            for _ in range(work.count):
                send_text(payload)
                conn.chunks_to_send()
        else:
            send_bytes = conn.send_bytes
            for _ in range(work.count):
                send_bytes(payload)
                conn.chunks_to_send()
        return work.count

    return run


def websockets_open_pair() -> tuple[object, object]:
    from websockets.client import ClientProtocol
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    client = ClientProtocol(parse_uri("ws://bench/"), max_size=LIMIT)
    server = ServerProtocol(max_size=LIMIT)
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    [request] = server.events_received()
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    return client, server


def websockets_receive(chunks: list[bytes], *, decode_text: bool = False) -> Runner:
    from websockets.frames import Opcode

    text = Opcode.TEXT

    def run() -> int:
        _, server = websockets_open_pair()
        handled = 0
        for chunk in chunks:
            server.receive_data(chunk)  # type: ignore[attr-defined]
            for frame in server.events_received():  # type: ignore[attr-defined]
                if decode_text and frame.opcode is text:
                    frame.data.decode()  # what websockets' own I/O layer does next
                handled += frame.fin
        return handled

    return run


def websockets_utf8_receive(chunks: list[bytes]) -> Runner:
    return websockets_receive(chunks, decode_text=True)


def websockets_send(work: Workload, client_side: bool) -> Runner:
    def run() -> int:
        client, server = websockets_open_pair()
        conn: object = client if client_side else server
        payload = work.payload
        if isinstance(payload, str):
            for _ in range(work.count):
                conn.send_text(payload.encode())  # type: ignore[attr-defined]
                conn.data_to_send()  # type: ignore[attr-defined]
        else:
            for _ in range(work.count):
                conn.send_binary(payload)  # type: ignore[attr-defined]
                conn.data_to_send()  # type: ignore[attr-defined]
        return work.count

    return run


def wsproto_open_pair() -> tuple[object, object]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="bench", target="/")))
    list(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    return client, server


def wsproto_receive(chunks: list[bytes]) -> Runner:
    def run() -> int:
        _, server = wsproto_open_pair()
        handled = 0
        for chunk in chunks:
            server.receive_data(chunk)  # type: ignore[attr-defined]
            for event in server.events():  # type: ignore[attr-defined]
                handled += event.message_finished
        return handled

    return run


def wsproto_send(work: Workload, client_side: bool) -> Runner:
    from wsproto.events import Message

    def run() -> int:
        client, server = wsproto_open_pair()
        send = (client if client_side else server).send  # type: ignore[attr-defined]
        payload = work.payload
        for _ in range(work.count):
            send(Message(data=payload))
        return work.count

    return run


def _handshake_request() -> bytes:
    """A client's opening handshake, for the peers driven below from raw bytes."""
    return ClientConnection("bench", "/", open_timeout=None).data_to_send()


class _NullTransport:
    """Enough of an asyncio transport for a protocol fed by hand: writes vanish."""

    def __init__(self, sock: object) -> None:
        self._sock = sock

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._sock if name == "socket" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def picows_receive(chunks: list[bytes], *, take_payload: bool = True) -> Runner:
    """picows (Cython) as its server runs it: buffered-protocol reads, one
    `on_ws_frame` per frame. picows hands out frames that borrow its read
    buffer, so the listener takes what an application keeps: the text
    decoded (and checked) as UTF-8, or the bytes. "picows-frames" takes
    nothing: its parser alone, a floor no application reaches."""
    import asyncio
    import logging
    import socket

    import picows

    text = picows.WSMsgType.TEXT
    request = _handshake_request()
    loop = asyncio.new_event_loop()
    # picows sets TCP options on its socket and may write the 101 to it
    # directly: give it a real loopback TCP connection, whose far end we drain.
    with socket.create_server(("127.0.0.1", 0)) as listening:
        ours_end = socket.create_connection(listening.getsockname())
        far_end, _ = listening.accept()
    far_end.setblocking(False)

    class Counter(picows.WSListener):
        handled = 0

        def on_ws_frame(self, transport: object, frame: picows.WSFrame) -> None:
            if not take_payload:
                pass
            elif frame.msg_type is text:
                frame.get_payload_as_utf8_text()
            else:
                frame.get_payload_as_bytes()
            self.handled += frame.fin

    def feed(protocol: Any, data: bytes) -> None:  # picows.picows.WSProtocol (no stub)
        view = memoryview(data)
        while view:
            buffer = protocol.get_buffer(-1)
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]

    async def receive() -> int:
        listener = Counter()
        protocol = picows.picows.WSProtocol(  # type: ignore[attr-defined]
            None,
            None,
            False,
            lambda request: listener,
            logging.getLogger("bench"),
            True,
            None,
            False,
            10,
            10,
            picows.WSAutoPingStrategy.PING_WHEN_IDLE,
            False,
            LIMIT,
            None,
            CHUNK,
        )
        protocol.connection_made(_NullTransport(ours_end))
        feed(protocol, request)
        for chunk in chunks:
            feed(protocol, chunk)
        while True:  # the 101 went out on the socket itself
            try:
                far_end.recv(1 << 16)
            except BlockingIOError:
                break
        return listener.handled

    def run() -> int:
        return loop.run_until_complete(receive())

    return run


def picows_frames_receive(chunks: list[bytes]) -> Runner:
    return picows_receive(chunks, take_payload=False)


def aiohttp_receive(chunks: list[bytes]) -> Runner:
    """aiohttp's WebSocket reader (compiled with Cython from its pure-Python
    source), text decoded as its `receive()` does; messages are taken off
    its queue after each read, as its reading task would."""
    import asyncio

    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

    class Protocol:  # what the queue looks at to apply back-pressure
        _reading_paused = True

    loop = asyncio.new_event_loop()

    def run() -> int:
        queue = WebSocketDataQueue(Protocol(), 1 << 30, loop=loop)  # type: ignore[arg-type]
        reader = WebSocketReader(queue, LIMIT, compress=True, decode_text=True)
        buffered = queue._buffer
        handled = 0
        for chunk in chunks:
            reader.feed_data(chunk)
            handled += len(buffered)
            buffered.clear()
        return handled

    return run


LIBRARIES = [
    "ours",
    "ours-source",
    "ours-pure",
    "websockets",
    "websockets+utf8",
    "wsproto",
    "picows",
    "picows-frames",
    "aiohttp",
]
RECEIVERS = {
    "ours": ours_receive,
    "websockets": websockets_receive,
    "websockets+utf8": websockets_utf8_receive,
    "wsproto": wsproto_receive,
    "picows": picows_receive,
    "picows-frames": picows_frames_receive,
    "aiohttp": aiohttp_receive,
}
SENDERS = {"ours": ours_send, "websockets": websockets_send, "wsproto": wsproto_send}


# -- measuring ---------------------------------------------------------------


class SourceWorker:
    """Our core's source build, in a process of its own.

    One process runs one build of the core (wsproto_core/_build.py), so the
    source builds run in children, each timing a run of the same workload
    on request: the libraries stay interleaved run by run.
    """

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **env},
            text=True,
        )
        self.build = self._ask({"build": True})["build"]

    def _ask(self, request: dict[str, object]) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the {self.name} worker died")
        result: dict[str, Any] = json.loads(answer)
        return result

    def runner(self, path: str, work: Workload) -> TimedRunner:
        request = {"path": path, "size": work.size, "text": work.text, "count": work.count}

        def run() -> tuple[int, float]:
            answer = self._ask(request)
            return answer["handled"], answer["seconds"]

        return TimedRunner(run)

    def close(self) -> None:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)
        self._process.stdout.close()


def source_copy(into: Path) -> Path:
    """The installed package as `WSPROTO_CORE_PURE_PYTHON=1` at build time
    would install it: its sources and the C accelerators, without the
    modules mypyc compiled or the stamp that selects them."""
    package = Path(wsproto_core.__file__).parent
    copy = into / "wsproto_core"
    copy.mkdir()
    for path in package.iterdir():
        source = path.suffix in (".py", ".pyi", ".typed") and path.name != "_compiled_from.py"
        if source or path.name.startswith("_speedups"):
            shutil.copy2(path, copy / path.name)
    return into


def start_workers(libs: list[str], scratch: Path) -> list[SourceWorker]:
    workers = []
    if "ours-source" in libs:
        path = source_copy(scratch)
        workers.append(SourceWorker("ours-source", {"PYTHONPATH": str(path)}))
    if "ours-pure" in libs:
        workers.append(SourceWorker("ours-pure", {"WSPROTO_CORE_PURE_PYTHON": "1"}))
    return workers


class TimedRunner:
    """A runner that times itself elsewhere: returns (handled, seconds)."""

    def __init__(self, run: Callable[[], tuple[int, float]]) -> None:
        self.run = run


def serve_as_worker() -> None:
    """The child side of `SourceWorker`: one JSON request per line."""
    import wsproto_core

    cache: dict[tuple[object, ...], Runner] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if "build" in request:
            print(json.dumps({"build": wsproto_core.BUILD}), flush=True)
            continue
        work = Workload(size=request["size"], text=request["text"], count=request["count"])
        key = (request["path"], work.size, work.text, work.count)
        if key not in cache:
            cache.clear()  # one workload at a time: the main loop goes cell by cell
            if request["path"] == "server receive":
                cache[key] = ours_receive(masked_stream(work))
            else:
                cache[key] = ours_send(work, request["path"] == "client send")
        handled, seconds = timed(cache[key])
        print(json.dumps({"handled": handled, "seconds": seconds}), flush=True)


def timed(runner: Runner) -> tuple[int, float]:
    gc.collect()
    start = time.perf_counter()
    handled = runner()
    return handled, time.perf_counter() - start


def time_once(runner: Runner | TimedRunner, expected: int) -> float:
    handled, elapsed = runner.run() if isinstance(runner, TimedRunner) else timed(runner)
    if handled != expected:
        raise RuntimeError(f"handled {handled} messages, expected {expected}")
    return elapsed


def measure(
    runners: dict[str, Runner | TimedRunner], expected: int, repeats: int
) -> dict[str, float]:
    """Median seconds per run for each library, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():  # warm-up
        time_once(runner, expected)
    for _ in range(repeats):
        for name, runner in runners.items():
            times[name].append(time_once(runner, expected))
    return {name: statistics.median(values) for name, values in times.items()}


def idle_memory(libraries: list[str], connections: int) -> dict[str, float]:
    """Bytes per open, idle server connection (tracemalloc, after the handshake)."""
    openers: dict[str, Callable[[], object]] = {
        "ours": lambda: ours_open_pair()[1],
        "websockets": lambda: websockets_open_pair()[1],
        "wsproto": lambda: wsproto_open_pair()[1],
    }
    result = {}
    for name in [lib for lib in libraries if lib in openers]:
        openers[name]()  # import and warm caches outside the measurement
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = [openers[name]() for _ in range(connections)]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        result[name] = (after - before) / len(kept)
    return result


def message_count(size: int, quick: bool) -> int:
    budget = (1 << 20) if quick else (24 << 20)
    return max(8, min(50_000 if not quick else 500, budget // size))


def print_markdown(table: list[tuple[str, str, int, dict[str, float]]], libs: list[str]) -> None:
    """The run as the README shows it: messages per second, rounded."""

    def rate(value: float | None) -> str:
        if value is None:
            return "-"
        if value >= 1e6:
            return f"{value / 1e6:.2f} M"
        return f"{value / 1e3:.0f} k" if value >= 1e3 else f"{value:.0f}"

    def size_name(size: int) -> str:
        for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if size >= scale and size % scale == 0:
                return f"{size // scale} {unit}"
        return f"{size} B"

    print("\n| path | kind | size | " + " | ".join(libs) + " |")
    print("|---|---|---|" + "---|" * len(libs))
    for path, kind, size, rates in table:
        cells = " | ".join(rate(rates.get(name)) for name in libs)
        print(f"| {path} | {kind} | {size_name(size)} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve_as_worker()
        return
    libs = [name for name in args.libs.split(",") if name]
    sizes = [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.quick else args.repeats
    scratch = tempfile.TemporaryDirectory(prefix="core_bench_")
    workers = start_workers(libs, Path(scratch.name))

    accel = "C accelerator" if masking.apply_mask is masking.apply_mask_c else "pure Python"
    print(f"Python {sys.version.split()[0]}, median of {repeats} runs")
    print(f"ours: {wsproto_core.BUILD}, masking: {accel}")
    for worker in workers:
        print(f"{worker.name}: {worker.build}, in a worker process")
    peers = [name for name in libs if name != "ours"] if "ours" in libs else []
    header = f"{'path':<15}{'kind':<7}{'size':>8}  " + "".join(f"{n:>24}" for n in libs)
    header += "".join(f"{'ours/' + n:>22}" for n in peers)
    print(header)
    table: list[tuple[str, str, int, dict[str, float]]] = []
    for path in ("server receive", "server send", "client send"):
        for text in (True, False):
            for size in sizes:
                work = Workload(size=size, text=text, count=message_count(size, args.quick))
                runners: dict[str, Runner | TimedRunner]
                if path == "server receive":
                    chunks = masked_stream(work)
                    runners = {n: RECEIVERS[n](chunks) for n in libs if n in RECEIVERS}
                else:
                    client_side = path == "client send"
                    runners = {n: SENDERS[n](work, client_side) for n in libs if n in SENDERS}
                for worker in workers:
                    runners[worker.name] = worker.runner(path, work)
                runners = {n: runners[n] for n in libs if n in runners}  # table order
                seconds = measure(runners, work.count, repeats)
                row = f"{path:<15}{'text' if text else 'binary':<7}{size:>8}  "
                for name in libs:
                    if name not in seconds:
                        row += f"{'-':>24}"
                        continue
                    rate = work.count / seconds[name]
                    row += f"{rate:>12,.0f}/s {rate * size / 1e6:>7,.0f}MB/s"
                for name in peers:
                    ratio = seconds[name] / seconds["ours"] if name in seconds else None
                    row += f"{ratio:>21.2f}x" if ratio else f"{'-':>22}"
                print(row, flush=True)
                rates = {n: work.count / seconds[n] for n in seconds}
                table.append((path, "text" if text else "binary", size, rates))
    for worker in workers:
        worker.close()
    scratch.cleanup()
    if args.markdown:
        print_markdown(table, libs)
    per_connection = idle_memory(libs, 200 if args.quick else 1000)
    sizes_text = ", ".join(f"{name} {size:,.0f} B" for name, size in per_connection.items())
    print(f"idle server connection: {sizes_text}")


if __name__ == "__main__":
    main()
