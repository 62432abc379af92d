"""uvicorn's settings and life cycle with our class: compression, limits,
keepalive, read backpressure, graceful shutdown, TLS, `uvicorn.run(ws=...)`,
and no uvicorn import anywhere but `adapters.asgi`."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from wsproto_core import ClientConnection, CloseReceived, Ping, State

from .support import ROOT, TIMEOUT, Uvicorn, free_port, peer, uvicorn, wait_listening


def handshake(
    server: Uvicorn, path: str, **options: object
) -> tuple[socket.socket, ClientConnection, str]:
    """A raw socket past the handshake, our core speaking for it."""
    url, test_id = server.url(path)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    core = ClientConnection(
        f"127.0.0.1:{server.port}",
        url.split(str(server.port), 1)[1],
        **options,  # type: ignore[arg-type]
    )
    sock.sendall(core.data_to_send())
    while core.state is State.CONNECTING:
        core.receive_data(sock.recv(65536))
    return sock, core, test_id


# -- permessage-deflate ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["asyncio", "websockets", "aiohttp"])
def test_compression_is_negotiated_by_default(starlette: Uvicorn, kind: str) -> None:
    url, _ = starlette.url("/echo")
    with peer(kind, url) as ws:
        assert any(e.startswith("permessage-deflate") for e in ws.extensions)
        text = "compressible " * 10_000
        ws.send(text)
        assert ws.recv() == text


def test_compression_refused_when_uvicorn_turns_it_off(tmp_path: Path) -> None:
    with uvicorn(tmp_path, "starlette_app", "--ws-per-message-deflate", "false") as server:
        for kind in ("trio", "websockets"):
            url, _ = server.url("/echo")
            with peer(kind, url) as ws:
                assert ws.extensions == ()
                ws.send("plain")
                assert ws.recv() == "plain"


def test_a_client_that_does_not_offer_compression_gets_none(starlette: Uvicorn) -> None:
    url, _ = starlette.url("/echo")
    with peer("blocking", url, compression=False) as ws:
        assert ws.extensions == ()
        ws.send("x" * 1000)
        assert ws.recv() == "x" * 1000


# -- limits ---------------------------------------------------------------------------


def test_ws_max_size_closes_with_1009(tmp_path: Path) -> None:
    with uvicorn(tmp_path, "starlette_app", "--ws-max-size", "1000") as server:
        url, test_id = server.url("/raw/events")
        with peer("websockets", url) as ws:
            ws.send(b"x" * 1000)  # at the limit: fine
            ws.send(b"x" * 1001)
            code, _ = ws.wait_closed()
        assert code == 1009
        events = [e["message"] for e in server.all_observed(test_id)]
        deadline = time.monotonic() + TIMEOUT
        while not events or events[-1]["type"] != "websocket.disconnect":
            assert time.monotonic() < deadline
            time.sleep(0.02)
            events = [e["message"] for e in server.all_observed(test_id)]
        assert events[0]["type"] == "websocket.receive"
        assert events[-1]["code"] == 1009


def test_an_app_that_never_receives_stops_the_reading(tmp_path: Path) -> None:
    """With `--ws-max-queue 4`, a client flooding an app that never reads
    gets only the queue and the kernel's buffers in, not its flood."""
    with uvicorn(tmp_path, "starlette_app", "--ws-max-queue", "4") as server:
        sock, core, _ = handshake(server, "/never-receive")
        with sock:
            frame_size = 64 * 1024
            for _ in range(4):
                core.send_bytes(b"\0" * frame_size)
            batch = core.data_to_send()
            sock.setblocking(False)
            accepted = 0
            stalled_since = None
            flood = 256 << 20
            while accepted < flood:
                try:
                    accepted += sock.send(batch)
                    stalled_since = None
                except BlockingIOError:
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 1.0:
                        break  # the server stopped reading
                    time.sleep(0.01)
            assert accepted < 64 << 20, "the server kept reading for an app that never does"
        # and the server still serves everyone else
        url, _ = server.url("/echo")
        with peer("asyncio", url) as ws:
            ws.send("still here")
            assert ws.recv() == "still here"


def test_keepalive_fails_a_dead_peer_with_1011(tmp_path: Path) -> None:
    options = ("--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3")
    with uvicorn(tmp_path, "starlette_app", *options) as server:
        sock, core, test_id = handshake(server, "/wait-disconnect")
        with sock:
            # a peer that reads but never answers a ping
            events = []
            while data := sock.recv(65536):
                events += core.receive_data(data)
                core.data_to_send()  # the pongs our core wrote: dropped
        assert any(isinstance(e, Ping) for e in events)
        closes = [e for e in events if isinstance(e, CloseReceived)]
        assert closes
        assert closes[0].code == 1011
        seen = server.observed(test_id, "disconnect")
        assert seen["code"] == 1011


def test_keepalive_keeps_a_live_peer(tmp_path: Path) -> None:
    options = ("--ws-ping-interval", "0.1", "--ws-ping-timeout", "0.5")
    with uvicorn(tmp_path, "starlette_app", *options) as server:
        url, _ = server.url("/echo")
        with peer("asyncio", url) as ws:
            time.sleep(1.0)  # ten pings, each answered by the client
            ws.send("alive")
            assert ws.recv() == "alive"


# uvicorn shuts down gracefully, then (since 0.29) raises the signal again.
STOPPED_BY_SIGTERM = (0, -signal.SIGTERM)

# -- shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["blocking", "websockets"])
def test_shutdown_closes_open_connections_with_1012(tmp_path: Path, kind: str) -> None:
    with uvicorn(tmp_path, "starlette_app") as server:
        url, test_id = server.url("/wait-disconnect")
        with peer(kind, url) as ws:
            server.process.send_signal(signal.SIGTERM)
            assert ws.wait_closed()[0] == 1012
        assert server.observed(test_id, "disconnect")["code"] == 1012
        assert server.stop() in STOPPED_BY_SIGTERM
        assert "Finished server process" in server.log_text()


def test_shutdown_answers_an_unanswered_request_with_500(tmp_path: Path) -> None:
    with uvicorn(tmp_path, "starlette_app") as server:
        url, test_id = server.url("/raw/hang")
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            core = ClientConnection(f"127.0.0.1:{server.port}", url.split(str(server.port), 1)[1])
            sock.sendall(core.data_to_send())
            time.sleep(0.3)  # the app has the request and sits on it
            server.process.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 500 ")
        seen = server.observed(test_id, "hang ended")
        assert seen["message"]["type"] == "websocket.disconnect"
        assert server.stop() in STOPPED_BY_SIGTERM


# -- TLS, and uvicorn.run(ws=...) -------------------------------------------------------------


def test_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(key_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    options = ("--ssl-keyfile", str(key_file), "--ssl-certfile", str(cert_file))
    with uvicorn(tmp_path, "starlette_app", *options, scheme="wss") as server:
        for kind in ("blocking", "trio", "websockets"):
            url, _ = server.url("/echo")
            with peer(kind, url, ssl=context) as ws:
                ws.send("secret")
                assert ws.recv() == "secret"
        url, _ = server.url("/scope/x")
        with peer("asyncio", url, ssl=context) as ws:
            assert '"scheme":"wss"' in str(ws.recv())


RUN_WITH_CLASS = """
import sys, uvicorn
from adapters.asgi import WebSocketProtocol
uvicorn.run("tests.adapters.asgi.apps:starlette_app", ws=WebSocketProtocol,
            host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_uvicorn_run_takes_the_class_itself(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_WITH_CLASS, str(port)],
            cwd=ROOT,
            env={"ASGI_TEST_LOG": str(tmp_path / "obs.jsonl"), "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=out,
        )
    try:
        wait_listening(port, process, log)
        with peer("trio", f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("by class")
            assert ws.recv() == "by class"
    finally:
        process.terminate()
        assert process.wait(TIMEOUT) in STOPPED_BY_SIGTERM


IMPORT_EVERYTHING_ELSE = """
import sys
import wsproto_core, adapters, adapters.asyncio, adapters.trio, adapters.blocking
import adapters.chat.cli, adapters.echo
assert "uvicorn" not in sys.modules, "something outside adapters.asgi imports uvicorn"
"""


def test_nothing_else_imports_uvicorn() -> None:
    subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING_ELSE], cwd=ROOT, check=True)


def test_the_readme_app_under_the_readme_command(tmp_path: Path) -> None:
    """The README's FastAPI example, started with the README's command."""
    readme = (ROOT / "README.md").read_text()
    (app,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "FastAPI" in b]
    (command,) = re.findall(r"^ {4}(uvicorn app:app .*)$", readme, re.MULTILINE)
    (tmp_path / "app.py").write_text(app)
    port = free_port()
    log = tmp_path / "uvicorn.log"
    argv = [sys.executable, "-m", *command.split(), "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, stdout=out, stderr=out
        )
    try:
        wait_listening(port, process, log)
        with peer("websockets", f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("from the readme")
            assert ws.recv() == "from the readme"
        assert "[accepted]" in log.read_text()
    finally:
        process.terminate()
        process.wait(TIMEOUT)
