"""The ASGI `websocket` connection scope of an upgrade request.

Built the way uvicorn's own WebSocket classes build it, key for key, so
that an application (and a middleware that rewrites it, such as uvicorn's
proxy headers) sees no difference when the server's `--ws` changes.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import unquote

from wsproto_core import HandshakeRequest

# The version of the ASGI HTTP & WebSocket specification this scope and
# the messages of `adapters.asgi.session` follow: 2.4 adds the `reason` of
# `websocket.disconnect`; 2.3 the denial response extension.
SPEC_VERSION = "2.4"

Address = tuple[str, int] | None
Scope = dict[str, Any]


def websocket_scope(
    request: HandshakeRequest,
    *,
    scheme: Literal["ws", "wss"],
    server: tuple[str, int | None] | None,
    client: Address,
    root_path: str,
    asgi_version: str,
    state: dict[str, Any],
) -> Scope:
    """The scope of `request`. `state` is the lifespan's state, copied so
    that what one connection puts in it stays its own (ASGI's rule)."""
    raw_path, _, query = request.target.partition("?")
    return {
        "type": "websocket",
        "asgi": {"version": asgi_version, "spec_version": SPEC_VERSION},
        "http_version": "1.1",
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": root_path + unquote(raw_path),
        "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        # Names lowercased, values as the bytes that came (the core read
        # them as latin-1, which gives every byte back unchanged).
        "headers": [
            (name.lower().encode("ascii"), value.encode("latin-1"))
            for name, value in request.headers
        ],
        "subprotocols": list(request.subprotocols),
        "state": state.copy(),
        "extensions": {"websocket.http.response": {}},
    }
