"""The ASGI applications the tests serve with uvicorn and our protocol
class: the same routes as a Starlette app and as a FastAPI app, and under
`/raw/` a bare ASGI app for what the frameworks do not let an application
say (a denial body in chunks, a send after the close).

What an app sees that the test cannot see over the socket (a disconnect
event, an exception from `send`) goes as one JSON line per observation to
the file named by $ASGI_TEST_LOG, tagged with the request's `id` query
parameter so that each test finds its own lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Query
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def record(scope: Scope, what: str, **details: Any) -> None:
    """One observation, for the test that sent `?id=`."""
    query = parse_qs(scope.get("query_string", b"").decode())
    line = {"id": query.get("id", [""])[0], "what": what, **details}
    with open(os.environ["ASGI_TEST_LOG"], "a") as log:
        log.write(json.dumps(line, default=lambda data: data.decode("latin-1")) + "\n")


# The keys the server puts in the scope (the frameworks add their own).
ASGI_KEYS = (
    "type",
    "asgi",
    "http_version",
    "scheme",
    "server",
    "client",
    "root_path",
    "path",
    "raw_path",
    "query_string",
    "headers",
    "subprotocols",
    "state",
    "extensions",
)


def scope_as_json(scope: Scope) -> dict[str, Any]:
    """The scope with bytes shown as latin-1 text, so it travels as JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    return {key: plain(scope[key]) for key in ASGI_KEYS if key in scope}


# -- the framework routes (Starlette and FastAPI alike) ------------------------


async def echo(ws: WebSocket) -> None:
    """Accept (the last subprotocol offered, an extra header), echo each
    message with its type, record the disconnect."""
    offered = ws.scope["subprotocols"]
    await ws.accept(subprotocol=offered[-1] if offered else None, headers=[(b"x-hello", b"world")])
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            record(ws.scope, "disconnect", code=message["code"], reason=message.get("reason"))
            return
        if message.get("text") is not None:
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


async def scope_route(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json(scope_as_json(ws.scope))
    await ws.close()


async def close_with(ws: WebSocket) -> None:
    """Close with the code in the path and the first message as reason."""
    await ws.accept()
    reason = await ws.receive_text()
    await ws.close(code=int(ws.path_params["code"]), reason=reason)
    record(ws.scope, "closed")


async def deny(ws: WebSocket) -> None:
    await ws.send_denial_response(
        PlainTextResponse("go away\n", status_code=401, headers={"x-why": "testing"})
    )


async def refuse(ws: WebSocket) -> None:
    await ws.close(code=1008)


async def raise_before(ws: WebSocket) -> None:
    raise RuntimeError("failing before the accept, on purpose")


async def raise_after(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("failing after the accept, on purpose")


async def return_before(ws: WebSocket) -> None:
    return


async def return_after(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()


async def never_receive(ws: WebSocket) -> None:
    """Accept and never read: the server must stop reading for us."""
    await ws.accept()
    await asyncio.sleep(60)


async def wait_disconnect(ws: WebSocket) -> None:
    """Accept, then wait for the end and record how it came."""
    await ws.accept()
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect as gone:
        record(ws.scope, "disconnect", code=gone.code, reason=gone.reason)


ROUTES: list[tuple[str, Callable[[WebSocket], Awaitable[None]]]] = [
    ("/echo", echo),
    ("/scope/{rest:path}", scope_route),
    ("/close/{code:int}", close_with),
    ("/deny", deny),
    ("/refuse", refuse),
    ("/raise-before", raise_before),
    ("/raise-after", raise_after),
    ("/return-before", return_before),
    ("/return-after", return_after),
    ("/never-receive", never_receive),
    ("/wait-disconnect", wait_disconnect),
]


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
    yield {"started": "by the lifespan"}


# -- the bare ASGI routes ----------------------------------------------------------


BAD_ACCEPTS: dict[str, dict[str, Any]] = {
    "accept-handshake-header": {"headers": [(b"upgrade", b"h2c")]},
    "accept-crlf-header": {"headers": [(b"x-evil", b"a\r\nset-cookie: b")]},
    "accept-unoffered-subprotocol": {"subprotocol": "never-offered"},
}


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    """What no framework lets an app say, chosen by the path."""
    path = scope["path"].rsplit("/", 1)[-1]
    assert (await receive())["type"] == "websocket.connect"
    if path == "deny-chunks":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 418,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for piece in (b"short ", b"and ", b"stout\n"):
            await send({"type": "websocket.http.response.body", "body": piece, "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b""})
        return
    if path == "hang":  # never answer; record how the wait ended
        message = await receive()
        record(scope, "hang ended", message=message)
        return
    if path in BAD_ACCEPTS:  # raises: the server answers 500 for the app
        await send({"type": "websocket.accept", **BAD_ACCEPTS[path]})
        return
    if path == "return-mid-denial":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        return
    if path == "accept-via-header":  # the subprotocol as a header, as uvicorn's classes take it
        await send(
            {"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"second")]}
        )
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept"})
    if path == "close-while-receiving":  # a receive waits in another task
        receiver = asyncio.ensure_future(receive())
        await asyncio.sleep(0.2)
        await send({"type": "websocket.close", "code": 4003, "reason": "bye"})
        try:
            record(scope, "receiver", message=await asyncio.wait_for(receiver, 5))
        except TimeoutError:
            record(scope, "receiver", message=None)
        return
    if path == "send-after-close":
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        after = await receive()
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Exception as error:
            record(
                scope,
                "send after close",
                error=type(error).__name__,
                message=str(error),
                after=after,
            )
    elif path == "send-after-disconnect":
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Exception as error:
            record(scope, "send after disconnect", error=type(error).__name__, code=message["code"])
    elif path == "wrong-message":
        try:
            await send({"type": "websocket.accept"})
        except Exception as error:
            record(scope, "wrong message", error=type(error).__name__, message=str(error))
        await send({"type": "websocket.close"})
    elif path == "wrong-type":
        try:
            await send({"type": "websocket.send", "text": b"bytes as text"})
        except Exception as error:
            record(scope, "wrong type", error=type(error).__name__, message=str(error))
        await send({"type": "websocket.close", "code": 4001})
    elif path == "bad-send":
        try:
            await send({"type": "websocket.send", "text": "a", "bytes": b"b"})
        except Exception as error:
            record(scope, "bad send", error=type(error).__name__, message=str(error))
        await send({"type": "websocket.close", "code": 4001})
    elif path == "events":
        # every event the client causes, until the disconnect
        while True:
            message = await receive()
            record(scope, "event", message=message)
            if message["type"] == "websocket.disconnect":
                return


def with_raw_routes(app: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"].startswith("/raw/"):
            await raw_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def _starlette() -> Starlette:
    return Starlette(
        routes=[WebSocketRoute(path, endpoint) for path, endpoint in ROUTES], lifespan=lifespan
    )


def _fastapi() -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    for path, endpoint in ROUTES:
        app.add_api_websocket_route(path, endpoint)

    @app.websocket("/fastapi/{room}")
    async def room(ws: FastAPIWebSocket, room: str, nick: str = Query()) -> None:
        """FastAPI's own parameters (path and query) on a WebSocket route."""
        await ws.accept()
        await ws.send_text(f"{nick} joined {room}")
        await ws.close()

    return app


starlette_app = with_raw_routes(_starlette())
fastapi_app = with_raw_routes(_fastapi())
