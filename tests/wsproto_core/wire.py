"""Test helpers: a raw frame builder independent of the code under test,
and shortcuts to get connections into the OPEN state."""

from __future__ import annotations

from wsproto_core import ClientConnection, ConnectionOptions, ServerConnection, State
from wsproto_core.events import Event

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = b"\x37\xfa\x21\x3d"  # the mask of RFC 6455 section 5.7


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length_bytes: int | None = None,
    length: int | None = None,
) -> bytes:
    """Build one frame by hand. `length_bytes` forces 0, 2 or 8 extended
    length bytes (to make non-minimal encodings); `length` lies about the size."""
    size = len(payload) if length is None else length
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 0x10000 else 8
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length_bytes == 0:
        head = bytes([first, mask_bit | size])
    elif length_bytes == 2:
        head = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def one_byte_frames(payload: bytes, opcode: int, *, masked: bool) -> bytes:
    """`payload` as len(payload) frames of one byte each, built with slice
    assignments rather than a loop over a million frames."""
    count = len(payload)
    width = 7 if masked else 3
    wire = bytearray(width * count)
    wire[0::width] = bytes(count)  # continuation, not final
    wire[0] = opcode
    wire[width * (count - 1)] = 0x80  # the last one is final
    wire[1::width] = bytes([0x81 if masked else 0x01]) * count
    if masked:
        for i in range(4):
            wire[2 + i :: width] = MASK[i : i + 1] * count
        table = bytes(b ^ MASK[0] for b in range(256))
        wire[6::width] = payload.translate(table)
    else:
        wire[2::width] = payload
    return bytes(wire)


def upgrade_request(
    *,
    target: str = "/chat",
    method: str = "GET",
    version: str = "HTTP/1.1",
    drop: tuple[str, ...] = (),
    replace: dict[str, str] | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """The RFC 6455 section 1.2 request, with headers dropped, replaced or added."""
    fields = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Origin": "http://example.com",
        "Sec-WebSocket-Protocol": "chat, superchat",
        "Sec-WebSocket-Version": "13",
    }
    fields.update(replace or {})
    lines = [f"{method} {target} {version}"]
    lines += [f"{name}: {value}" for name, value in fields.items() if name not in drop]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def open_server(**options: object) -> ServerConnection:
    server = ServerConnection(**options)  # type: ignore[arg-type]
    server.receive_data(upgrade_request())
    server.accept()
    server.data_to_send()
    assert server.state is State.OPEN
    return server


def open_client(**options: object) -> ClientConnection:
    client = ClientConnection("server.example.com", "/chat", **options)  # type: ignore[arg-type]
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    assert client.state is State.OPEN
    return client


def open_pair(**options: object) -> tuple[ClientConnection, ServerConnection]:
    opts: ConnectionOptions = options  # type: ignore[assignment]
    client = ClientConnection("server.example.com", "/chat", **opts)
    server = ServerConnection(**opts)
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    assert client.state is State.OPEN
    assert server.state is State.OPEN
    return client, server


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]
