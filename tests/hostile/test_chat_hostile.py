"""Attacks on the chat (`python -m adapters.chat`) of each backend: slow
handshakes, text that is JSON but not Unicode, reconnect floods, look-alike
nicknames, deep JSON, DNS rebinding, and (blocking) a client that never
reads. After each: the process is alive, a newcomer joins and sees its own
message within a second, and RSS stayed within its bound."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import pytest

from adapters import ConnectionClosed

from .support import (
    BACKENDS,
    Member,
    Server,
    attacked,
    close_frame,
    connect_raw,
    handshake_raw,
    legit_chat,
    read_message,
    read_response_head,
    reset,
    running,
    scaled,
    text_frame,
    upgrade_request,
)

backends = pytest.mark.parametrize("backend", BACKENDS)


# For the tests that are not about the rate limit: every client of theirs
# comes from 127.0.0.1, and the limit may well be counted by address.
NO_RATE_LIMIT = ("--rate", "10000", "--burst", "10000")


def probe(member: Member, text: str) -> list[str]:
    """Send `text` and read until it comes back; what went wrong, if anything."""
    try:
        member.send(type="message", text=text)
        while True:
            event = member.next()
            if event["type"] == "message" and event["text"] == text:
                return []
            if event.get("code") == "rate_limited":
                return [f"was rate-limited: {event}"]
    except ConnectionClosed as closed:
        return [f"closed with {closed.code} {closed.reason!r}"]
    except TimeoutError:
        return ["no answer within 5 s"]


def no_traceback(server: Server) -> None:
    assert "Traceback" not in server.log, server.log_tail(30)


# -- 4. slowloris handshakes ---------------------------------------------------


@backends
def test_slowloris_handshakes_do_not_lock_out_newcomers(backend: str) -> None:
    """40 sockets from 127.0.0.1 itself (twice the per-IP limit of 20) and
    100 from other addresses: a third send nothing, the others dribble an
    opening request a byte at a time. While they are held, a newcomer from
    127.0.0.1 joins within a second."""
    with running("chat", backend) as server:
        request = upgrade_request(server.port, "/ws")
        held: list[socket.socket] = []
        with attacked(server, legit_chat):
            for i in range(scaled(140)):
                source = "127.0.0.1" if i < 40 else f"127.0.0.{2 + i % 8}"
                with contextlib.suppress(OSError):
                    held.append(connect_raw(server.port, source))
            dribblers = [sock for i, sock in enumerate(held) if i % 3]
            stop = threading.Event()

            def dribble() -> None:
                sent = 0
                while not stop.wait(0.05) and sent < len(request) - 4:
                    for sock in dribblers:
                        with contextlib.suppress(OSError):
                            sock.send(request[sent : sent + 1])
                    sent += 1

            dribbler = threading.Thread(target=dribble, daemon=True)
            dribbler.start()
            try:
                time.sleep(1.0)  # the server has seen them all and is waiting for more
                legit_chat(server, nick="while-held")
                server.assert_alive()
            finally:
                stop.set()
                dribbler.join()
            for sock in held:
                sock.close()
        assert len(held) >= scaled(140), len(held)


# -- 6. JSON that is not Unicode text -----------------------------------------

# Each is valid JSON (and, as a WebSocket text message, valid UTF-8: the
# escapes are ASCII), but decodes to a string that is not Unicode text.
NOT_TEXT = {
    "lone high surrogate": r'{"type":"message","text":"\ud800"}',
    "lone low surrogate": r'{"type":"message","text":"x\udc00y"}',
    "reversed pair": r'{"type":"message","text":"\udc00\ud800"}',
    "noncharacters": r'{"type":"message","text":"a\uffff\ufffe\ufdd0b"}',
    "C0 controls": r'{"type":"message","text":"a\u0000b\u001b[31mc\u0007"}',
    "bidi override": r'{"type":"message","text":"\u202eevil\u202c done"}',
    "surrogate in a nick": r'{"type":"join","nick":"eve\ud800"}',
    "lone low surrogate nick": r'{"type":"join","nick":"\udfff"}',
}


@backends
def test_json_that_is_not_unicode_text(backend: str) -> None:
    """The sender is not closed with 1011 (it may get an error), a watcher
    stays, and a newcomer's welcome (the history) still arrives."""
    with running("chat", backend, *NO_RATE_LIMIT) as server, attacked(server, legit_chat):
        watcher = Member(server.url)
        watcher.join("watcher")
        problems: list[str] = []
        for i, (name, raw) in enumerate(NOT_TEXT.items()):
            nick = f"sender{i}"
            try:
                sender = Member(server.url)
                assert sender.join(nick) == {"type": "you", "nick": nick}
            except ConnectionClosed as closed:
                problems.append(f"{name}: a newcomer got {closed.code} {closed.reason!r}")
                continue
            sender.send_raw(raw)
            problems += [f"{name}: the sender {p}" for p in probe(sender, f"after {i}")]
            sender.close()
            try:
                Member(server.url).close()
            except ConnectionClosed as closed:
                problems.append(f"{name}: then a newcomer got {closed.code} {closed.reason!r}")
        try:
            watcher.send(type="message", text="still here")
            watcher.next_of("message", text="still here")
        except ConnectionClosed as closed:
            problems.append(f"the watcher was closed with {closed.code}")
        assert not problems, problems
        watcher.close()


# -- 7. reconnect flood against the rate limit ---------------------------------

RATE, BURST = 2.0, 5


@backends
def test_reconnect_flood_is_rate_limited_by_address(backend: str) -> None:
    """One address (127.0.0.2) connects, joins, says 5 things and leaves,
    up to 100 times in 2 s. A watcher counts what reaches it: messages
    within what the address's rate allows (burst + rate x duration, with
    slack), and joined/left/presence events bounded too, not some per
    reconnect."""
    with running("chat", backend, "--rate", str(RATE), "--burst", str(BURST)) as server:
        with attacked(server, legit_chat):
            watcher = Member(server.url)
            watcher.join("watcher")
            seen: Counter[str] = Counter()
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    try:
                        event = watcher.next(timeout=0.2)
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        return
                    nick = str(event.get("nick", ""))
                    kind = event["type"]
                    if kind == "presence" or nick.startswith("spam"):
                        seen[kind] += 1

            reader = threading.Thread(target=watch, daemon=True)
            reader.start()
            start = time.monotonic()
            connections = 0
            count, seconds = scaled(100), 2.0 * scaled(1)
            while connections < count and time.monotonic() - start < seconds:
                # Paced over the 2 s, so the rate limit's refill counts too.
                time.sleep(max(0.0, start + connections * seconds / count - time.monotonic()))
                connections += 1
                flood_once(server, connections)
            duration = time.monotonic() - start
            time.sleep(1.0)  # what was let through reaches the watcher
            stop.set()
            reader.join()
            watcher.close()
        allowed = BURST + RATE * duration + 3
        assert connections >= 20, connections
        assert seen["message"] <= allowed, (seen, connections, duration)
        room_events = seen["joined"] + seen["left"] + seen["presence"]
        assert room_events <= 3 * allowed, (seen, connections, duration)


def flood_once(server: Server, index: int) -> None:
    """Connect from 127.0.0.2, join, send 5 messages, close, and read until
    the server hangs up (so it has handled all of it)."""
    try:
        sock = connect_raw(server.port, "127.0.0.2", timeout=2)
    except OSError:
        return
    try:
        sock.sendall(upgrade_request(server.port, "/ws"))
        status, _ = read_response_head(sock)
        if status != 101:
            return
        burst = [json.dumps({"type": "join", "nick": f"spam{index}"})]
        burst += [json.dumps({"type": "message", "text": f"spam {index}.{j}"}) for j in range(5)]
        sock.sendall(b"".join(text_frame(text) for text in burst) + close_frame())
        while read_message(sock)[0] != 0x8:
            pass
    except (OSError, ConnectionError):
        pass
    finally:
        sock.close()


# -- 8. look-alike nicknames -----------------------------------------------------

LOOK_ALIKES = {
    "Cyrillic a": "\u0430lice",
    "combining grapheme joiner": "alice\u034f",
    "variation selector 16": "alice\ufe0f",
    "fullwidth": "\uff41\uff4c\uff49\uff43\uff45",
    "upper case": "ALICE",
    "zero-width space": "ali\u200bce",
    "only combining marks": "\u0301\u0302\u0303",
}


@backends
def test_look_alike_nicknames_are_refused(backend: str) -> None:
    with running("chat", backend, *NO_RATE_LIMIT) as server, attacked(server, legit_chat):
        alice = Member(server.url)
        assert alice.join("alice")["type"] == "you"
        composed = Member(server.url)  # é as one code point
        assert composed.join("alic\u00e9")["type"] == "you"
        attempts = {**LOOK_ALIKES, "e + combining acute vs é": "alic\u0065\u0301"}
        accepted: dict[str, Any] = {}
        for name, nick in attempts.items():
            mallory = Member(server.url)
            answer = mallory.join(nick)
            if not (answer["type"] == "error" and answer["code"] in ("nick_taken", "invalid_nick")):
                accepted[name] = answer
            mallory.close()
        assert not accepted, accepted
        # An honest nick still gets through.
        alicia = Member(server.url)
        assert alicia.join("alicia")["type"] == "you"
        alicia.close()
        alice.close()
        composed.close()


# -- 9. deeply nested JSON -------------------------------------------------------

DEEP = {
    "arrays 1,000 deep": "[" * 1000 + "]" * 1000,
    "objects 1,000 deep": '{"a":' * 1000 + "1" + "}" * 1000,
    "a message whose text is 1,000 deep": (
        '{"type":"message","text":' + "[" * 1000 + "]" * 1000 + "}"
    ),
    "arrays 5,000 deep": "[" * 5000 + "]" * 5000,
}


@backends
def test_deeply_nested_json_gets_an_error(backend: str) -> None:
    with running("chat", backend, *NO_RATE_LIMIT) as server, attacked(server, legit_chat):
        sender = Member(server.url)
        assert sender.join("deep")["type"] == "you"
        problems: list[str] = []
        for name, raw in DEEP.items():
            try:
                sender.send_raw(raw)
                answer = sender.answer()
                if answer["type"] != "error":
                    problems.append(f"{name}: {answer}")
            except ConnectionClosed as closed:
                problems.append(f"{name}: closed with {closed.code} {closed.reason!r}")
                break
            except TimeoutError:
                problems.append(f"{name}: no answer")
        else:
            problems += probe(sender, "still here")
        assert not problems, problems
        no_traceback(server)
        sender.close()


# -- 10. DNS rebinding ---------------------------------------------------------


def handshake_status(server: Server, host: str, origin: str | None) -> int:
    sock = connect_raw(server.port)
    try:
        sock.sendall(upgrade_request(server.port, "/ws", host=host, origin=origin))
        status, _ = read_response_head(sock)
        return status
    finally:
        reset(sock)


@backends
def test_dns_rebinding_is_refused(backend: str) -> None:
    """A page from evil.example whose name now points at 127.0.0.1 sends
    Host and Origin that match each other, but are not the server's."""
    with running("chat", backend) as server, attacked(server, legit_chat):
        port = server.port
        own = f"127.0.0.1:{port}"
        assert handshake_status(server, own, f"http://{own}") == 101
        statuses = {
            host: handshake_status(server, host, f"http://{host}")
            for host in (
                f"evil.example:{port}",
                "evil.example",
                f"attacker.127.0.0.1.nip.io:{port}",
            )
        }
        assert statuses == dict.fromkeys(statuses, 403), statuses


# -- 11. a blocking-chat client that never reads ------------------------------


def _join_without_reading(server: Server, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(upgrade_request(server.port, "/ws"))
    status, head = read_response_head(sock)
    assert status == 101, head
    sock.sendall(text_frame(json.dumps({"type": "join", "nick": "stuck"})))
    return sock


def test_blocking_chat_frees_a_client_that_never_reads() -> None:
    """It is cut off once its buffer fills (1013; the room says it left:
    reading its socket to see the close frame would unstick it); then the server's threads
    and descriptors return to their baseline within close_timeout (10 s) and
    a bit, and its address's slot is free again (--max-connections-per-ip 2:
    two new clients from that address get in at once)."""
    args = ("--rate", "100000", "--burst", "100000", "--max-connections-per-ip", "2")
    with running("chat", "blocking", *args) as server, attacked(server, legit_chat):
        ann = Member(server.url)
        assert ann.join("ann")["type"] == "you"
        time.sleep(0.3)  # the first newcomer's threads are gone
        threads, fds = server.threads(), server.fds()
        stuck = _join_without_reading(server, "127.0.0.3")
        while "stuck" not in ann.next_of("presence").get("joined", []):
            pass
        text = "x" * 1990
        dropped = False
        deadline = time.monotonic() + 15
        sent = received = 0
        while not dropped and time.monotonic() < deadline:
            for _ in range(50):
                ann.send(type="message", text=f"{sent} {text}")
                sent += 1
            while received < sent or not dropped:  # ann reads what she sent, and who left
                try:
                    event = ann.next(timeout=5 if received < sent else 0.001)
                except TimeoutError:
                    break
                received += event["type"] == "message"
                dropped |= event["type"] == "presence" and "stuck" in event.get("left", [])
        assert dropped, f"the stuck client was not dropped after {sent} messages"
        # Its threads (handler, reader, writer, closer) and its descriptors go.
        settle = time.monotonic() + 15
        while time.monotonic() < settle:
            if server.threads() <= threads + 1 and server.fds() <= fds + 1:
                break
            time.sleep(0.2)
        now = server.threads(), server.fds()
        after = f"{now[0]} threads (were {threads}), {now[1]} descriptors (were {fds}) after 15 s"
        assert now[0] <= threads + 1, after
        assert now[1] <= fds + 1, after
        # Its slot is free: two more clients from 127.0.0.3 get in.
        again = [handshake_raw(server.port, "/ws", source="127.0.0.3") for _ in range(2)]
        for sock in again:
            sock.close()
        stuck.close()
        ann.close()
