"""The public API as a user imports it. CI also runs `mypy --strict` on this
file, so an import path that is not public (no `__all__`, a private module)
fails the build, not just a user's type check."""

from __future__ import annotations

import importlib

import adapters
import wsproto_core
from adapters import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidURI,
    WebSocketAdapterError,
)
from adapters.asyncio import ConnectionClosed as AsyncioConnectionClosed
from adapters.blocking import ConnectionClosed as BlockingConnectionClosed
from adapters.errors import closed_error
from adapters.trio import ConnectionClosed as TrioConnectionClosed

BACKENDS = ("adapters.blocking", "adapters.asyncio", "adapters.trio")
ERRORS = (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidURI,
    WebSocketAdapterError,
)


def test_every_backend_raises_the_same_exception_classes() -> None:
    assert AsyncioConnectionClosed is BlockingConnectionClosed is TrioConnectionClosed
    for name in BACKENDS:
        module = importlib.import_module(name)
        for error in ERRORS:
            assert getattr(module, error.__name__) is error
            assert error.__name__ in module.__all__
    for error in ERRORS:
        assert error.__name__ in adapters.__all__


def test_every_backend_offers_the_same_names() -> None:
    # (no pytest here: CI type-checks this file without the test extras)
    for name in BACKENDS:
        module = importlib.import_module(name)
        for public in ("serve", "connect", "Server", "WebSocket", "Handler"):
            assert public in module.__all__, (name, public)
        for method in ("recv", "recv_streaming", "send", "send_fragments", "send_prepared"):
            assert callable(getattr(module.WebSocket, method)), (name, method)
        for method in ("ping", "close", "close_nowait", "wait_closed"):
            assert callable(getattr(module.WebSocket, method)), (name, method)
        for method in ("serve_forever", "close"):
            assert callable(getattr(module.Server, method)), (name, method)


def test_closed_error_classifies_codes() -> None:
    assert isinstance(closed_error(1000, ""), ConnectionClosedOK)
    assert isinstance(closed_error(1001, ""), ConnectionClosedOK)
    assert isinstance(closed_error(1005, ""), ConnectionClosedOK)
    assert isinstance(closed_error(1006, ""), ConnectionClosedError)
    assert isinstance(closed_error(4000, "x"), ConnectionClosedError)
    assert "4000 x" in str(closed_error(4000, "x"))
    assert "no status" in str(closed_error(None, ""))
    error: ConnectionClosed = closed_error(1000, "")
    assert isinstance(error, WebSocketAdapterError)


def test_the_package_has_a_version() -> None:
    version: str = wsproto_core.__version__
    assert version.count(".") == 2
    assert all(part.isdigit() for part in version.split("."))
    metadata = importlib.import_module("importlib.metadata")
    assert metadata.version("wsproto-core") == version
