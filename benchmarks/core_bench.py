"""Sans-IO core, side by side with wsproto and websockets, in one process.

    python benchmarks/core_bench.py            # full run (about two minutes)
    python benchmarks/core_bench.py --quick    # a smoke run

Three paths, each for payloads of 16 B to 1 MiB, text and binary:

- server receive: masked client frames fed in 64 KiB chunks, until every
  message has been turned into events;
- server send: unmasked frames, drained after each message as an adapter
  does (ours with `chunks_to_send()`, websockets' `data_to_send()`: both
  hand over the pieces unjoined, for a scatter-gather write);
- client send: the same, masked.

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
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

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


LIBRARIES = ["ours", "websockets", "websockets+utf8", "wsproto"]
RECEIVERS = {
    "ours": ours_receive,
    "websockets": websockets_receive,
    "websockets+utf8": websockets_utf8_receive,
    "wsproto": wsproto_receive,
}
SENDERS = {"ours": ours_send, "websockets": websockets_send, "wsproto": wsproto_send}


# -- measuring ---------------------------------------------------------------


def time_once(runner: Runner, expected: int) -> float:
    gc.collect()
    start = time.perf_counter()
    handled = runner()
    elapsed = time.perf_counter() - start
    if handled != expected:
        raise RuntimeError(f"handled {handled} messages, expected {expected}")
    return elapsed


def measure(runners: dict[str, Runner], expected: int, repeats: int) -> dict[str, float]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args()
    libs = [name for name in args.libs.split(",") if name]
    sizes = [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.quick else args.repeats

    accel = "C accelerator" if masking.apply_mask is masking.apply_mask_c else "pure Python"
    print(f"Python {sys.version.split()[0]}, masking: {accel}, median of {repeats} runs")
    peers = [name for name in libs if name != "ours"] if "ours" in libs else []
    header = f"{'path':<15}{'kind':<7}{'size':>8}  " + "".join(f"{n:>24}" for n in libs)
    header += "".join(f"{'ours/' + n:>22}" for n in peers)
    print(header)
    for path in ("server receive", "server send", "client send"):
        for text in (True, False):
            for size in sizes:
                work = Workload(size=size, text=text, count=message_count(size, args.quick))
                if path == "server receive":
                    chunks = masked_stream(work)
                    runners = {n: RECEIVERS[n](chunks) for n in libs}
                else:
                    client_side = path == "client send"
                    runners = {n: SENDERS[n](work, client_side) for n in libs if n in SENDERS}
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
    per_connection = idle_memory(libs, 200 if args.quick else 1000)
    sizes_text = ", ".join(f"{name} {size:,.0f} B" for name, size in per_connection.items())
    print(f"idle server connection: {sizes_text}")


if __name__ == "__main__":
    main()
