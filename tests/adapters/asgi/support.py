"""A real uvicorn process serving `apps.py` with our protocol class, and
the five clients the tests drive it with (our three, websockets', and
aiohttp's), behind one synchronous face."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import websockets.sync.client

from adapters.errors import HandshakeError
from tests.adapters import harness

ROOT = Path(__file__).resolve().parents[3]
OURS = "adapters.asgi:WebSocketProtocol"
CLIENTS = ["blocking", "asyncio", "trio", "websockets", "aiohttp"]
TIMEOUT = harness.TIMEOUT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Uvicorn:
    """One uvicorn process, its port, its log and the apps' observations."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    observations: Path
    scheme: str = "ws"
    _ids: set[str] = field(default_factory=set)

    def url(self, path: str, **query: str) -> tuple[str, str]:
        """A URL for `path` with a fresh `id`, and that id."""
        test_id = uuid.uuid4().hex[:12]
        params = "&".join(f"{k}={v}" for k, v in {"id": test_id, **query}.items())
        joiner = "&" if "?" in path else "?"
        return f"{self.scheme}://127.0.0.1:{self.port}{path}{joiner}{params}", test_id

    def observed(self, test_id: str, what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The app's first observation `what` for `test_id`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.observations.exists():
                for line in self.observations.read_text().splitlines():
                    entry = json.loads(line)
                    if entry["id"] == test_id and entry["what"] == what:
                        return entry  # type: ignore[no-any-return]
            time.sleep(0.02)
        raise AssertionError(f"the app never recorded {what!r} for {test_id}")

    def all_observed(self, test_id: str) -> list[dict[str, Any]]:
        if not self.observations.exists():
            return []
        entries = [json.loads(line) for line in self.observations.read_text().splitlines()]
        return [entry for entry in entries if entry["id"] == test_id]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the process and wait for it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError("uvicorn did not stop in time") from None


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"uvicorn never listened:\n{log.read_text()}")


@contextmanager
def uvicorn(
    tmp: Path, app: str = "starlette_app", *args: str, ws: str = OURS, scheme: str = "ws"
) -> Iterator[Uvicorn]:
    """`uvicorn tests.adapters.asgi.apps:<app> --ws <ws> <args>` on loopback."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / f"uvicorn-{port}.log"
    observations = tmp / f"observations-{port}.jsonl"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"tests.adapters.asgi.apps:{app}",
        "--ws",
        ws,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    env = dict(os.environ, ASGI_TEST_LOG=str(observations), PYTHONPATH=str(ROOT))
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    server = Uvicorn(process, port, log, observations, scheme)
    try:
        wait_listening(port, process, log)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# -- clients ------------------------------------------------------------------------


class Peer:
    """What every client offers the tests."""

    subprotocol: str | None
    extensions: tuple[str, ...]
    response_headers: dict[str, str]

    def send(self, message: str | bytes) -> None:
        raise NotImplementedError

    def recv(self) -> str | bytes:
        raise NotImplementedError

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    def wait_closed(self) -> tuple[int | None, str]:
        """Wait for the server to end the connection; its code and reason."""
        raise NotImplementedError


class OurPeer(Peer):
    def __init__(self, client: harness.Client) -> None:
        self.client = client
        self.subprotocol = client.subprotocol
        self.extensions = client.extensions
        self.response_headers = {}

    def send(self, message: str | bytes) -> None:
        self.client.send(message)

    def send_fragments(self, pieces: list[str] | list[bytes]) -> None:
        self.client.send_fragments(pieces)

    def recv(self) -> str | bytes:
        return self.client.recv()

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.client.close(code, reason)

    def wait_closed(self) -> tuple[int | None, str]:
        self.client.wait_closed()
        return self.client.close_code, self.client.close_reason


class WebsocketsPeer(Peer):
    def __init__(self, ws: websockets.sync.client.ClientConnection) -> None:
        self.ws = ws
        self.subprotocol = ws.subprotocol
        response = ws.response
        assert response is not None
        self.response_headers = {k.lower(): v for k, v in response.headers.raw_items()}
        self.extensions = tuple(response.headers.get_all("Sec-WebSocket-Extensions"))

    def send(self, message: str | bytes) -> None:
        self.ws.send(message)

    def recv(self) -> str | bytes:
        return self.ws.recv(timeout=TIMEOUT)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)

    def wait_closed(self) -> tuple[int | None, str]:
        with_end = time.monotonic() + TIMEOUT
        while time.monotonic() < with_end:
            try:
                self.ws.recv(timeout=TIMEOUT)
            except websockets.ConnectionClosed:
                break
        return self.ws.close_code, self.ws.close_reason or ""


class AiohttpPeer(Peer):
    def __init__(self, loop: harness.AsyncioThread, session: Any, ws: Any) -> None:
        self.loop, self.session, self.ws = loop, session, ws
        self.subprotocol = ws.protocol
        self.response_headers = {k.lower(): v for k, v in ws._response.headers.items()}
        self.extensions = tuple(ws._response.headers.getall("Sec-WebSocket-Extensions", ()))
        self._closed: tuple[int | None, str] | None = None

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.loop.run(lambda: self.ws.send_str(message))
        else:
            self.loop.run(lambda: self.ws.send_bytes(message))

    def recv(self) -> str | bytes:
        message = self.loop.run(self.ws.receive)
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return message.data  # type: ignore[no-any-return]
        if message.type is aiohttp.WSMsgType.CLOSE:
            self._closed = (message.data, message.extra or "")
        raise ConnectionError(f"closed: {message}")

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.loop.run(lambda: self.ws.close(code=code, message=reason.encode()))

    def wait_closed(self) -> tuple[int | None, str]:
        while self._closed is None:
            message = self.loop.run(self.ws.receive)
            if message.type is aiohttp.WSMsgType.CLOSE:
                self._closed = (message.data, message.extra or "")
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                self._closed = (self.ws.close_code, "")
        return self._closed


@contextmanager
def peer(
    kind: str,
    url: str,
    *,
    subprotocols: tuple[str, ...] = (),
    compression: bool = True,
    ssl: Any = None,
) -> Iterator[Peer]:
    """An open client of `kind` on `url`, closed when the block ends."""
    if kind in harness.BACKENDS:
        options: dict[str, Any] = {"subprotocols": list(subprotocols), "max_message_size": None}
        if not compression:
            options["compression"] = None
        if ssl is not None:
            options["ssl"] = ssl
        with harness.client(kind, url, **options) as client:
            yield OurPeer(client)
    elif kind == "websockets":
        with websockets.sync.client.connect(
            url,
            subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
            compression="deflate" if compression else None,
            max_size=None,
            ssl=ssl,
            open_timeout=TIMEOUT,
        ) as ws:
            yield WebsocketsPeer(ws)
    else:
        loop = harness.AsyncioThread()
        try:

            async def open_both() -> tuple[Any, Any]:
                session = aiohttp.ClientSession()
                ws = await session.ws_connect(
                    url,
                    protocols=subprotocols,
                    compress=15 if compression else 0,
                    max_msg_size=0,
                    ssl=ssl if ssl is not None else True,
                )
                return session, ws

            session, ws = loop.run(open_both)
            try:
                yield AiohttpPeer(loop, session, ws)
            finally:
                loop.run(ws.close)
                loop.run(session.close)
        finally:
            loop.stop()


def refusal(kind: str, url: str) -> tuple[int, bytes]:
    """The status and body a client of `kind` reports when the server
    refuses its upgrade (the body only where the client exposes it)."""
    if kind in harness.BACKENDS:
        try:
            with harness.client(kind, url):
                pass
        except HandshakeError as error:
            return error.status or 0, bytes(error.body)
        raise AssertionError("the server accepted")
    if kind == "websockets":
        try:
            with websockets.sync.client.connect(url, open_timeout=TIMEOUT):
                pass
        except websockets.InvalidStatus as error:
            return error.response.status_code, bytes(error.response.body or b"")
        raise AssertionError("the server accepted")
    loop = harness.AsyncioThread()
    try:

        async def attempt() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(url):
                        pass
                except aiohttp.WSServerHandshakeError as error:
                    return error.status, b""
            raise AssertionError("the server accepted")

        return loop.run(attempt)  # type: ignore[no-any-return]
    finally:
        loop.stop()


def raw_request(port: int, path: str, extra: bytes = b"") -> bytes:
    """Send an upgrade request by hand and return everything the server
    answers until it closes (or the head, for a 101)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n".encode()
            + extra
            + b"\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if answer.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in answer:
                break
        return answer
