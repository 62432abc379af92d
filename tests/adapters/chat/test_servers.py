"""The chat server on each backend, as a real process, from the outside."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket

import pytest

from adapters import ConnectionClosed, ConnectionClosedError, HandshakeError, blocking

from .helpers import BACKENDS, Chat, Member, running_chat

backends = pytest.mark.parametrize("backend", BACKENDS)


def get(chat: Chat, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", chat.port, timeout=10)
    connection.request("GET", path)
    return connection.getresponse()


@backends
def test_serves_its_page_and_files(backend: str) -> None:
    with running_chat(backend) as chat:
        response = get(chat, "/")
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/html; charset=utf-8"
        assert "default-src 'self'" in (response.getheader("Content-Security-Policy") or "")
        page = response.read().decode()
        for element in ('id="nick"', 'id="message"', 'id="messages"', 'id="status"', 'id="online"'):
            assert element in page
        script = get(chat, "/chat.js")
        assert script.status == 200
        source = script.read().decode()
        assert "textContent" in source
        assert "innerHTML" not in source
        assert get(chat, "/chat.css").status == 200
        assert get(chat, "/nope").status == 404


@backends
def test_two_people_chat(backend: str) -> None:
    with running_chat(backend, "--history", "2") as chat:
        ann = Member(chat.ws_url)
        ann.join("ann")
        bob = Member(chat.ws_url)
        assert bob.welcome["online"] == 2
        bob.join("bob")
        assert ann.next_presence(joined="bob")["online"] == 2
        for text in ("one", "two", "three"):
            ann.send(type="message", text=text)
            assert bob.next_of("message")["text"] == text
            assert ann.next_of("message", text=text)["nick"] == "ann"
        bob.send(type="join", nick="robert")
        assert ann.next_presence(renamed=["bob", "robert"]) == {
            "type": "presence",
            "online": 2,
            "renamed": [["bob", "robert"]],
        }
        cyd = Member(chat.ws_url)
        assert [m["text"] for m in cyd.welcome["history"]] == ["two", "three"]
        assert cyd.welcome["online"] == 3
        bob.close()
        assert ann.next_presence(left="robert")["online"] == 2
        ann.close()
        cyd.close()


@backends
def test_bad_input_gets_a_visible_notice(backend: str) -> None:
    with running_chat(backend, "--rate", "0.5", "--burst", "3") as chat:
        ann = Member(chat.ws_url)
        ann.send(type="message", text="before joining")
        assert ann.next_of("error")["code"] == "not_joined"
        ann.send(type="join", nick="<img>")
        assert ann.next_of("error")["code"] == "invalid_nick"
        ann.send(type="join", nick="ann")  # the third message of the burst
        assert ann.next_of("you")["nick"] == "ann"
        ann.send(type="message", text="too fast")
        error = ann.next_of("error")
        assert error["code"] == "rate_limited"
        assert error["retry_after"] > 0
        ann.close()


@backends
def test_messages_over_the_size_limit_close_with_1009(backend: str) -> None:
    with running_chat(backend, "--max-message-size", "1000") as chat:
        ann = Member(chat.ws_url)
        ann.send(type="message", text="x" * 2000)
        with pytest.raises(ConnectionClosedError) as closed:
            ann.drain()
        assert closed.value.code == 1009


@backends
def test_origin_is_the_pages_own_by_default(backend: str) -> None:
    with running_chat(backend) as chat:
        own = f"http://127.0.0.1:{chat.port}"
        Member(chat.ws_url, origin=own).close()
        Member(chat.ws_url).close()  # no Origin: not a browser
        with pytest.raises(HandshakeError) as refused:
            Member(chat.ws_url, origin="http://evil.example")
        assert refused.value.status == 403
    with running_chat(backend, "--origins", "https://chat.example") as chat:
        Member(chat.ws_url, origin="https://chat.example").close()
        with pytest.raises(HandshakeError):
            Member(chat.ws_url, origin=f"http://127.0.0.1:{chat.port}")


@backends
def test_per_ip_connection_limit(backend: str) -> None:
    with running_chat(backend, "--max-connections-per-ip", "2") as chat:
        members = [Member(chat.ws_url), Member(chat.ws_url)]
        with pytest.raises(HandshakeError) as refused:
            Member(chat.ws_url)
        assert refused.value.status == 503
        for member in members:
            member.close()


@backends
def test_wrong_path_and_ctrl_c(backend: str) -> None:
    with running_chat(backend) as chat:
        with blocking.connect(chat.ws_url.replace("/ws", "/other")) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.code == 1008
        ann = Member(chat.ws_url)
        chat.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ann.drain()
        assert closed.value.code == 1001


@backends
def test_a_client_that_never_reads_is_dropped_and_delays_no_one(backend: str) -> None:
    """A raw socket joins and never reads while two others chat hard: they
    get every message, the server's memory stays bounded, and the reader
    that fell behind is closed with 1013."""
    with running_chat(backend, "--rate", "100000", "--burst", "100000") as chat:
        stuck = socket.create_connection(("127.0.0.1", chat.port))
        stuck.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        ann = Member(chat.ws_url, compression=None)
        bob = Member(chat.ws_url, compression=None)
        ann.join("ann")
        bob.join("bob")
        baseline = chat.rss_kib()
        text = "x" * 1990  # 6,000 of these: 12 MB to each reader
        received = 0
        online: list[int] = []
        for i in range(6000):
            ann.send(type="message", text=f"{i} {text}")
            while received <= i:  # bob keeps up: he reads as ann sends
                event = bob.next()
                if event["type"] == "message":
                    assert event["text"].startswith(f"{received} ")
                    received += 1
                elif event["type"] == "presence":
                    online.append(event["online"])
            ann.next_of("message")  # and so does ann, who gets her own messages too
        growth = chat.rss_kib() - baseline
        assert received == 6000
        if online[-1:] != [2]:  # presence goes out with the next tick, within 1 s
            bob.next_of("presence", online=2)  # the stuck one was dropped: 3 online, then 2
        assert growth < 6 * 1024, growth  # less than what was sent to each reader
        # The stuck peer can still read the backlog it was allowed (and what
        # the kernels buffered), then the close frame; the server hangs up
        # after close_timeout whether or not it answers.
        stuck.settimeout(30)
        tail = b""
        total = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := stuck.recv(1 << 20):
                total += len(chunk)
                tail = (tail + chunk)[-64:]
        assert total < 6000 * 2000  # cut off: far from everything that was said
        # The close frame comes last: 1013 (0x03f5) and its reason.
        assert tail.endswith(b"\x88\x1d\x03\xf5too slow: messages piled up"), tail
        ann.close()
        bob.close()
        stuck.close()


def test_workers_need_redis() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "adapters.chat", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers needs --redis" in result.stderr


def test_history_is_json_of_messages_only() -> None:
    with running_chat("asyncio") as chat:
        ann = Member(chat.ws_url)
        ann.join("ann")
        ann.send(type="message", text="kept")
        ann.next_of("message")
        newcomer = Member(chat.ws_url)
        assert [json.dumps(m) for m in newcomer.welcome["history"]] == [
            json.dumps(m) for m in newcomer.welcome["history"] if m["type"] == "message"
        ]
        assert newcomer.welcome["history"][0]["text"] == "kept"


@backends
def test_the_longest_text_fits_a_message_however_it_is_escaped(backend: str) -> None:
    """2,000 characters outside the BMP, escaped as JSON's \\uXXXX pairs
    (json.dumps' default), are 24 KB on the wire: within the default
    message size, so the sender gets its text back, not a 1009 close."""
    with running_chat(backend) as chat:
        ann = Member(chat.ws_url)
        ann.join("ann")
        text = "\U0001f600" * 2000
        ann.send(type="message", text=text)
        assert ann.next_of("message")["text"] == text
        ann.close()
