"""The ASGI scope: built from a request by the core (no server), and as
an app under uvicorn sees it, proxy headers and root path included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client

from adapters.asgi.scope import SPEC_VERSION, websocket_scope
from wsproto_core import HandshakeRequest, ServerConnection

from .support import Uvicorn, peer, raw_request, uvicorn

REQUEST = (
    b"GET /chat/caf%C3%A9%20bar?x=1&y=%20 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: one, two\r\n"
    b"Sec-WebSocket-Protocol: three\r\n"
    b"X-Latin: caf\xe9\r\n"
    b"X-Twice: a\r\n"
    b"X-Twice: b\r\n"
    b"\r\n"
)


def request_of(raw: bytes) -> HandshakeRequest:
    (event,) = ServerConnection().receive_data(raw)
    assert isinstance(event, HandshakeRequest)
    return event


def scope_of(raw: bytes = REQUEST, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "asgi_version": "3.0",
        "state": {},
    }
    return websocket_scope(request_of(raw), **(options | overrides))


def test_path_is_decoded_and_raw_path_and_query_are_not() -> None:
    scope = scope_of()
    assert scope["path"] == "/chat/café bar"
    assert scope["raw_path"] == b"/chat/caf%C3%A9%20bar"
    assert scope["query_string"] == b"x=1&y=%20"


def test_root_path_prefixes_both_paths() -> None:
    scope = scope_of(root_path="/api")
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/chat/café bar"
    assert scope["raw_path"] == b"/api/chat/caf%C3%A9%20bar"


def test_headers_keep_order_duplicates_and_every_byte() -> None:
    headers = scope_of()["headers"]
    assert headers[0] == (b"host", b"example.com")
    assert (b"x-latin", b"caf\xe9") in headers  # not UTF-8: the byte comes back as it came
    assert [v for n, v in headers if n == b"x-twice"] == [b"a", b"b"]
    assert all(name == name.lower() for name, _ in headers)


def test_subprotocols_from_every_field_in_order() -> None:
    assert scope_of()["subprotocols"] == ["one", "two", "three"]


def test_fixed_keys() -> None:
    scope = scope_of(scheme="wss")
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": SPEC_VERSION}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "wss"
    assert scope["server"] == ("127.0.0.1", 8000)
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["extensions"] == {"websocket.http.response": {}}


def test_state_is_a_copy_per_connection() -> None:
    shared = {"db": "pool"}
    scope = scope_of(state=shared)
    assert scope["state"] == shared
    scope["state"]["mine"] = True
    assert "mine" not in shared


# -- as the app sees it under uvicorn ---------------------------------------------------


def served_scope(server: Uvicorn, path: str, **options: Any) -> dict[str, Any]:
    url, _ = server.url(path)
    with peer("websockets", url, **options) as ws:
        text = ws.recv()
    assert isinstance(text, str)
    return json.loads(text)  # type: ignore[no-any-return]


def test_the_scope_an_app_gets(served: Uvicorn) -> None:
    scope = served_scope(served, "/scope/caf%C3%A9", subprotocols=("a", "b"))
    assert scope["type"] == "websocket"
    assert scope["asgi"]["spec_version"] == SPEC_VERSION
    assert scope["scheme"] == "ws"
    assert scope["server"] == ["127.0.0.1", served.port]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["path"] == "/scope/café"
    assert scope["raw_path"] == "/scope/caf%C3%A9"
    assert scope["query_string"].startswith("id=")
    assert scope["subprotocols"] == ["a", "b"]
    assert ["host", f"127.0.0.1:{served.port}"] in scope["headers"]
    assert scope["state"] == {"started": "by the lifespan"}  # the lifespan's, shared
    assert scope["extensions"] == {"websocket.http.response": {}}


def test_proxy_headers_root_path_and_server_headers(tmp_path: Path) -> None:
    options = (
        "--root-path",
        "/api",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--no-server-header",
        "--no-date-header",
        "--header",
        "x-served-by:tests",
    )
    with uvicorn(tmp_path, "starlette_app", *options) as server:
        head = raw_request(server.port, "/scope/x").split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 101")
        assert b"\r\nx-served-by: tests" in head
        assert b"\r\nserver:" not in head
        assert b"\r\ndate:" not in head

        scope = served_scope(server, "/scope/x")
        assert (scope["root_path"], scope["path"]) == ("/api", "/api/scope/x")
        assert (scope["scheme"], scope["client"][0]) == ("ws", "127.0.0.1")

        url, _ = server.url("/scope/x")
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        with websockets.sync.client.connect(url, additional_headers=forwarded) as ws:
            text = ws.recv(timeout=10)
        assert isinstance(text, str)
        scope = json.loads(text)
        assert (scope["scheme"], scope["client"][0]) == ("wss", "203.0.113.9")


@pytest.mark.parametrize("header", [b"server: uvicorn", b"date: "])
def test_default_server_headers_on_every_answer(starlette: Uvicorn, header: bytes) -> None:
    for path in ("/echo", "/refuse", "/deny"):
        head = raw_request(starlette.port, path).split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\n" + header in head, (path, head)
