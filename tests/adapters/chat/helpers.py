"""Run the chat as a real process (`python -m adapters.chat`) and talk to it."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from adapters import blocking

BACKENDS = ["asyncio", "trio", "blocking"]


@dataclass
class Chat:
    process: subprocess.Popen[str]
    page: str  # http://127.0.0.1:port/
    stopping: bool = False

    def stop(self) -> None:
        """Ctrl-C, as a person would."""
        self.stopping = True
        self.process.send_signal(signal.SIGINT)

    @property
    def port(self) -> int:
        return int(self.page.rsplit(":", 1)[1].strip("/"))

    @property
    def ws_url(self) -> str:
        return self.page.replace("http://", "ws://") + "ws"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextmanager
def running_chat(backend: str, *args: str, port: int = 0) -> Iterator[Chat]:
    """A chat server on a free loopback port; stopped with SIGINT after,
    which must end it cleanly."""
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.chat", "--backend", backend, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    chat: Chat | None = None
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://\S+", line)
        assert found, (line, process.stderr.read() if process.stderr else "")
        chat = Chat(process, found.group())
        if "--redis" in args:  # ready to share the room only once subscribed
            wait_for_log(process, "redis connected")
        yield chat
    finally:
        if process.poll() is None and not (chat and chat.stopping):
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            log = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the chat did not stop within 20 s; its log:\n{log}") from None
        assert code == 0, process.stderr.read() if process.stderr else code


def wait_for_log(process: subprocess.Popen[str], text: str, count: int = 1) -> str:
    """Read the process's stderr until `text` has appeared `count` times."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + 15
    while seen.count(text) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{text!r} not logged; got {seen!r}"
        # os.read, not readline: a buffered reader could hold the line we
        # wait for while select() waits for more bytes that never come.
        fd = process.stderr.fileno()
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the process ended; it logged {seen!r}"
            seen += chunk.decode("utf-8", "replace")
    return seen


class Member:
    """A chat client on our blocking adapter, reading events as dicts."""

    def __init__(self, url: str, **options: Any) -> None:
        self.ws = blocking.connect(url, **options)
        self.welcome = self.next()
        assert self.welcome["type"] == "welcome"

    def send(self, **event: Any) -> None:
        self.ws.send(json.dumps(event))

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))  # type: ignore[no-any-return]

    def next_of(self, kind: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Skip events until one of `kind` (with these `fields`) comes."""
        while True:
            event = self.next(timeout)
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    def next_presence(self, timeout: float = 10.0, **lists: Any) -> dict[str, Any]:
        """Skip events until a presence update whose lists hold these items
        (`joined="bob"`, `renamed=["bob", "robert"]`)."""
        while True:
            event = self.next_of("presence", timeout)
            if all(item in event.get(kind, []) for kind, item in lists.items()):
                return event

    def drain(self) -> None:
        """Read until the connection closes (raises ConnectionClosed)."""
        while True:
            self.next()

    def join(self, nick: str) -> None:
        self.send(type="join", nick=nick)
        assert self.next_of("you") == {"type": "you", "nick": nick}

    def close(self) -> None:
        self.ws.close()
