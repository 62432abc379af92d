"""The echo server CLI (`python -m adapters.echo`), run as a real process;
with it, serving until a signal (`adapters._running`), which `wschat`
shares."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from adapters import ConnectionClosedOK, blocking

from .harness import BACKENDS


@contextmanager
def echo_server(*args: str, stop: signal.Signals = signal.SIGINT) -> Iterator[str]:
    """The server's URL; `stop` after, which must end it with 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.echo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"ws://\S+", line)
        assert match, line
        yield match.group()
    finally:
        process.send_signal(stop)
        assert process.wait(timeout=20) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_cli_compresses_by_default_and_not_with_no_compression(backend: str) -> None:
    with echo_server("--backend", backend) as url, blocking.connect(url) as ws:
        assert [e.split(";")[0] for e in ws.extensions] == ["permessage-deflate"]
        ws.send("hello " * 100)
        assert ws.recv(timeout=10) == "hello " * 100
    with (
        echo_server("--backend", backend, "--no-compression") as url,
        blocking.connect(url) as ws,
    ):
        assert ws.extensions == ()
        ws.send(b"plain")
        assert ws.recv(timeout=10) == b"plain"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_closes_every_client_with_1001_and_exits_0(
    backend: str, stop: signal.Signals
) -> None:
    with echo_server("--backend", backend, stop=stop) as url:
        clients = [blocking.connect(url) for _ in range(3)]
        for ws in clients:
            ws.send("still here")
            assert ws.recv(timeout=10) == "still here"
    for ws in clients:  # the server has exited: each got its close first
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=10)
        assert closed.value.code == 1001
        ws.close()
