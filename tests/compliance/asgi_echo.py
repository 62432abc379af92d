"""A raw ASGI echo application, for the Autobahn|Testsuite under uvicorn.

    uvicorn tests.compliance.asgi_echo:app --ws adapters.asgi:WebSocketProtocol

Accepts every WebSocket, sends each message back with the type it came
with (text as text, bytes as bytes), and returns when the client has gone.
Plain HTTP gets a 404; the lifespan protocol is answered so that uvicorn's
default `--lifespan auto` has nothing to complain about.

No framework on purpose: the testsuite then measures the server's
WebSocket class and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await echo(receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)
    elif kind == "http":
        await not_found(send)


async def echo(receive: Receive, send: Send) -> None:
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        # A message carries exactly one of the two (the other is absent or None).
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def not_found(send: Send) -> None:
    body = b"This server only echoes WebSocket messages.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
