"""Write the seed corpus of every harness to fuzz/corpus/<harness>/.

Run `python fuzz/make_corpus.py` after changing a harness's input layout;
the output is deterministic (fixed mask keys, fixed zlib settings), so the
committed files only change when this script does. Each seed is the
`_common` layout: mode byte, two bytes of chunking seed, payload. A seed
that matters chunked is written twice, whole (seed 0) and chunked.

Seeds are small and meaningful rather than many: libFuzzer starts from
valid inputs of each kind (frames of each opcode, fragmented and compressed
messages, handshakes, extension headers, chat messages, RESP replies) and
mutates from there, which reaches the deep states far sooner than bytes
from nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
KEY = b"\x37\xfa\x21\x3d"
CHUNKED = 7  # a chunking seed that cuts into small pieces


def seed(mode: int, payload: bytes, chunk_seed: int = 0) -> bytes:
    return bytes([mode]) + chunk_seed.to_bytes(2, "little") + payload


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False, masked: bool = True
) -> bytes:
    """One frame as RFC 6455 section 5.2 lays it out."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([mask_bit | 126]) + len(payload).to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + len(payload).to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + KEY + bytes(c ^ KEY[i % 4] for i, c in enumerate(payload))


def deflate(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """A message compressed as RFC 7692 section 7.2.1 says: the sync flush's
    empty block removed from the end."""
    comp = compressor or zlib.compressobj(6, zlib.DEFLATED, -9, 4)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def close(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode("utf-8")


def frame_streams(masked: bool) -> Iterator[tuple[str, bytes]]:
    """Named byte streams of a peer's frames, without compression."""

    def f(opcode: int, payload: bytes = b"", **kw: bool) -> bytes:
        return frame(opcode, payload, masked=masked, **kw)

    yield "text", f(1, b"hello")
    yield "binary", f(2, bytes(range(20)))
    yield "empty_text", f(1)
    yield "utf8_text", f(1, "h\u00e9llo \u20ac \U0001f600".encode())
    yield "ping", f(9, b"are you there")
    yield "pong", f(10, b"yes")
    yield "close", f(8, close(1000, "bye"))
    yield "close_empty", f(8)
    yield "fragmented", f(1, b"frag", fin=False) + f(0, b"men", fin=False) + f(0, b"ted")
    yield "fragmented_ping", f(2, b"ab", fin=False) + f(9, b"p") + f(0, b"cd")
    yield "utf8_split", f(1, "\u20ac".encode()[:1], fin=False) + f(0, "\u20ac".encode()[1:])
    yield "medium", f(2, b"m" * 300)
    yield "several", f(1, b"one") + f(2, b"two") + f(9) + f(1, b"three") + f(8, close(1001))
    yield "bad_utf8", f(1, b"ab\xff")
    yield "bad_close_code", f(8, close(1005))
    yield "reserved_opcode", f(3, b"x")
    yield "wrong_mask", frame(1, b"x", masked=not masked)
    yield "after_close", f(8, close(1000)) + f(1, b"ignored")


def write(out: Path, harness: str, seeds: dict[str, bytes]) -> None:
    folder = out / harness
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in seeds.items():
        digest = hashlib.sha1(data).hexdigest()[:8]  # noqa: S324 - a file name
        (folder / f"{name}-{digest}").write_bytes(data)


def frame_seeds(masked: bool, modes: dict[str, int]) -> dict[str, bytes]:
    seeds = {}
    for name, stream in frame_streams(masked):
        for label, mode in modes.items():
            seeds[f"{name}_{label}"] = seed(mode, stream)
        seeds[f"{name}_chunked"] = seed(0, stream, CHUNKED)
    return seeds


def deflate_seeds(masked: bool, base_mode: int) -> dict[str, bytes]:
    """Compressed streams; base_mode carries the bits that turn deflate on."""

    def f(opcode: int, payload: bytes = b"", **kw: bool) -> bytes:
        return frame(opcode, payload, masked=masked, **kw)

    text = b"hello hello hello hello hello"
    shared = zlib.compressobj(6, zlib.DEFLATED, -9, 4)
    first, second = deflate(text, shared), deflate(b"hello again, hello", shared)
    part = deflate(text)
    streams = {
        "compressed": f(1, deflate(text), rsv1=True),
        "compressed_binary": f(2, deflate(bytes(100)), rsv1=True),
        "takeover": f(1, first, rsv1=True) + f(1, second, rsv1=True),
        "compressed_fragmented": f(1, part[:5], rsv1=True, fin=False) + f(0, part[5:]),
        "plain_in_deflate": f(1, b"not compressed") + f(9, b"p"),
        "bomb": f(2, deflate(bytes(20000)), rsv1=True),
        "compressed_empty": f(1, deflate(b""), rsv1=True),
        "rsv1_on_continuation": f(1, b"a", fin=False) + f(0, b"b", rsv1=True),
        "bad_deflate": f(1, b"\xff\xff\xff", rsv1=True),
    }
    seeds = {}
    for name, stream in streams.items():
        seeds[name] = seed(base_mode, stream)
        seeds[f"{name}_chunked"] = seed(base_mode, stream, CHUNKED)
        seeds[f"{name}_limit1000"] = seed(base_mode | 3, stream)
    return seeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the fuzz harnesses' seed corpus.")
    parser.add_argument("--out", type=Path, default=CORPUS, help="instead of fuzz/corpus")
    out = parser.parse_args(argv).out
    limits = {"nolimit": 0, "limit16": 1, "limit200": 2}
    write(out, "server_whole", frame_seeds(True, limits))
    write(out, "server_streaming", frame_seeds(True, limits))
    server_deflate = deflate_seeds(True, 0)
    server_deflate |= {f"stream_{k}": v for k, v in deflate_seeds(True, 4).items()}
    # offer 1 and 3 reset the context per message: each message compressed alone
    server_deflate |= {f"reset_{k}": v for k, v in deflate_seeds(True, 8).items()}
    server_deflate |= {f"bits9_{k}": v for k, v in deflate_seeds(True, 24).items()}
    write(out, "server_deflate", server_deflate)
    client = frame_seeds(False, {"nolimit": 0, "streaming": 4})
    client |= {f"deflate_{k}": v for k, v in deflate_seeds(False, 8).items()}
    write(out, "client_frames", client)
    write(out, "handshake", handshake_seeds())
    write(out, "extensions", extension_seeds())
    write(out, "chat_protocol", chat_seeds())
    write(out, "resp", resp_seeds())


def handshake_seeds() -> dict[str, bytes]:
    def request(*extra: str, method: str = "GET", target: str = "/chat") -> bytes:
        lines = [
            f"{method} {target} HTTP/1.1",
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            *extra,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def response(status: str, *extra: str, body: bytes = b"") -> bytes:
        return ("\r\n".join([f"HTTP/1.1 {status}", *extra]) + "\r\n\r\n").encode() + body

    accept = ("Upgrade: websocket", "Connection: Upgrade")
    key = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    deflate_offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    server = {
        "upgrade": (0, request()),
        "upgrade_deflate": (2, request(deflate_offer)),
        "upgrade_subprotocol": (8, request("Sec-WebSocket-Protocol: chat, superchat")),
        "upgrade_rejected": (12, request("Origin: http://example.com")),
        "upgrade_early_frame": (0, request() + frame(1, b"early")),
        "plain_get": (0, b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        "post_body": (
            16,
            b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        ),
        "head": (0, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"),
        "http2": (0, b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        "old_version": (0, request().replace(b"Version: 13", b"Version: 8")),
        "chunked_body": (0, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
    }
    client = {
        "switching": (1, response("101 Switching Protocols", *accept, key)),
        "switching_deflate": (
            3,
            response(
                "101 Switching Protocols",
                *accept,
                key,
                "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12",
            ),
        ),
        "switching_subprotocol": (
            1,
            response("101 Switching Protocols", *accept, key, "Sec-WebSocket-Protocol: chat"),
        ),
        "switching_frame": (
            1,
            response("101 Switching Protocols", *accept, key) + frame(1, b"hi", masked=False),
        ),
        "not_found": (1, response("404 Not Found", "Content-Length: 9", body=b"not found")),
        "redirect": (1, response("302 Found", "Location: /elsewhere", body=b"moved")),
        "wrong_accept": (
            1,
            response("101 Switching Protocols", *accept, "Sec-WebSocket-Accept: x"),
        ),
    }
    seeds = {}
    for name, (mode, payload) in (server | client).items():
        seeds[name] = seed(mode, payload)
        seeds[f"{name}_chunked"] = seed(mode, payload, CHUNKED)
    return seeds


def extension_seeds() -> dict[str, bytes]:
    headers = {
        "bare": "permessage-deflate",
        "client_bits": "permessage-deflate; client_max_window_bits",
        "both_bits": "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10",
        "fallback": "permessage-deflate; server_max_window_bits=12, permessage-deflate",
        "no_takeover": "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "quoted": 'permessage-deflate; client_max_window_bits="12"',
        "other_first": "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
        "two_fields": "foo; bar=baz\npermessage-deflate; server_max_window_bits=9",
        "repeated_param": "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
        "unknown_param": "permessage-deflate; foo",
        "empty_elements": " , ,permessage-deflate ,",
    }
    return {
        f"{name}_{mode}": seed(mode, value.encode("latin-1"))
        for name, value in headers.items()
        for mode in (0, 3)
    }


def chat_seeds() -> dict[str, bytes]:
    message = {"type": "message", "nick": "ann", "text": "hello", "time": 1763750000.0}
    presence = {
        "type": "presence",
        "count": 3,
        "joined": ["ann", "bob"],
        "joined_more": 2,
        "left": ["cyd"],
        "renamed": [["dan", "dave"]],
    }
    items = {
        "join": (0, {"type": "join", "nick": "ann"}),
        "join_unicode": (0, {"type": "join", "nick": "Zo\u00eb \u0418\u0432\u0430\u043d_2"}),
        "say": (0, {"type": "message", "text": "hello \U0001f600\nworld"}),
        "say_str": (8, {"type": "message", "text": "caf\u00e9"}),
        "say_long": (4, {"type": "message", "text": "x" * 11}),
        "unknown": (0, {"type": "dance"}),
        "envelope_message": (1, {"worker": "host:1", "event": message}),
        "envelope_presence": (1, {"worker": "host:2", "event": presence}),
        "envelope_count": (1, {"worker": "h:3", "event": {"type": "presence", "count": 0}}),
        "stored": (2, message),
        "all_three": (3, message),
    }
    seeds = {
        name: seed(mode, json.dumps(value, ensure_ascii=False).encode())
        for name, (mode, value) in items.items()
    }
    seeds["not_json"] = seed(0, b"{nope")
    seeds["deep"] = seed(0, b"[" * 200)
    seeds["nan"] = seed(2, b'{"type":"message","nick":"a","text":"b","time":NaN}')
    return seeds


def resp_seeds() -> dict[str, bytes]:
    replies = {
        "simple": b"+OK\r\n",
        "error": b"-ERR unknown command\r\n",
        "integer": b":42\r\n:-7\r\n",
        "bulk": b"$5\r\nhello\r\n",
        "null_bulk": b"$-1\r\n",
        "null_array": b"*-1\r\n",
        "empty_array": b"*0\r\n",
        "pubsub": b'*3\r\n$7\r\nmessage\r\n$4\r\nchat\r\n$11\r\n{"a":"b"}\r\n',
        "nested": b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n+x\r\n",
        "subscribe": b"*3\r\n$9\r\nsubscribe\r\n$4\r\nchat\r\n:1\r\n",
        "lrange": b"*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n",
        "too_large": b"$40\r\n" + b"z" * 40 + b"\r\n+after\r\n",
        "bad_type": b"?what\r\n",
    }
    seeds = {}
    for name, data in replies.items():
        for mode in (0, 1, 2):
            seeds[f"{name}_{mode}"] = seed(mode, data)
        seeds[f"{name}_chunked"] = seed(3, data, CHUNKED)
    return seeds


if __name__ == "__main__":
    main()
