"""The bare ASGI application the hostile suite serves with uvicorn
(`uvicorn tests.hostile.asgi_apps:app --ws ...`): one route per behaviour,
chosen by the path, so one process serves every attack of a test. No
framework: what is measured is the server's memory, not Starlette's.

    /                  echo each message back, with its type
    /late-accept       sleep `delay` seconds (query), then accept and echo
    /never-receive     accept, then never call receive()
    /firehose          accept, then send 64 KiB messages until the client is gone
    /never-answer      never answer the request; wait on receive()
    /deaf              never answer the request, never call receive()
    /raise/<where>     raise at <where> (see RAISES)
    /misuse/<what>     send what the phase does not allow (see MISUSES)
    /close             accept, then close with the query's `code` and a
                       reason of `reason` bytes ("x" * n)
    /double-receive    accept, then two receive() at once; echo what each gets
    /impatient         accept, then wait for each of two messages with a 20 ms
                       timeout, over and over; answer each with its size and hash
    GET /live          (HTTP) the per-connection objects still alive, and tasks

What the app sees that the client cannot (an exception from send, the
disconnect event) goes to stderr as one line starting `OBSERVED `, which
the test reads from the server's log.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK = b"\xab" * (64 * 1024)


class DeliberateError(Exception):
    """What the app raises on purpose."""


def observe(what: str, /, **details: Any) -> None:
    line = json.dumps({"what": what, **details}, default=repr)
    print(f"OBSERVED {line}", file=sys.stderr, flush=True)


def query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[0] for key, values in parsed.items()}


async def echo_loop(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def accept(receive: Receive, send: Send) -> None:
    connect = await receive()
    assert connect["type"] == "websocket.connect", connect
    await send({"type": "websocket.accept"})


# -- raising where it hurts ----------------------------------------------------------


async def raise_at(where: str, receive: Receive, send: Send) -> None:
    if where == "before-connect":
        raise DeliberateError(where)
    await receive()  # websocket.connect
    if where == "before-accept":
        raise DeliberateError(where)
    if where == "mid-denial":
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
        raise DeliberateError(where)
    await send({"type": "websocket.accept"})
    if where == "after-accept":
        raise DeliberateError(where)
    if where == "after-message":
        await receive()
        raise DeliberateError(where)
    if where == "after-close":
        await send({"type": "websocket.close", "code": 4000})
        raise DeliberateError(where)
    if where == "after-disconnect":
        while (await receive())["type"] != "websocket.disconnect":
            pass
        raise DeliberateError(where)
    if where == "base-exception":  # not an Exception: a KeyboardInterrupt-like escape
        await receive()
        raise SystemExit(where)
    if where == "cancelled":
        await receive()
        raise asyncio.CancelledError(where)
    raise ValueError(f"no such place to raise: {where}")


RAISES = (
    "before-connect",
    "before-accept",
    "mid-denial",
    "after-accept",
    "after-message",
    "after-close",
    "after-disconnect",
    "base-exception",
    "cancelled",
)


# -- messages out of order ------------------------------------------------------------


async def misuse(what: str, receive: Receive, send: Send) -> None:
    """Each sends something the phase does not allow, records what `send`
    raised, and goes on as a careless app would."""

    async def attempt(message: Message) -> None:
        try:
            await send(message)
        except Exception as error:
            observe("misuse", misuse=what, error=type(error).__name__, message=str(error)[:200])
        else:
            observe("misuse", misuse=what, error=None)

    await receive()  # websocket.connect
    if what == "send-before-accept":
        await attempt({"type": "websocket.send", "text": "too early"})
        await send({"type": "websocket.accept"})
        await echo_loop(receive, send)
    elif what == "accept-twice":
        await send({"type": "websocket.accept"})
        await attempt({"type": "websocket.accept"})
        await echo_loop(receive, send)
    elif what == "unknown-type":
        await attempt({"type": "websocket.bogus"})
        await send({"type": "websocket.accept"})
        await attempt({"type": "http.response.start", "status": 200})
        await echo_loop(receive, send)
    elif what == "close-twice":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001})
        await attempt({"type": "websocket.close", "code": 4002})
        await attempt({"type": "websocket.send", "text": "after close"})
        observe("after close", event=await receive())
    elif what == "body-after-accept":
        await send({"type": "websocket.accept"})
        await attempt({"type": "websocket.http.response.body", "body": b"x"})
        await echo_loop(receive, send)
    elif what == "bad-status":
        await attempt({"type": "websocket.http.response.start", "status": 101, "headers": []})
        await send({"type": "websocket.accept"})
        await echo_loop(receive, send)
    elif what == "send-wrong-types":
        await send({"type": "websocket.accept"})
        await attempt({"type": "websocket.send", "text": b"bytes as text"})
        await attempt({"type": "websocket.send", "bytes": 12345})
        await attempt({"type": "websocket.send"})
        await echo_loop(receive, send)
    elif what == "header-injection":
        await attempt(
            {"type": "websocket.accept", "headers": [(b"x-evil", b"a\r\n\r\nHTTP/1.1 200 OK")]}
        )
        await send({"type": "websocket.accept"})
        await echo_loop(receive, send)
    else:
        raise ValueError(f"no such misuse: {what}")


MISUSES = (
    "send-before-accept",
    "accept-twice",
    "unknown-type",
    "close-twice",
    "body-after-accept",
    "bad-status",
    "send-wrong-types",
    "header-injection",
)


# -- what the process still holds ------------------------------------------------------

# The per-connection objects of our class and of uvicorn's own.
CONNECTION_CLASSES = frozenset(
    {"WebSocketProtocol", "AsgiWebSocket", "WebSocketsSansIOProtocol", "WSProtocol"}
)


def live_objects() -> dict[str, int]:
    """`GET /live`: after a full collection, how many per-connection objects
    are alive, and how many tasks: what a test compares before and after
    connections that have all ended (a leak shows as a count that stays)."""
    gc.collect()
    counts = dict.fromkeys(sorted(CONNECTION_CLASSES), 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in CONNECTION_CLASSES:
            counts[name] += 1
    counts["tasks"] = len(asyncio.all_tasks())
    return counts


# -- the application ------------------------------------------------------------------


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    options = query(scope)
    if path == "/":
        await accept(receive, send)
        await echo_loop(receive, send)
    elif path == "/late-accept":
        await receive()
        await asyncio.sleep(float(options.get("delay", "1")))
        try:
            await send({"type": "websocket.accept"})
        except Exception as error:
            observe("late accept", error=type(error).__name__)
            raise
        await echo_loop(receive, send)
    elif path == "/never-receive":
        await accept(receive, send)
        await asyncio.sleep(600)
    elif path == "/firehose":
        await accept(receive, send)
        sent = 0
        try:
            while True:
                await send({"type": "websocket.send", "bytes": CHUNK})
                sent += 1
        except Exception as error:
            observe("firehose", sent=sent, error=type(error).__name__)
    elif path == "/never-answer":
        await receive()
        observe("never answered", event=await receive())
    elif path == "/deaf":
        await asyncio.sleep(600)
    elif path.startswith("/raise/"):
        await raise_at(path.removeprefix("/raise/"), receive, send)
    elif path.startswith("/misuse/"):
        await misuse(path.removeprefix("/misuse/"), receive, send)
    elif path == "/close":
        await accept(receive, send)
        code = int(options["code"]) if "code" in options else None
        reason = "x" * int(options.get("reason", "0"))
        try:
            await send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as error:
            observe("close refused", code=code, error=type(error).__name__)
            raise
        observe("closed", code=code)
    elif path == "/impatient":
        await accept(receive, send)
        timeouts = 0
        for _ in range(2):
            while True:
                try:
                    message = await asyncio.wait_for(receive(), 0.02)
                    break
                except TimeoutError:
                    timeouts += 1
            data = message.get("bytes") or b""
            digest = hashlib.sha256(data).hexdigest()[:16]
            await send({"type": "websocket.send", "text": f"{len(data)} {digest}"})
        observe("impatient", timeouts=timeouts)
        await echo_loop(receive, send)
    elif path == "/double-receive":
        await accept(receive, send)
        first, second = await asyncio.gather(receive(), receive(), return_exceptions=True)
        observe("double receive", first=first, second=second)
        for got in (first, second):
            if isinstance(got, dict) and got.get("type") == "websocket.receive":
                await send({"type": "websocket.send", "text": got.get("text") or "?"})
        await echo_loop(receive, send)
    else:
        await receive()
        await send({"type": "websocket.close", "code": 1008})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        if scope["path"] == "/live":
            body = json.dumps(live_objects()).encode()
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not here\n"})
    else:
        await websocket(scope, receive, send)
