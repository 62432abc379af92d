"""Attacks on the echo server (`python -m adapters.echo`) of each backend:
a connect-and-reset storm, descriptor and thread exhaustion, and messages
of a million fragments. After each: the process is alive, a newcomer gets
an echo within a second, and RSS stayed within its bound."""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from .support import (
    BACKENDS,
    RssSampler,
    Server,
    abort,
    attacked,
    connect_raw,
    frame,
    handshake_raw,
    legit_chat,
    legit_echo,
    one_byte_fragments,
    read_message,
    read_response_head,
    reset,
    running,
    scaled,
    upgrade_request,
)

backends = pytest.mark.parametrize("backend", BACKENDS)
MiB = 1 << 20


def addresses() -> Iterator[str]:
    """Attackers' source addresses, 127.0.0.2 to 127.0.0.9, round and round."""
    while True:
        for last in range(2, 10):
            yield f"127.0.0.{last}"


# -- 1. connect-and-reset storm ------------------------------------------------


def reset_storm(server: Server, rounds: int, seconds: float) -> int:
    """Connections that reset (SO_LINGER 0) before sending anything, in the
    middle of the opening request, right after it, and in the middle of a
    frame. Returns how many were made."""
    port = server.port
    request = upgrade_request(port)
    partial_frame = frame(0x2, b"x" * 200)[:50]
    source = addresses()
    made = 0
    deadline = time.monotonic() + seconds

    def attempt(action: str) -> None:
        nonlocal made
        try:
            sock = connect_raw(port, next(source), timeout=2)
        except OSError:
            return  # refused: a dead server shows in the checks after
        made += 1
        try:
            if action == "half request":
                sock.sendall(request[: len(request) // 2])
            elif action == "whole request":
                sock.sendall(request)
            elif action == "mid frame":
                sock.sendall(request)
                status, _ = read_response_head(sock)
                if status == 101:
                    sock.sendall(partial_frame)
        except OSError:
            pass
        finally:
            reset(sock)

    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        # A batch connected, then reset before the server accepts them.
        batch: list[socket.socket] = []
        for _ in range(50):
            with contextlib.suppress(OSError):
                batch.append(connect_raw(port, next(source), timeout=2))
        made += len(batch)
        for sock in batch:
            reset(sock)
        for action in ("half request", "whole request", "mid frame"):
            for _ in range(20):
                attempt(action)
    return made


@backends
def test_connect_and_reset_storm(backend: str) -> None:
    with running("echo", backend) as server:
        with attacked(server, legit_echo):
            made = reset_storm(server, rounds=scaled(3), seconds=5 * scaled(1))
        assert made >= 300


# -- 2. descriptor exhaustion --------------------------------------------------

RESOURCE_LINE = re.compile(
    r"too many open files|emfile|enfile|out of system resource|file descriptor|resource limit",
    re.IGNORECASE,
)


@backends
def test_descriptor_exhaustion(backend: str) -> None:
    """RLIMIT_NOFILE 64; 150 connections held 1.5 s, then released."""
    limits = {resource.RLIMIT_NOFILE: (64, 64)}
    with running("echo", backend, rlimits=limits) as server:
        with attacked(server, legit_echo):
            lines_before = len(server.log.splitlines())
            held: list[socket.socket] = []
            source = addresses()
            for _ in range(scaled(150)):
                try:
                    sock = connect_raw(server.port, next(source), timeout=2)
                    sock.sendall(upgrade_request(server.port))
                except OSError:
                    continue  # the backlog is full: held enough
                held.append(sock)
            time.sleep(1.5)
            for sock in held:
                sock.close()
        assert len(held) > 64
        new_lines = server.log.splitlines()[lines_before:]
        about_limit = [line for line in new_lines if RESOURCE_LINE.search(line)]
        # A few lines an episode (say, one a second while it lasts), not one a connection.
        assert len(about_limit) <= 8, about_limit[:10]
        assert len(new_lines) <= 100, new_lines[:20]


# -- 3. thread exhaustion ------------------------------------------------------

# The blocking server runs two threads a connection (and a writer for
# broadcasts). Root ignores RLIMIT_NPROC, so the address space is limited
# instead: of 2000 MiB, glibc's malloc arenas may take up to 1 GiB (16 of
# 64 MiB on 2 cores), which leaves room for some 120 to 240 stacks of 8 MiB:
# far fewer than the 400 threads that 200 connections would need.
ADDRESS_SPACE = 2000 * MiB


@pytest.mark.parametrize("kind", ["echo", "chat"])
def test_thread_exhaustion_blocking(kind: str) -> None:
    limits = {resource.RLIMIT_AS: (ADDRESS_SPACE, ADDRESS_SPACE)}
    path = "/ws" if kind == "chat" else "/"
    legit = legit_echo if kind == "echo" else legit_chat
    with running(kind, "blocking", rlimits=limits) as server:
        with attacked(server, legit):
            held: list[socket.socket] = []
            source = addresses()
            for _ in range(scaled(200)):
                try:
                    sock = connect_raw(server.port, next(source), timeout=2)
                    sock.sendall(upgrade_request(server.port, path))
                except OSError:
                    continue
                held.append(sock)
            time.sleep(1.0)
            for sock in held:
                sock.close()
        assert len(held) > 100


# -- 5. messages of a million fragments ----------------------------------------

FRAGMENTS = 1_000_000  # one byte each: 7 MB on the wire per message
CONNECTIONS = 4
# A message in assembly should cost about its size: the 1 MB message, its
# echo and their buffers make about 4 MiB a connection (a 1 MB message in
# one frame costs 2-3 MiB here), plus 16 MiB of slack.
FRAGMENT_RSS_MIB = CONNECTIONS * 4 + 16


@backends
def test_million_fragment_messages(backend: str) -> None:
    data = bytes(range(256)) * (FRAGMENTS // 256) + bytes(range(FRAGMENTS % 256))
    wire = one_byte_fragments(data)
    with running("echo", backend, "--no-compression") as server:
        legit_echo(server)
        base = server.rss_kib()
        limit = base + FRAGMENT_RSS_MIB * 1024
        socks = [handshake_raw(server.port, source=f"127.0.0.{2 + i}") for i in range(CONNECTIONS)]
        echoed: dict[int, bool] = {}
        errors: list[str] = []

        def exchange(index: int, sock: socket.socket) -> None:
            sock.settimeout(60)
            try:
                sock.sendall(wire)
                opcode, payload = read_message(sock)
                echoed[index] = opcode == 0x2 and payload == data
            except OSError as error:
                errors.append(f"{index}: {error!r}")

        threads = [
            threading.Thread(target=exchange, args=(i, sock), daemon=True)
            for i, sock in enumerate(socks)
        ]
        with RssSampler(server.pid, interval=0.01) as sampler:
            for thread in threads:
                thread.start()
            # Stop the attack at once if the bound is crossed: no need to
            # wait for (or swap in) the whole of it.
            deadline = time.monotonic() + 30 * scaled(1)
            while any(thread.is_alive() for thread in threads) and sampler.peak <= limit:
                if time.monotonic() > deadline:
                    errors.append("no echo within 30 s")
                    break
                time.sleep(0.02)
            if sampler.peak > limit or errors:
                for sock in socks:
                    abort(sock)
            for thread in threads:
                thread.join(60)
        server.assert_alive()
        growth = (sampler.peak - base) / 1024
        assert sampler.peak <= limit, (
            f"RSS grew by {growth:.0f} MiB (and the attack was cut short) with "
            f"{CONNECTIONS} messages in assembly: over the {FRAGMENT_RSS_MIB} MiB allowed"
        )
        assert echoed == dict.fromkeys(range(CONNECTIONS), True), (echoed, errors)
        for sock in socks:
            sock.close()
        legit_echo(server)
