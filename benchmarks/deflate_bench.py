"""permessage-deflate, ours against websockets, in one process.

    python benchmarks/deflate_bench.py            # full run (about a minute)
    python benchmarks/deflate_bench.py --quick    # a smoke run

Both libraries run with their default compression settings (which happen
to match: 4 KiB windows each way, memLevel 5, level 6) and their sans-IO
layers, so the cost measured is the protocol's and zlib's, not a socket's.

- Compressed echo: a client compresses a message, the server inflates it,
  compresses it back, and the client inflates the reply, as in an echo over
  a connection with context takeover. Messages per second, median of runs
  with the two libraries interleaved.
- Compressed size: bytes on the wire per client message, as a share of the
  message, over the same stream.
- Memory per connection: tracemalloc (which sees zlib's allocations) over
  1,000 server connections, after the handshake and after one compressed
  message each way.

Chat-like messages are JSON objects whose text is drawn from a fixed
vocabulary with a seeded generator: varied enough that a stream of them
compresses like chat, repetitive enough that context takeover matters.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)
from websockets.frames import Frame
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from wsproto_core import ClientConnection, PerMessageDeflate, ServerConnection, TextMessage

LIMIT = 2 << 20
WORDS = [
    "hello",
    "there",
    "how",
    "is",
    "everyone",
    "doing",
    "today",
    "I",
    "just",
    "pushed",
    "the",
    "new",
    "build",
    "to",
    "staging",
    "can",
    "someone",
    "review",
    "my",
    "pull",
    "request",
    "the",
    "tests",
    "are",
    "green",
    "now",
    "lunch",
    "at",
    "noon",
    "did",
    "you",
    "see",
    "the",
    "game",
    "last",
    "night",
    "meeting",
    "moved",
    "to",
    "three",
    "websocket",
    "latency",
    "looks",
    "fine",
    "on",
    "my",
    "side",
    "compression",
    "ratio",
    "deploy",
    "rollback",
    "coffee",
    "weekend",
]


def chat_messages(size: int, count: int, seed: int = 7) -> list[str]:
    """`count` JSON chat messages of about `size` bytes each."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        base = {"type": "message", "id": i, "nick": rng.choice(["ann", "bob", "cyd"]), "text": ""}
        room = size - len(json.dumps(base))
        words: list[str] = []
        while len(" ".join(words)) < room:
            words.append(rng.choice(WORDS))
        base["text"] = " ".join(words)[: max(room, 0)]
        out.append(json.dumps(base))
    return out


def long_text(size: int, seed: int = 11) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(WORDS)
        words.append(word)
        total += len(word) + 1
    return " ".join(words)[:size]


# -- ours -----------------------------------------------------------------------


def ours_pair() -> tuple[ClientConnection, ServerConnection]:
    opts = {"max_message_size": LIMIT, "ping_interval": None, "open_timeout": None}
    client = ClientConnection("bench", "/", compression=PerMessageDeflate(), **opts)  # type: ignore[arg-type]
    server = ServerConnection(compression=PerMessageDeflate(), **opts)  # type: ignore[arg-type]
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    assert client.extensions
    assert server.extensions
    return client, server


def ours_echo(messages: list[str]) -> tuple[Callable[[], int], Callable[[], int]]:
    """Returns (run the echo once, wire bytes client to server for one pass)."""

    def run() -> int:
        client, server = ours_pair()
        for message in messages:
            client.send_text(message)
            for event in server.receive_data(client.data_to_send()):
                server.send_text(event.data)  # type: ignore[union-attr]
            [reply] = client.receive_data(server.data_to_send())
            assert type(reply) is TextMessage
        return len(messages)

    def wire() -> int:
        client, server = ours_pair()
        total = 0
        for message in messages:
            client.send_text(message)
            data = client.data_to_send()
            total += len(data)
            server.receive_data(data)
        return total

    return run, wire


# -- websockets -------------------------------------------------------------------


def ws_pair() -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol(
        parse_uri("ws://bench/"),
        extensions=enable_client_permessage_deflate(None),
        max_size=LIMIT,
    )
    server = ServerProtocol(extensions=enable_server_permessage_deflate(None), max_size=LIMIT)
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    [request] = server.events_received()
    server.send_response(server.accept(request))  # type: ignore[arg-type]
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    assert client.extensions
    assert server.extensions
    return client, server


def ws_echo(messages: list[str]) -> tuple[Callable[[], int], Callable[[], int]]:
    def run() -> int:
        client, server = ws_pair()
        for message in messages:
            client.send_text(message.encode())
            server.receive_data(b"".join(client.data_to_send()))
            for frame in server.events_received():
                # websockets' I/O layer decodes text; do it as it would.
                server.send_text(frame.data.decode().encode())  # type: ignore[union-attr]
            client.receive_data(b"".join(server.data_to_send()))
            [reply] = client.events_received()
            assert isinstance(reply, Frame)
            reply.data.decode()
        return len(messages)

    def wire() -> int:
        client, server = ws_pair()
        total = 0
        for message in messages:
            client.send_text(message.encode())
            data = b"".join(client.data_to_send())
            total += len(data)
            server.receive_data(data)
            server.events_received()
        return total

    return run, wire


# -- memory -----------------------------------------------------------------------


def per_connection(make: Callable[[], object], count: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make() for _ in range(count)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / count


def ours_server(exchange: bool) -> Callable[[], object]:
    client, _ = ours_pair()  # a template client: one request, reused
    request = ClientConnection("bench", "/", compression=PerMessageDeflate()).data_to_send()
    client.send_text("hello, a first message to start the compressor")
    first = client.data_to_send()

    def make() -> object:
        server = ServerConnection(compression=PerMessageDeflate())
        server.receive_data(request)
        server.accept()
        server.data_to_send()
        if exchange:
            server.receive_data(first)
            server.send_text("and a reply that compresses as well, to start ours")
            server.data_to_send()
        return server

    return make


def ws_server(exchange: bool) -> Callable[[], object]:
    template = ClientProtocol(
        parse_uri("ws://bench/"),
        extensions=[ClientPerMessageDeflateFactory(compress_settings={"memLevel": 5})],
    )
    template.send_request(template.connect())
    request = b"".join(template.data_to_send())
    client, _ = ws_pair()
    client.send_text(b"hello, a first message to start the compressor")
    first = b"".join(client.data_to_send())

    def make() -> object:
        server = ServerProtocol(extensions=enable_server_permessage_deflate(None))
        server.receive_data(request)
        [req] = server.events_received()
        server.send_response(server.accept(req))  # type: ignore[arg-type]
        server.data_to_send()
        if exchange:
            server.receive_data(first)
            server.events_received()
            server.send_text(b"and a reply that compresses as well, to start ours")
            server.data_to_send()
        return server

    return make


# -- the run ------------------------------------------------------------------------


def timed(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    scale = 0.05 if args.quick else 1.0
    workloads = [
        (f"chat JSON {size} B", chat_messages(size, max(20, int(2000 * scale))))
        for size in (100, 300, 1024, 4096)
    ] + [("1 MiB text", [long_text(1 << 20)] * max(2, int(20 * scale)))]
    assert ServerPerMessageDeflateFactory  # the defaults of both are described above

    print(f"Python {sys.version.split()[0]}; median of {repeats} runs, interleaved\n")
    print("| workload | ours msg/s | websockets msg/s | ratio | ours wire % | websockets wire % |")
    print("|---|---|---|---|---|---|")
    for name, messages in workloads:
        ours_run, ours_wire = ours_echo(messages)
        ws_run, ws_wire = ws_echo(messages)
        ours_rates, ws_rates = [], []
        for _ in range(repeats):
            ours_rates.append(timed(ours_run))
            ws_rates.append(timed(ws_run))
        ours_rate, ws_rate = statistics.median(ours_rates), statistics.median(ws_rates)
        raw = sum(len(m.encode()) for m in messages)
        print(
            f"| {name} | {ours_rate:,.0f} | {ws_rate:,.0f} | {ours_rate / ws_rate:.2f}x "
            f"| {100 * ours_wire() / raw:.1f} | {100 * ws_wire() / raw:.1f} |"
        )

    count = 100 if args.quick else 1000
    print(f"\nMemory per server connection (tracemalloc, {count} connections):\n")
    print("| state | ours | websockets |")
    print("|---|---|---|")
    for exchange, label in ((False, "after the handshake"), (True, "after one message each way")):
        ours = per_connection(ours_server(exchange), count)
        theirs = per_connection(ws_server(exchange), count)
        print(f"| {label} | {ours / 1024:.1f} KiB | {theirs / 1024:.1f} KiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
