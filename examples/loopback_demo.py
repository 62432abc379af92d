"""Drive a client and a server core by hand, with no sockets at all.

    python examples/loopback_demo.py

Each side's `data_to_send()` is fed straight into the other's
`receive_data()`: the same loop an adapter runs over a socket. The `match`
ends in `assert_never`, so mypy proves every event type is handled.
"""

from __future__ import annotations

from typing import assert_never

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    ClientConnection,
    CloseReceived,
    Connection,
    ConnectionFailed,
    Event,
    HandshakeAccepted,
    HandshakeFailed,
    HandshakeRejected,
    HandshakeRequest,
    HttpRequest,
    Ping,
    Pong,
    ServerConnection,
    TextFragment,
    TextMessage,
)


def describe(event: Event) -> str:
    match event:
        case HandshakeRequest(path=path, subprotocols=offered):
            return f"upgrade request for {path}, subprotocols offered: {list(offered)}"
        case HttpRequest(method=method, path=path):
            return f"plain HTTP {method} {path}"
        case HandshakeAccepted(subprotocol=subprotocol):
            return f"handshake accepted, subprotocol {subprotocol!r}"
        case HandshakeRejected(status=status, body=body):
            return f"handshake rejected with {status}: {body!r}"
        case HandshakeFailed(status=status, reason=reason):
            return f"handshake failed ({status}): {reason}"
        case TextMessage(data=text):
            return f"text message {text!r}"
        case BytesMessage(data=data):
            return f"binary message of {len(data)} bytes"
        case TextFragment(data=text, final=final):
            return f"text fragment {text!r} (final={final})"
        case BytesFragment(data=data, final=final):
            return f"binary fragment of {len(data)} bytes (final={final})"
        case Ping(payload=payload):
            return f"ping {payload!r} (the pong is already queued)"
        case Pong(payload=payload):
            return f"pong {payload!r}"
        case CloseReceived(code=code, reason=reason):
            return f"close frame {code} {reason!r}"
        case ConnectionFailed(code=code, reason=reason):
            return f"connection failed with {code}: {reason}"
        case _:
            assert_never(event)


def pump(sender: Connection, receiver: Connection, name: str) -> list[Event]:
    """Move everything `sender` queued to `receiver`, and print what it saw."""
    data = sender.data_to_send()
    events = receiver.receive_data(data)
    for event in events:
        print(f"  {name} <- {describe(event)}   [{len(data)} bytes on the wire]")
    return events


def main() -> None:
    client = ClientConnection("localhost:8000", "/chat", subprotocols=["chat.v1"])
    server = ServerConnection()

    print("opening handshake")
    [request] = pump(client, server, "server")
    assert isinstance(request, HandshakeRequest)
    early = server.accept(subprotocol="chat.v1")  # events of frames sent with the request
    assert early == []
    pump(server, client, "client")

    print("messages, a fragmented message, and a ping")
    client.send_text("Hello, server")
    client.send_bytes(bytes(300))
    client.send_text("Hel", final=False)
    client.send_ping(b"are you there?")  # control frames may go between fragments
    client.send_text("lo again")
    pump(client, server, "server")
    pump(server, client, "client")  # the automatic pong

    print("a peer that breaks the rules")
    server.send_text("a server must not mask; this one is fine")
    pump(server, client, "client")
    events = server.receive_data(b"\x81\x05Hello")  # unmasked frame from a "client"
    for event in events:
        print(f"  server <- {describe(event)}")
    print(f"  server now sends a close frame {server.data_to_send()[:4].hex()}...", end=" ")
    print(f"and should close the transport: {server.should_close_transport}")

    print("a clean close handshake on a fresh pair")
    client = ClientConnection("localhost:8000")
    server = ServerConnection()
    pump(client, server, "server")
    assert server.accept() == []
    pump(server, client, "client")
    client.close(1000, "bye")
    pump(client, server, "server")
    pump(server, client, "client")
    print(f"  server closes TCP first: {server.should_close_transport}")
    client.receive_eof()
    print(f"  then the client: {client.should_close_transport}")


if __name__ == "__main__":
    main()
