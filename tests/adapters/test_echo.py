"""The echo server CLI (`python -m adapters.echo`), run as a real process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from adapters import blocking

from .harness import BACKENDS


@contextmanager
def echo_server(*args: str) -> Iterator[str]:
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
        process.send_signal(signal.SIGINT)
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
