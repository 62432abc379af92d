"""Tools for `test_chat_ops_hostile.py`: a redis-server of our own on
loopback and a tiny RESP client for the hostile publisher, plain HTTP for
/healthz and /metrics, and `wschat --workers N` as a real process tree.

Every process started here binds 127.0.0.1 and is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from adapters import blocking
from adapters.chat.resp import ReplyParser, command

from .support import SOURCE_ROOT, Server, _within

REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- redis -------------------------------------------------------------------


@dataclass
class Redis:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def call(self, *args: object, timeout: float = 5.0) -> object:
        """One command as the default user (the hostile one: it can do anything)."""
        return self.pipeline([args], timeout=timeout)[0]

    def pipeline(self, commands: list[tuple[object, ...]], timeout: float = 10.0) -> list[object]:
        """Commands written at once, their replies read in order."""
        data = b"".join(
            command(*(a if isinstance(a, bytes) else str(a) for a in c)) for c in commands
        )
        parser = ReplyParser(max_elements=1 << 20, max_bulk=1 << 24)
        replies: list[object] = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            while len(replies) < len(commands):
                chunk = sock.recv(1 << 16)
                assert chunk, "redis closed the connection"
                replies += parser.feed(chunk)
        return replies

    def publish_all(self, payloads: list[bytes | str]) -> None:
        """PUBLISH each on the room's channel, pipelined in chunks."""
        for start in range(0, len(payloads), 200):
            chunk = payloads[start : start + 200]
            self.pipeline([("PUBLISH", "wschat:room", p) for p in chunk])

    def eval_calls(self) -> int:
        """How many EVAL and EVALSHA Redis ran since its stats were reset."""
        info = self.call("INFO", "commandstats")
        assert isinstance(info, bytes)
        total = 0
        for name in ("eval", "evalsha"):
            found = re.search(rb"cmdstat_%s:calls=(\d+)" % name.encode(), info)
            total += int(found.group(1)) if found else 0
        return total


@contextmanager
def redis_server(*options: str) -> Iterator[Redis]:
    """A redis-server of our own on a free loopback port."""
    assert REDIS is not None, "redis-server is not installed"
    port = free_port()
    process = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1) as probe,
            ):
                probe.sendall(b"PING\r\n")
                if probe.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield Redis(port, process)
    finally:
        process.send_signal(signal.SIGCONT)  # (a test may have stopped it)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(server: Server, text: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.log.count(text) < count:
        server.assert_alive()
        assert time.monotonic() < deadline, f"{text!r} not logged: {server.log_tail(10)}"
        time.sleep(0.02)


# -- plain HTTP --------------------------------------------------------------


def http_get(
    port: int, path: str, source: str = "127.0.0.1", timeout: float = 5.0, method: str = "GET"
) -> tuple[int, bytes]:
    """(status, body) of one request; the server closes after answering."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        if source != "127.0.0.1":
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return (int(found.group(1)) if found else 0), body


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, source: str = "127.0.0.1") -> Samples:
    status, body = http_get(port, "/metrics", source)
    assert status == 200, (status, body[:300])
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def health(port: int, source: str = "127.0.0.1") -> tuple[int, dict[str, object]]:
    status, body = http_get(port, "/healthz", source)
    return status, json.loads(body) if body.startswith(b"{") else {}


# -- wschat --workers N --------------------------------------------------------


@dataclass
class Workers:
    """`wschat --workers N`: the parent process, its port, its stderr."""

    process: subprocess.Popen[bytes]
    port: int
    _log: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "".join(self._log)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for raw in iter(self.process.stderr.readline, b""):
            self._log.append(raw.decode("utf-8", "replace"))

    def worker_pids(self, expected: int, timeout: float = 10.0) -> set[int]:
        """The workers' PIDs, from /healthz (a connection reaches one of them
        at random: asked from many source ports until `expected` answered)."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < expected and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                _, body = health(self.port)
                seen.add(int(str(body["worker"]).rsplit(":", 1)[1]))
        return seen


@contextmanager
def running_workers(
    count: int,
    *args: str,
    env: dict[str, str] | None = None,
    started: bool = True,
    port: int | None = None,
) -> Iterator[Workers]:
    """`python -m adapters.chat --workers count --port P args` on loopback;
    stopped with SIGINT (then SIGKILL) by the parent's PID, which stops the
    workers. With `started`, waits for its "(N workers)" line."""
    port = port or free_port()
    environment = dict(os.environ, PYTHONPATH=str(SOURCE_ROOT), PYTHONUNBUFFERED="1")
    environment.update(env or {})
    cmd = [sys.executable, "-m", "adapters.chat", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*cmd, "--workers", str(count), *args],
        cwd=SOURCE_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    workers = Workers(process, port)
    threading.Thread(target=workers._drain, daemon=True).start()
    try:
        if started:
            assert process.stdout is not None
            line = process.stdout.readline().decode()
            assert f"({count} workers)" in line, (line, workers.log[-2000:])
            threading.Thread(target=process.stdout.read, daemon=True).start()
        yield workers
    finally:
        children = child_pids(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in children:  # (the workers of a parent that had to be killed)
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():  # (still ours: not a reused PID)
                    os.kill(pid, signal.SIGKILL)


def child_pids(pid: int) -> list[int]:
    """The children of our own process `pid` (its workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def legit_shared_chat(server: Server, deadline: float = 1.0, nick: str = "newcomer") -> float:
    """`support.legit_chat` for a chat with Redis: the join is claimed in
    Redis first, so the message waits for the `you`."""
    return _within(deadline, lambda left: _shared_once(server.url, left, nick), server)


def _shared_once(url: str, left: float, nick: str) -> None:
    start = time.monotonic()

    def remaining() -> float:
        return max(0.01, left - (time.monotonic() - start))

    ws = blocking.connect(url, open_timeout=left, close_timeout=1.0, compression=None)
    try:
        welcome = json.loads(ws.recv(timeout=remaining()))
        assert welcome["type"] == "welcome", welcome
        ws.send(json.dumps({"type": "join", "nick": nick}))
        sent = False
        while True:
            event = json.loads(ws.recv(timeout=remaining()))
            assert event["type"] != "error", event
            if event["type"] == "you" and not sent:
                ws.send(json.dumps({"type": "message", "text": "hello after the storm"}))
                sent = True
            if event["type"] == "message" and event["text"] == "hello after the storm":
                assert event["nick"] == nick, event
                return
    finally:
        ws.close_nowait()
