"""Scaling out through a real redis-server (started here on a free loopback
port): chat processes on different ports share one room and its history,
and survive Redis going away and coming back."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ClassVar

import pytest
import trustme

from adapters import ConnectionClosed
from adapters.chat.resp import Reply, ReplyParser, command

from .helpers import BACKENDS, Chat, Member, running_chat, wait_for_log

# scripts/run-tests installs redis-server; a machine without it fails these
# tests rather than skipping them.
REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_process(
    port: int | None = None, *options: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of our own on a loopback port (with `options`, such as
    --requirepass), and its process (for the tests that stop and continue
    it: that PID only)."""
    assert REDIS is not None, "redis-server is not installed (scripts/run-tests installs it)"
    port = port or free_port()
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
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    answer = probe.recv(64)
                    if answer.startswith((b"+PONG", b"-NOAUTH")):  # (up, with a password)
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port, process
    finally:
        process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        process.terminate()
        process.wait(10)


@contextmanager
def redis_server(port: int | None = None, *options: str) -> Iterator[int]:
    with redis_process(port, *options) as (port, _):
        yield port


def read_log(chat: Chat) -> str:
    """What the chat logged so far (stderr), without waiting for more."""
    assert chat.process.stderr is not None
    fd = chat.process.stderr.fileno()
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    os.set_blocking(fd, True)
    return b"".join(chunks).decode("utf-8", "replace")


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


# -- hostile input and a stalled Redis (issue 9) ---------------------------------------------


class RawRedis:
    """A plain RESP client: anyone who can reach Redis and publish."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.parser = ReplyParser(max_bulk=64 << 20, max_reply=128 << 20)
        self.replies: list[Reply] = []

    def call(self, *args: str | bytes) -> Reply:
        self.sock.sendall(command(*args))
        return self.reply()

    def reply(self) -> Reply:
        while not self.replies:
            data = self.sock.recv(1 << 20)
            assert data, "redis closed the connection"
            self.replies.extend(self.parser.feed(data))
        return self.replies.pop(0)

    def close(self) -> None:
        self.sock.close()


def published_text(subscriber: RawRedis, text: str) -> None:
    """Wait until a chat message with `text` goes through the channel."""
    while True:
        reply = subscriber.reply()
        payload = reply[2] if isinstance(reply, list) and len(reply) == 3 else None
        if isinstance(payload, bytes) and len(payload) < 10_000 and text.encode() in payload:
            return


def say(sender: Member, other: Member, text: str) -> None:
    """`other`, on the same server, gets it within a second; the sender's
    own copy is read too (unread, it would stall the sender's connection)."""
    sender.send(type="message", text=text)
    other.next_of("message", timeout=1.0, text=text)
    sender.next_of("message", text=text)


HOSTILE_EVENTS = [
    b"{not json",
    b'{"worker":"evil","event":{"type":"presence"}}',  # no count
    b'{"worker":"evil","event":{"type":"presence","count":"many"}}',
    b'{"worker":["evil"],"event":{"type":"presence","count":1}}',  # a list as worker id
    b"[" * 100_000 + b"]" * 100_000,  # JSON nested 100,000 deep
    b'{"worker":"evil","event":{"type":"message","nick":"x","text":"'
    + b"a" * (8 << 20)
    + b'"}}',  # 8 MiB
    b"\xff\xfe{}",  # not UTF-8
    b"",
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_events_on_the_channel_do_not_break_the_link(backend: str) -> None:
    with (
        redis_server() as port,
        running_chat(backend, "--redis", f"redis://127.0.0.1:{port}/0") as chat,
    ):
        ann, bob = Member(chat.ws_url), Member(chat.ws_url)
        ann.join("ann")
        bob.join("bob")
        subscriber = RawRedis(port)
        assert isinstance(subscriber.call("SUBSCRIBE", "wschat:room"), list)
        publisher = RawRedis(port)
        for event in HOSTILE_EVENTS:
            assert publisher.call("PUBLISH", "wschat:room", event) == 2  # the chat and us
        for _ in HOSTILE_EVENTS:  # once we have them all, so does the chat
            subscriber.reply()

        say(ann, bob, "still here")
        # Through Redis, not a local fallback: the link is up.
        published_text(subscriber, "still here")
        assert chat.process.poll() is None
        log = read_log(chat)
        assert "redis unavailable" not in log
        assert "Traceback" not in log
        assert log.count("dropped") <= 2  # one line, not one per event
        for client in (subscriber, publisher, ann, bob):
            client.close()


def rss_after_flood(chat: Chat, count: int) -> int:
    """Growth of the chat's RSS (KiB) while one client sends `count` large
    messages (its echoes are read by a thread)."""
    before = chat.rss_kib()
    flooder = Member(chat.ws_url)
    flooder.join("flooder")
    reader = threading.Thread(target=drain_quietly, args=(flooder,), daemon=True)
    reader.start()
    # 8,000 bytes of UTF-8: as large as a message gets.
    message = json.dumps({"type": "message", "text": "\U0001f600" * 2000}, ensure_ascii=False)
    for _ in range(count):
        flooder.ws.send(message)
    flooder.close()
    reader.join(30)
    return chat.rss_kib() - before


def drain_quietly(member: Member) -> None:
    with contextlib.suppress(ConnectionClosed, OSError):
        member.drain()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stalled_redis_is_noticed_and_the_chat_goes_on(backend: str) -> None:
    """Redis stopped with SIGSTOP: its socket stays open and answers
    nothing. The chat must not freeze or buffer without bound, must count
    Redis as down, deliver locally, and come back after SIGCONT."""
    with redis_process() as (port, redis), ExitStack() as stack:
        url = f"redis://127.0.0.1:{port}/0"
        fast = ("--rate", "100000", "--burst", "100000")
        one = stack.enter_context(running_chat(backend, "--redis", url, *fast))
        two = stack.enter_context(running_chat(backend, "--redis", url))
        ann, carl = Member(one.ws_url), Member(two.ws_url)
        ann.join("ann")
        carl.join("carl")
        ann.send(type="message", text="before")
        assert wait_for(carl, "message", text="before")["nick"] == "ann"
        ann.close()
        carl.close()

        redis.send_signal(signal.SIGSTOP)
        try:
            # 3,000 messages of 8 KB: 48 MB of commands for a Redis that
            # takes none. Sending them must not freeze the chat, nor grow it
            # by more than its bounded outbox and some slack.
            growth = rss_after_flood(one, 3000)
            assert growth < 32 * 1024, f"RSS grew by {growth} KiB"
            wait_for_log(one.process, "redis unavailable")
            # Chatting goes on locally, promptly.
            ann, bob = Member(one.ws_url), Member(one.ws_url)
            ann.join("ann")
            bob.join("bob")
            for i in range(5):
                say(ann, bob, f"during {i}")
            assert one.process.poll() is None
            # (Closed now: unread messages would pile up in its queue.)
            bob.close()
        finally:
            redis.send_signal(signal.SIGCONT)
        wait_for_log(one.process, "redis connected")
        # Shared delivery resumes (once the other worker is back too).
        dave = Member(two.ws_url)
        deadline = time.monotonic() + 40
        for i in itertools.count():
            ann.send(type="message", text=f"after {i}")
            ann.next_of("message", text=f"after {i}")  # locally or through Redis
            try:
                dave.next_of("message", timeout=1.5, text=f"after {i}")
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the workers did not reconnect"
        ann.close()
        dave.close()


class FakeRedis:
    """A socket server on a loopback port that answers every connection
    with something no Redis would send, one kind per connection attempt
    (the link opens two connections per attempt)."""

    REPLIES: ClassVar[list[bytes]] = [
        b"*1\r\n" * 5000,  # arrays nested 5,000 deep
        b"\x00\xff\xfegarbage\r\n" * 10,
        b"$99999999999999\r\n",  # a huge bulk length
        b"*3\r\n$7\r\nmessage\r\n",  # an array that never ends
    ]

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.closing = False
        self.threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            reply = self.REPLIES[(self.connections // 2) % len(self.REPLIES)]
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, reply), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket, reply: bytes) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(30)
            while conn.recv(65536):  # whatever it asks
                conn.sendall(reply)
                reply = b""  # then nothing more: an incomplete reply stays so

    def close(self) -> None:
        self.closing = True
        self.listener.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fake_redis_with_hostile_replies(backend: str) -> None:
    fake = FakeRedis()
    try:
        # --redis=URL: running_chat waits for "redis connected" after a
        # separate --redis, which never comes here.
        url = f"redis://127.0.0.1:{fake.port}/0"
        with running_chat(backend, f"--redis={url}", "--rate", "1000", "--burst", "1000") as chat:
            ann, bob = Member(chat.ws_url), Member(chat.ws_url)
            ann.join("ann")
            bob.join("bob")
            deadline = time.monotonic() + 30
            i = 0
            # Every kind of reply, the never-ending one included (noticed
            # when its answer is late), then another attempt.
            while fake.connections < 2 * len(FakeRedis.REPLIES) + 2:
                assert time.monotonic() < deadline, f"{fake.connections} connections"
                say(ann, bob, f"local {i}")
                i += 1
                time.sleep(0.2)
            assert chat.process.poll() is None
            log = read_log(chat)
            assert log.count("redis unavailable") == 1  # once per outage
            assert "Traceback" not in log
            ann.close()
            bob.close()
    finally:
        fake.close()


# -- credentials ------------------------------------------------------------------------

# requirepass for the default user, and an ACL user of its own.
CREDENTIALS = ("--requirepass", "default-pw", "--user", "alice", "on", ">alice-pw", "~*", "&*")
CREDENTIALS += ("+@all",)


def redis_command(port: int, *args: str, auth: tuple[str, ...] = ()) -> Reply:
    """One command on a connection of its own (after AUTH `auth`)."""
    parser = ReplyParser()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if auth:
            sock.sendall(command("AUTH", *auth))
        sock.sendall(command(*args))
        replies: list[Reply] = []
        while len(replies) < (2 if auth else 1):
            data = sock.recv(65536)
            assert data, "redis closed the connection"
            replies += parser.feed(data)
    return replies[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_acl_user_and_the_default_users_password(backend: str) -> None:
    with redis_server(None, *CREDENTIALS) as port:
        for url, auth in [
            (f"redis://alice:alice-pw@127.0.0.1:{port}/0", ("alice", "alice-pw")),
            (f"redis://:default-pw@127.0.0.1:{port}/0", ("default-pw",)),
        ]:
            with running_chat(backend, "--redis", url) as chat:  # (waits for "redis connected")
                member = Member(chat.ws_url)
                member.join("ann")
                member.send(type="message", text=f"through {auth[0]}")
                assert wait_for(member, "message")["text"] == f"through {auth[0]}"
                member.close()
                deadline = time.monotonic() + 10
                while True:  # the history is stored in Redis, so the link is in
                    stored = redis_command(port, "LRANGE", "wschat:history", "0", "-1", auth=auth)
                    assert isinstance(stored, list)
                    if any(f"through {auth[0]}".encode() in item for item in stored):  # type: ignore[operator]
                        break
                    assert time.monotonic() < deadline, stored
                    time.sleep(0.05)
                assert "-pw" not in read_log(chat)  # no password in what it logs


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_password_is_one_clear_line_and_retries(backend: str) -> None:
    with redis_server(None, *CREDENTIALS) as port:
        url = f"redis://alice:wrong@127.0.0.1:{port}/0"
        # (--redis=URL: running_chat does not wait for "redis connected")
        with running_chat(backend, f"--redis={url}") as chat:
            logged = wait_for_log(chat.process, "redis refused the credentials")
            member = Member(chat.ws_url)  # the chat still serves, locally
            member.join("ann")
            member.send(type="message", text="local")
            assert wait_for(member, "message")["text"] == "local"
            member.close()
            time.sleep(2.0)  # some retries (0.25 s, 0.5 s, 1 s ...)
            logged += read_log(chat)
            info = redis_command(port, "INFO", "stats", auth=("default-pw",))
        assert logged.count("redis refused the credentials") == 1
        assert "WRONGPASS" in logged
        assert "Traceback" not in logged
        assert "wrong" not in logged.replace("wrong password", "")
        assert isinstance(info, bytes)
        received = int(info.split(b"total_connections_received:")[1].split(b"\r\n")[0])
        assert received >= 6  # two connections an attempt, and it kept attempting


# -- TLS (rediss://) -----------------------------------------------------------------------


@contextmanager
def tls_redis(tmp: Path, *options: str) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking TLS only, with a certificate for 127.0.0.1
    from a CA made here; its port and the CA's file."""
    assert REDIS is not None, "redis-server is not installed (scripts/run-tests installs it)"
    ca = trustme.CA()
    files = {name: tmp / f"{name}.pem" for name in ("ca", "cert", "key", "client", "client-key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client = ca.issue_cert("wschat-client")
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client-key"]))
    port = free_port()
    command_line = [REDIS, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    command_line += ["--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"])]
    command_line += ["--tls-ca-cert-file", str(files["ca"]), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*command_line, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        context = ssl.create_default_context(cafile=str(files["ca"]))
        context.load_cert_chain(str(files["client"]), str(files["client-key"]))
        deadline = time.monotonic() + 10
        while True:
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as probe,
                ):
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server (TLS) did not start"
            time.sleep(0.05)
        yield port, tmp
    finally:
        process.terminate()
        process.wait(10)


def stored_over_tls(port: int, tmp: Path, auth: tuple[str, ...]) -> list[bytes]:
    context = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
    context.load_cert_chain(str(tmp / "client.pem"), str(tmp / "client-key.pem"))
    parser = ReplyParser()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(command("AUTH", *auth) + command("LRANGE", "wschat:history", "0", "-1"))
        replies: list[Reply] = []
        while len(replies) < 2:
            replies += parser.feed(sock.recv(65536))
    assert isinstance(replies[1], list)
    return replies[1]  # type: ignore[return-value]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rediss_with_a_password_and_a_client_certificate(backend: str, tmp_path: Path) -> None:
    """TLS with the CA given in the URL, AUTH over it, and a client
    certificate that the server requires."""
    with tls_redis(tmp_path, "--tls-auth-clients", "yes", "--requirepass", "pw") as (port, tmp):
        url = (
            f"rediss://:pw@127.0.0.1:{port}/0?ssl_ca_certs={tmp}/ca.pem"
            f"&ssl_certfile={tmp}/client.pem&ssl_keyfile={tmp}/client-key.pem"
        )
        with running_chat(backend, "--redis", url) as chat:  # (waits for "redis connected")
            member = Member(chat.ws_url)
            member.join("ann")
            member.send(type="message", text="over tls")
            assert wait_for(member, "message")["text"] == "over tls"
            member.close()
            deadline = time.monotonic() + 10
            while not any(b"over tls" in item for item in stored_over_tls(port, tmp, ("pw",))):
                assert time.monotonic() < deadline, "the message never reached Redis"
                time.sleep(0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_untrusted_redis_certificate_is_one_clear_line(backend: str, tmp_path: Path) -> None:
    """Without the CA (the system's store does not know it), the link
    refuses the server: one log line, retries, the chat serves locally."""
    with (
        tls_redis(tmp_path, "--tls-auth-clients", "no") as (port, _),
        running_chat(backend, f"--redis=rediss://127.0.0.1:{port}/0") as chat,
    ):
        logged = wait_for_log(chat.process, "redis unavailable")
        member = Member(chat.ws_url)
        member.join("ann")
        member.send(type="message", text="local")
        assert wait_for(member, "message")["text"] == "local"
        member.close()
        time.sleep(1.0)
        logged += read_log(chat)
    assert logged.count("redis unavailable") == 1
    assert "CERTIFICATE_VERIFY_FAILED" in logged
    assert "Traceback" not in logged


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_workers_people_leave_the_count_within_seconds(backend: str) -> None:
    """A worker killed with SIGKILL says no goodbye: the others stop counting
    its people once its announcements stop (PRESENCE_TIMEOUT, 4 s), well
    within `online_seen_by_newcomer`'s 10 s."""
    with (
        redis_server() as port,
        running_chat(backend, "--redis", f"redis://127.0.0.1:{port}/0") as one,
    ):
        redis = ["--redis", f"redis://127.0.0.1:{port}/0"]
        doomed = subprocess.Popen(
            [sys.executable, "-m", "adapters.chat", "--backend", backend, "--port", "0", *redis],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert doomed.stdout is not None
            page = doomed.stdout.readline().split("open ", 1)[1].split()[0]
            wait_for_log(doomed, "redis connected")
            people = [Member(page.replace("http://", "ws://") + "ws") for _ in range(3)]
            assert online_seen_by_newcomer(one, 4) == 4  # ours counts theirs
            doomed.kill()
            doomed.wait(10)
            assert online_seen_by_newcomer(one, 1) == 1
            for member in people:
                with contextlib.suppress(Exception):
                    member.close()
        finally:
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait(10)


# -- one nickname across the workers (issue 13) ---------------------------------------


def try_join(member: Member, nick: str) -> str:
    """Ask for `nick`: "you" if it went through, else the error's code."""
    member.send(type="join", nick=nick)
    while True:
        event = member.next(timeout=10)
        if event["type"] == "you":
            assert event["nick"] == nick
            return "you"
        if event["type"] == "error":
            return str(event["code"])


def join_when_free(member: Member, nick: str, within: float) -> float:
    """Ask for `nick` until it is given (refused as taken meanwhile): how
    long that took."""
    start = time.monotonic()
    while (answer := try_join(member, nick)) != "you":
        # (each refusal spends one of the address's joins: 1 a second after 20)
        assert answer in ("nick_taken", "rate_limited"), answer
        assert time.monotonic() - start < within, f"{nick!r} still taken after {within} s"
        time.sleep(0.5)
    return time.monotonic() - start


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nickname_is_held_across_workers_and_released_on_leaving(backend: str) -> None:
    with redis_server() as port, ExitStack() as stack:
        url = f"redis://127.0.0.1:{port}/0"
        one = stack.enter_context(running_chat(backend, "--redis", url))
        two = stack.enter_context(running_chat(backend, "--redis", url))
        ann, other = Member(one.ws_url), Member(two.ws_url)
        ann.join("ann")
        holder = redis_command(port, "GET", "wschat:nick:f:ann")
        assert isinstance(holder, bytes)
        assert holder.startswith(b"%s:" % socket.gethostname().encode())
        ttl = redis_command(port, "PTTL", "wschat:nick:c:ann")
        assert isinstance(ttl, int)
        assert 0 < ttl <= 8000
        # On the other worker: taken, look-alikes too; another name is fine.
        for nick in ("ann", "ANN", "\u0430nn"):
            assert try_join(other, nick) == "nick_taken"
        assert try_join(other, "bob") == "you"
        # ann renames: her old name is free at once (and her new one taken).
        ann.join("anna")
        assert join_when_free(other, "ann", within=3) < 3
        assert try_join(ann, "ann") == "nick_taken"
        # other (now "ann") leaves: released at once, not at the expiry.
        other.close()
        assert join_when_free(ann, "ann", within=3) < 3
        assert redis_command(port, "GET", "wschat:nick:f:bob") is None
        ann.close()


def test_a_killed_workers_nicknames_are_free_within_their_expiry() -> None:
    """Workers of each backend killed with SIGKILL: the names their people
    held expire in Redis (8 s after the last refresh), so another worker
    gives them out again within that, and not before."""
    with (
        redis_server() as port,
        running_chat("asyncio", "--redis", f"redis://127.0.0.1:{port}/0") as survivor,
    ):
        redis = ["--redis", f"redis://127.0.0.1:{port}/0"]
        doomed: list[subprocess.Popen[str]] = []
        try:
            people = []
            for backend in BACKENDS:
                argv = ["-m", "adapters.chat", "--backend", backend, "--port", "0", *redis]
                process = subprocess.Popen(
                    [sys.executable, *argv],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                doomed.append(process)
                assert process.stdout is not None
                page = process.stdout.readline().split("open ", 1)[1].split()[0]
                wait_for_log(process, "redis connected")
                member = Member(page.replace("http://", "ws://") + "ws")
                member.join(f"held by {backend}")
                people.append(member)
            newcomer = Member(survivor.ws_url)
            for backend in BACKENDS:
                assert try_join(newcomer, f"held by {backend}") == "nick_taken"
            for process in doomed:
                process.kill()
            killed = time.monotonic()
            for process in doomed:
                process.wait(10)
            for backend in BACKENDS:
                join_when_free(newcomer, f"held by {backend}", within=12)
            assert 3 < time.monotonic() - killed < 12  # expired, not released
            for member in people:
                with contextlib.suppress(Exception):
                    member.close()
            newcomer.close()
        finally:
            for process in doomed:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)


# -- presence, coalesced (issue 13) ----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_burst_of_joins_reaches_the_other_worker_in_a_few_updates(backend: str) -> None:
    """15 people join on one worker as fast as they can: a watcher on the
    other worker gets about one presence update a second listing them, not
    one event per join."""
    with redis_server() as port, ExitStack() as stack:
        url = f"redis://127.0.0.1:{port}/0"
        fast = ("--rate", "1000", "--burst", "1000")  # (all from one address)
        one = stack.enter_context(running_chat(backend, "--redis", url, *fast))
        two = stack.enter_context(running_chat(backend, "--redis", url))
        watcher = Member(two.ws_url)
        watcher.join("watcher")
        start = time.monotonic()
        crowd = [Member(one.ws_url) for _ in range(15)]
        for i, member in enumerate(crowd):
            member.join(f"p{i}")
        expected = {f"p{i}" for i in range(15)}
        seen: set[str] = set()
        updates = 0
        while seen != expected:
            event = watcher.next(timeout=10)
            assert event["type"] == "presence", event  # nothing else goes out
            updates += 1
            assert "joined_more" not in event
            seen.update(event.get("joined", []))
            assert seen <= expected | {"watcher"}
            seen.discard("watcher")
        elapsed = time.monotonic() - start
        assert updates <= elapsed + 2, (updates, elapsed)  # one a tick, at most
        assert updates < 10  # (however slow the machine: far fewer than 15 joins)
        for member in [*crowd, watcher]:
            member.close()
