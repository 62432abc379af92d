"""The server's admission rules, without sockets: counting, limits, and
how accept() failures become delays and log lines."""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket

import pytest

from adapters._admission import (
    MAX_DELAY,
    OVERLOADED,
    AcceptFailures,
    Admission,
    default_connection_cap,
    is_connection_error,
    refuse_overloaded,
)


def test_total_counts_every_socket_and_per_ip_only_admitted_handshakes() -> None:
    admission = Admission(max_connections=3, max_connections_per_ip=1)
    assert admission.arrive()  # two handshakes under way
    assert admission.arrive()
    assert admission.per_ip == {}  # not counted against their address yet
    assert admission.admit("10.0.0.1") is None
    assert admission.admit("10.0.0.1") == "too many connections from your address"
    assert admission.admit("10.0.0.2") is None
    assert admission.arrive()
    assert not admission.arrive()  # the fourth socket is one too many
    admission.release("10.0.0.1")
    admission.release("10.0.0.2")
    for _ in range(3):
        admission.depart()
    assert (admission.total, dict(admission.per_ip)) == (0, {})
    assert admission.admit("10.0.0.1") is None  # its slot came back


def test_no_limits_admit_everyone() -> None:
    admission = Admission()
    for _ in range(1000):
        assert admission.arrive()
        assert admission.admit("10.0.0.1") is None
    assert admission.per_ip["10.0.0.1"] == 1000


def test_a_vanished_peer_is_not_a_resource_episode(caplog: pytest.LogCaptureFixture) -> None:
    failures = AcceptFailures(logging.getLogger("test"))
    for code in (errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNRESET, errno.EPROTO):
        assert is_connection_error(OSError(code, "x"))
        assert failures.failed(OSError(code, "x")) == 0.0
    assert not failures.in_episode
    assert caplog.records == []


def test_a_resource_episode_is_logged_once_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    failures = AcceptFailures(logging.getLogger("test"), clock=lambda: now[0])
    delays = [failures.failed(OSError(errno.EMFILE, "Too many open files")) for _ in range(50)]
    delays.append(failures.failed(RuntimeError("can't start new thread")))
    assert delays[0] < delays[1] < delays[2]
    assert max(delays) == MAX_DELAY  # bounded: clients get in soon after it passes
    assert [r.getMessage() for r in caplog.records] == [
        "server at a resource limit (EMFILE: Too many open files; "
        "new connections wait until it passes)"
    ]
    # Under attack, descriptors come and go: accepts between failures are
    # still the same episode, and nothing more is logged.
    for _ in range(20):
        now[0] += 1.0
        failures.accepted()
        assert failures.failed(OSError(errno.EMFILE, "x")) == delays[0]  # reset by the accept
        failures.refused(100)
    assert len(caplog.records) == 1
    assert failures.in_episode
    now[0] += AcceptFailures.QUIET
    failures.accepted()
    failures.accepted()
    assert caplog.records[-1].getMessage() == (
        "server accepting connections again (91 refused or delayed meanwhile)"
    )
    assert len(caplog.records) == 2
    failures.refused(100)
    assert "100 connections; the excess is answered 503" in caplog.records[-1].getMessage()
    assert failures.episodes == 2


def test_the_default_cap_follows_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert default_connection_cap(threads_per_connection=3) <= 256 - 32
        resource.setrlimit(resource.RLIMIT_NOFILE, (10, hard))
        assert default_connection_cap(threads_per_connection=3) == 1  # never zero
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_default_cap_follows_the_address_space_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    unlimited = default_connection_cap(threads_per_connection=3)
    try:
        # Room for the process as it is, its threads' malloc arenas, and
        # about 30 more 8 MiB stacks.
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * resource.getpagesize()
        arenas = 8 * (os.cpu_count() or 1) * (64 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (used + arenas + (256 << 20), hard))
        capped = default_connection_cap(threads_per_connection=3)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert capped < unlimited
    assert capped <= (256 << 20) // (8 << 20) // 3 + 1


def test_an_overloaded_answer_is_a_503_and_the_socket_stays_the_callers() -> None:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        refuse_overloaded(server.fileno(), None)
        assert server.fileno() >= 0  # not closed under the caller
        received = client.recv(4096)
        assert received == OVERLOADED
        assert received.startswith(b"HTTP/1.1 503 ")
        assert client.recv(4096) == b""  # shut down for writing: the answer is whole
