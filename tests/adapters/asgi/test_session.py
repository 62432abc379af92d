"""Every ASGI WebSocket message, through a real uvicorn with our protocol
class, driven by our three clients and by websockets' and aiohttp's."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.adapters import harness
from wsproto_core import ClientConnection, CloseReceived, State

from .support import CLIENTS, TIMEOUT, Uvicorn, peer, raw_request, refusal

# -- accepted connections ------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_echo_with_subprotocol_and_headers(served: Uvicorn, kind: str) -> None:
    url, _ = served.url("/echo")
    with peer(kind, url, subprotocols=("first", "second")) as ws:
        assert ws.subprotocol == "second"  # the app picked the last one offered
        if kind in ("websockets", "aiohttp"):  # (our clients do not show the headers)
            assert ws.response_headers["x-hello"] == "world"
            assert ws.response_headers["server"] == "uvicorn"
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xff" * 3)
        assert ws.recv() == b"\x00\xff" * 3
        large = bytes(range(256)) * (3 * 4096)  # 3 MiB
        ws.send(large)
        assert ws.recv() == large


@pytest.mark.parametrize("kind", harness.BACKENDS)
def test_fragmented_messages_reach_the_app_whole(served: Uvicorn, kind: str) -> None:
    url, _ = served.url("/echo")
    with peer(kind, url) as ws:
        assert hasattr(ws, "send_fragments")
        ws.send_fragments(["one ", "two ", "three"])
        assert ws.recv() == "one two three"
        ws.send_fragments([b"a" * 70000, b"b" * 5])
        assert ws.recv() == b"a" * 70000 + b"b" * 5


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_clients_close_code_and_reason_reach_the_app(served: Uvicorn, kind: str) -> None:
    url, test_id = served.url("/echo")
    with peer(kind, url) as ws:
        ws.close(4002, "see you")
    seen = served.observed(test_id, "disconnect")
    assert (seen["code"], seen["reason"]) == (4002, "see you")


@pytest.mark.parametrize("kind", CLIENTS)
def test_the_apps_close_code_and_reason_reach_the_client(served: Uvicorn, kind: str) -> None:
    url, test_id = served.url("/close/4001")
    with peer(kind, url) as ws:
        ws.send("done here")
        assert ws.wait_closed() == (4001, "done here")
    served.observed(test_id, "closed")


@pytest.mark.parametrize("kind", CLIENTS)
def test_app_returning_after_accept_closes_cleanly(served: Uvicorn, kind: str) -> None:
    url, _ = served.url("/return-after")
    with peer(kind, url) as ws:
        ws.send("that is all")
        assert ws.wait_closed()[0] == 1000


@pytest.mark.parametrize("kind", CLIENTS)
def test_app_raising_after_accept_closes_with_1011(served: Uvicorn, kind: str) -> None:
    url, _ = served.url("/raise-after")
    with peer(kind, url) as ws:
        ws.send("make it fail")
        assert ws.wait_closed()[0] == 1011
    assert "failing after the accept, on purpose" in served.log_text()


def test_fastapi_parameters_on_a_websocket_route(tmp_path_factory: pytest.TempPathFactory) -> None:
    from .support import uvicorn

    with uvicorn(tmp_path_factory.mktemp("fastapi"), "fastapi_app") as server:
        url, _ = server.url("/fastapi/lobby", nick="ann")
        with peer("asyncio", url) as ws:
            assert ws.recv() == "ann joined lobby"
            assert ws.wait_closed()[0] == 1000


# -- refused connections -------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_denial_response(served: Uvicorn, kind: str) -> None:
    url, _ = served.url("/deny")
    status, body = refusal(kind, url)
    assert status == 401
    if kind != "aiohttp":  # (aiohttp does not show the body)
        assert body == b"go away\n"
    assert '"WebSocket /deny?id=' in served.log_text()


def test_denial_response_in_chunks_has_its_headers_and_length(starlette: Uvicorn) -> None:
    answer = raw_request(starlette.port, "/raw/deny-chunks")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 418 I'm a Teapot" or lines[0].startswith(b"HTTP/1.1 418 ")
    fields = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
    assert fields[b"content-type"] == b"text/plain"
    assert fields[b"content-length"] == b"%d" % len(b"short and stout\n")
    assert fields[b"server"] == b"uvicorn"
    assert body == b"short and stout\n"


@pytest.mark.parametrize("kind", CLIENTS)
def test_close_before_accept_is_403(served: Uvicorn, kind: str) -> None:
    url, test_id = served.url("/refuse")
    assert refusal(kind, url)[0] == 403
    assert f'"WebSocket /refuse?id={test_id}" 403' in served.log_text()


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/raise-before", "Exception in ASGI application"),
        ("/return-before", "ASGI callable returned without completing handshake."),
        ("/raw/return-mid-denial", "ASGI callable returned without completing handshake."),
        ("/raw/accept-handshake-header", "may not set the upgrade header"),
        ("/raw/accept-crlf-header", "invalid header field"),
        ("/raw/accept-unoffered-subprotocol", "was not offered by the client"),
    ],
)
def test_an_app_that_does_not_answer_gets_500(starlette: Uvicorn, path: str, logged: str) -> None:
    before = starlette.log_text().count(logged)
    answer = raw_request(starlette.port, path)
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert answer.endswith(b"\r\n\r\nInternal Server Error")
    assert starlette.log_text().count(logged) > before


def test_accepted_requests_are_logged(starlette: Uvicorn) -> None:
    url, test_id = starlette.url("/echo")
    with peer("blocking", url) as ws:
        ws.send("x")
        ws.recv()
    assert f'"WebSocket /echo?id={test_id}" [accepted]' in starlette.log_text()


# -- what the app is told, and what it may not do ----------------------------------------


def raw_client(server: Uvicorn, path: str) -> tuple[socket.socket, ClientConnection, str]:
    """A socket past the handshake, with our core to speak for it, and the
    test's id: for tests that decide byte by byte what the server gets."""
    url, test_id = server.url(path)
    target = url.split(str(server.port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    core = ClientConnection(f"127.0.0.1:{server.port}", target, ping_interval=None)
    sock.sendall(core.data_to_send())
    while core.state is State.CONNECTING:
        core.receive_data(sock.recv(65536))
    return sock, core, test_id


def events_until_disconnect(server: Uvicorn, test_id: str) -> list[dict[str, Any]]:
    """What /raw/events received, once it has received the disconnect."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        events = [e["message"] for e in server.all_observed(test_id) if e["what"] == "event"]
        if events and events[-1]["type"] == "websocket.disconnect":
            return events
        time.sleep(0.02)
    raise AssertionError("the app saw no disconnect")


def test_a_vanished_client_is_a_disconnect_with_1005(starlette: Uvicorn) -> None:
    sock, core, test_id = raw_client(starlette, "/raw/events")
    with sock:
        core.send_text("one")
        sock.sendall(core.data_to_send())
        starlette.observed(test_id, "event")  # the message arrived
    # gone without a close frame
    assert events_until_disconnect(starlette, test_id) == [
        {"type": "websocket.receive", "text": "one"},
        {"type": "websocket.disconnect", "code": 1005, "reason": ""},
    ]


def test_a_protocol_violation_is_a_disconnect_with_its_code(starlette: Uvicorn) -> None:
    sock, core, test_id = raw_client(starlette, "/raw/events")
    with sock:
        sock.sendall(b"\x81\x02hi")  # a client frame without a mask: 1002
        events = []
        while data := sock.recv(65536):
            events += core.receive_data(data)
    closes = [e for e in events if isinstance(e, CloseReceived)]
    assert closes
    assert closes[0].code == 1002
    final = events_until_disconnect(starlette, test_id)[-1]
    assert final["code"] == 1002
    assert final["reason"] == closes[0].reason != ""  # says what was wrong


def test_sending_after_close_raises_runtime_error(starlette: Uvicorn) -> None:
    url, test_id = starlette.url("/raw/send-after-close")
    with peer("asyncio", url) as ws:
        assert ws.wait_closed() == (4000, "done")
    seen = starlette.observed(test_id, "send after close")
    assert seen["error"] == "RuntimeError"
    assert "after sending 'websocket.close'" in seen["message"]
    # what receive() gave after the app's own close: its own code and reason
    assert seen["after"] == {"type": "websocket.disconnect", "code": 4000, "reason": "done"}


def test_sending_after_disconnect_raises_client_disconnected(starlette: Uvicorn) -> None:
    url, test_id = starlette.url("/raw/send-after-disconnect")
    with peer("trio", url) as ws:
        ws.close(1001, "")
    seen = starlette.observed(test_id, "send after disconnect")
    assert (seen["error"], seen["code"]) == ("ClientDisconnected", 1001)


@pytest.mark.parametrize(
    ("path", "what", "error", "words"),
    [
        ("/raw/wrong-message", "wrong message", "RuntimeError", "but got 'websocket.accept'"),
        ("/raw/bad-send", "bad send", "RuntimeError", "exactly one of 'bytes' and 'text'"),
        ("/raw/wrong-type", "wrong type", "TypeError", "str as 'text' and bytes as 'bytes'"),
    ],
)
def test_a_message_out_of_place_raises(
    starlette: Uvicorn, path: str, what: str, error: str, words: str
) -> None:
    url, test_id = starlette.url(path)
    with peer("blocking", url) as ws:
        ws.wait_closed()
    seen = starlette.observed(test_id, what)
    assert seen["error"] == error
    assert words in seen["message"]


def test_the_subprotocol_may_come_as_a_header(starlette: Uvicorn) -> None:
    url, _ = starlette.url("/raw/accept-via-header")
    with peer("websockets", url, subprotocols=("first", "second")) as ws:
        assert ws.subprotocol == "second"


def test_a_receive_waiting_elsewhere_learns_of_the_apps_close_at_once(
    starlette: Uvicorn,
) -> None:
    """The client never answers the close: the receive that waits in
    another task still returns the app's own close at once, as with
    uvicorn's classes, not at the close timeout (10 s)."""
    sock, _, test_id = raw_client(starlette, "/raw/close-while-receiving")
    with sock:
        seen = starlette.observed(test_id, "receiver", timeout=4)
    assert seen["message"] == {"type": "websocket.disconnect", "code": 4003, "reason": "bye"}
