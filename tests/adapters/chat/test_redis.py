"""Scaling out through a real redis-server (started here on a free loopback
port): chat processes on different ports share one room and its history,
and survive Redis going away and coming back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from .helpers import BACKENDS, Chat, Member, running_chat, wait_for_log

# scripts/run-tests installs redis-server; a machine without it fails these
# tests rather than skipping them.
REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(port: int | None = None) -> Iterator[int]:
    assert REDIS is not None, "redis-server is not installed (scripts/run-tests installs it)"
    port = port or free_port()
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def read_log(chat: Chat) -> str:
    """What the chat logged so far (stderr), without waiting for more."""
    assert chat.process.stderr is not None
    os.set_blocking(chat.process.stderr.fileno(), False)
    return chat.process.stderr.read() or ""


def online_seen_by_newcomer(chat: Chat, expected: int) -> int:
    """The `online` of a newcomer's welcome, retried for a few seconds while
    the workers' presence announcements travel."""
    deadline = time.monotonic() + 10
    while True:
        newcomer = Member(chat.ws_url)
        online = int(newcomer.welcome["online"])
        newcomer.close()
        if online == expected or time.monotonic() > deadline:
            return online
        time.sleep(0.2)


def wait_for(member: Member, kind: str, **fields: object) -> dict[str, object]:
    return member.next_of(kind, timeout=15, **fields)


def test_three_backends_share_one_room_and_its_history() -> None:
    with redis_server() as port, ExitStack() as stack:
        url = f"redis://127.0.0.1:{port}/0"
        chats = [stack.enter_context(running_chat(b, "--redis", url)) for b in BACKENDS]
        members = [Member(chat.ws_url) for chat in chats]
        for member, nick in zip(members, ["ann", "bob", "cyd"], strict=True):
            member.join(nick)
        # Each process counts the people of all three (and the newcomer).
        for chat in chats:
            assert online_seen_by_newcomer(chat, 4) == 4
        for sender, nick in zip(members, ["ann", "bob", "cyd"], strict=True):
            sender.send(type="message", text=f"hello from {nick}")
            for member in members:
                assert wait_for(member, "message", nick=nick)["text"] == f"hello from {nick}"
        # A newcomer on any process gets the shared history.
        for chat in chats:
            newcomer = Member(chat.ws_url)
            texts = [m["text"] for m in newcomer.welcome["history"]]
            assert texts == ["hello from ann", "hello from bob", "hello from cyd"]
            newcomer.close()
        for member in members:
            member.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_keep_serving_while_redis_is_away(backend: str) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with ExitStack() as stack:
        redis = ExitStack()
        redis.enter_context(redis_server(port))
        one = stack.enter_context(running_chat(backend, "--redis", url))
        two = stack.enter_context(running_chat(backend, "--redis", url))
        ann, bob = Member(one.ws_url), Member(two.ws_url)
        ann.join("ann")
        bob.join("bob")
        ann.send(type="message", text="before")
        assert wait_for(bob, "message")["text"] == "before"

        redis.close()  # Redis goes away; each worker still serves its own clients
        local = Member(one.ws_url)
        local.join("cyd")
        ann.send(type="message", text="during")
        assert wait_for(local, "message", text="during")["nick"] == "ann"
        assert one.process.poll() is None
        assert two.process.poll() is None

        with redis_server(port):  # back on the same port: they reconnect by themselves
            deadline = time.monotonic() + 40
            while True:  # until both are back: before that, "after" stays local
                ann.send(type="message", text="after")
                try:
                    bob.next_of("message", timeout=1.5, text="after")
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "the workers did not reconnect"
            for member in (ann, bob, local):
                member.close()
        assert "redis unavailable" in read_log(one)


def test_workers_share_one_port_and_one_room() -> None:
    """--workers 2: two processes bound to one port (SO_REUSEPORT), one room
    through Redis; the kernel spreads the connections between them."""
    with redis_server() as redis_port:
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapters.chat",
                "--port",
                str(port),
                "--workers",
                "2",
                "--redis",
                f"redis://127.0.0.1:{redis_port}/0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert "2 workers" in process.stdout.readline()
            wait_for_log(process, "redis connected", count=2)
            members = [Member(f"ws://127.0.0.1:{port}/ws") for _ in range(8)]
            for i, member in enumerate(members):
                member.join(f"m{i}")
            members[0].send(type="message", text="to everyone")
            for member in members:
                assert wait_for(member, "message", text="to everyone")["nick"] == "m0"
            for member in members:
                member.close()
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
