"""Listening sockets (adapters/_listening.py): the same for every backend."""

from __future__ import annotations

import socket

import pytest

from adapters._listening import bind_all, listen


def test_listen_binds_every_address_of_the_host_once() -> None:
    listeners = listen("localhost", 0, reuse_port=False)
    try:
        families = sorted(sock.family for sock in listeners)
        assert socket.AF_INET in families
        assert len(families) == len(set(families))  # no address bound twice
        for sock in listeners:
            assert sock.getblocking() is False
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        for sock in listeners:
            sock.close()


def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    first = listen("127.0.0.1", 0, reuse_port=True)
    port = first[0].getsockname()[1]
    second = listen("127.0.0.1", port, reuse_port=True)
    try:
        assert second[0].getsockname()[1] == port
        assert second[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        for sock in first + second:
            sock.close()


def test_a_family_the_host_lacks_is_skipped_when_others_remain() -> None:
    lacking = (4242, socket.SOCK_STREAM, 0, "", ("x", 0))  # no such family: socket() fails
    v4 = (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", 0))
    listeners = bind_all([lacking, v4], reuse_port=False)
    try:
        assert [sock.family for sock in listeners] == [socket.AF_INET]
    finally:
        for sock in listeners:
            sock.close()
    with pytest.raises(OSError):  # the only family there is: the error is the caller's
        bind_all([lacking], reuse_port=False)


def test_a_failed_bind_closes_what_was_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = listen("127.0.0.1", 0, reuse_port=False)
    port = taken[0].getsockname()[1]
    v4 = (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", 0))
    clash = (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("127.0.0.1", port))
    opened: list[socket.socket] = []
    real_socket = socket.socket

    class Recording(real_socket):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            opened.append(self)

    monkeypatch.setattr(socket, "socket", Recording)
    try:
        with pytest.raises(OSError):
            bind_all([v4, clash], reuse_port=False)
    finally:
        for sock in taken:
            sock.close()
    assert len(opened) == 2
    assert all(sock.fileno() == -1 for sock in opened)
