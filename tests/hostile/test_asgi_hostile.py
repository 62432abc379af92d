"""Attacks on uvicorn serving an ASGI app with our protocol class
(`uvicorn tests.hostile.asgi_apps:app --ws adapters.asgi:WebSocketProtocol`):
frames before the app accepts, floods of an app that never receives (plain
and compressed), ping floods, a million fragments, a compression bomb, an
app sending to a client that never reads, reset storms, idle crowds,
slowloris, and apps that raise, misuse the protocol, receive twice at once
or give up waiting. After each: the process is alive, a newcomer gets an
echo within a second, and RSS stayed within its bound; where connections
end, the process holds none of their objects afterwards.

HOSTILE_ASGI_WS picks the `--ws` class (default: ours), so the same
attacks can be aimed at uvicorn's own (`websockets-sansio`, `wsproto`) for
comparison; the marks that expect a failure apply to ours only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsproto_core.frames import is_sendable_close_code

from .asgi_apps import MISUSES, RAISES
from .support import (
    ASGI_OURS,
    RssSampler,
    Server,
    abort,
    attacked,
    connect_raw,
    deflated,
    frame,
    handshake_raw,
    legit_echo,
    live_objects,
    one_byte_fragments,
    read_frame,
    read_message,
    read_response_head,
    reset,
    running_uvicorn,
    scaled,
    text_frame,
    upgrade_request,
)

WS = os.environ.get("HOSTILE_ASGI_WS") or ASGI_OURS
MiB = 1 << 20
NO_MASK = b"\x00\x00\x00\x00"  # valid, and leaves large payloads as they are (fast)
DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate")]
# uvicorn's defaults, which the bounds below are made of
MAX_QUEUE = 32  # --ws-max-queue
MAX_SIZE = 16 * MiB  # --ws-max-size
# What one read of the transport takes at most (asyncio's and uvloop's).
READ_SIZE = 256 * 1024


def uvicorn(*args: str, **options: Any) -> contextlib.AbstractContextManager[Server]:
    return running_uvicorn(WS, *args, **options)


def sources() -> Iterator[str]:
    """Attackers' source addresses, 127.0.0.2 to 127.0.0.9, round and round."""
    while True:
        for last in range(2, 10):
            yield f"127.0.0.{last}"


def observed(server: Server, what: str) -> list[dict[str, Any]]:
    """The app's observations `what` (asgi_apps.observe), from the log."""
    found = []
    for line in server.log.splitlines():
        if line.startswith("OBSERVED "):
            entry = json.loads(line.removeprefix("OBSERVED "))
            if entry["what"] == what:
                found.append(entry)
    return found


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_all_freed(server: Server, baseline: dict[str, int], timeout: float = 3.0) -> None:
    """Every connection has ended: the process holds no more of their
    objects (our class's and uvicorn's) and no more tasks than before."""
    latest: dict[str, int] = {}

    def freed() -> bool:
        latest.update(live_objects(server))
        return all(latest[key] <= baseline[key] for key in baseline)

    assert wait_until(freed, timeout), f"still alive after {timeout} s: {latest} (was {baseline})"


def tracebacks(server: Server) -> int:
    return server.log.count("Traceback (most recent call last)")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used (user + system)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Flood:
    """Sends `wire` over and over on non-blocking sockets from one thread,
    for `seconds` or until the kernel has taken nothing from any of them
    for `settle` seconds while the server was idle (a server busy with
    what it already read may take no more for a while without having
    stopped reading): per socket, the bytes it took, whether it failed,
    and how long before the end it last took anything."""

    def __init__(self, socks: list[socket.socket], wire: bytes, server: Server) -> None:
        self.socks = socks
        self.wire = memoryview(wire)
        self.pid = server.pid
        self.sent = [0] * len(socks)
        self.failed: list[str | None] = [None] * len(socks)
        self.stalled = [0.0] * len(socks)

    def run(self, seconds: float, settle: float = 0.5) -> Flood:
        wire, size = self.wire, len(self.wire)
        offsets = [0] * len(self.socks)
        last = [time.monotonic()] * len(self.socks)
        cpu = [(time.monotonic(), cpu_seconds(self.pid))]
        for sock in self.socks:
            sock.setblocking(False)
        end = time.monotonic() + seconds
        while (now := time.monotonic()) < end:
            if now - cpu[-1][0] >= 0.1:
                cpu.append((now, cpu_seconds(self.pid)))
            live = [s for i, s in enumerate(self.socks) if self.failed[i] is None]
            if not live:
                break
            if all(now - at >= settle for at in last):
                window = [used for at, used in cpu if at >= now - settle]
                if len(window) >= 2 and window[-1] - window[0] < 0.1 * settle:
                    break  # nothing taken, and the server is idle: it stopped reading
            _, writable, _ = select.select([], live, [], min(0.05, end - now))
            for sock in writable:
                i = self.socks.index(sock)
                try:
                    taken = sock.send(wire[offsets[i] :])
                except BlockingIOError:
                    continue
                except OSError as error:
                    self.failed[i] = repr(error)
                    continue
                self.sent[i] += taken
                offsets[i] = (offsets[i] + taken) % size
                last[i] = time.monotonic()
        end = time.monotonic()
        self.stalled = [end - at for at in last]
        return self

    def assert_stopped_reading(self) -> None:
        """The server stopped reading every socket: none failed, and the
        kernel took nothing from any for the last 0.3 s."""
        assert self.failed == [None] * len(self.socks), self.failed
        moving = [
            f"{sent / MiB:.1f} MiB"
            for sent, stalled in zip(self.sent, self.stalled, strict=True)
            if stalled < 0.3
        ]
        assert not moving, f"still being read at the end: {moving}"


def repeated(one: bytes, at_least: int = MiB) -> bytes:
    return one * max(1, at_least // len(one))


def open_upgraded(server: Server, count: int, path: str, **options: Any) -> list[socket.socket]:
    source = sources()
    return [handshake_raw(server.port, path, next(source), **options) for _ in range(count)]


# -- 1. frames before the app accepts ------------------------------------------------


EARLY_CONNECTIONS = 16
EARLY_BYTES = 8 * MiB  # what each would send if it could


def test_frames_before_the_accept_are_bounded() -> None:
    """The app sleeps a second before accepting; 16 clients send their
    upgrade request and then up to 8 MiB of frames at once. The request is
    pending, so those frames wait in the core, which holds 64 KiB and
    refuses the rest: each client gets a 400 (or its connection closed),
    never a 101 after it all was buffered (16 x 8 MiB would be 128 MiB).
    A client that sends a little before the accept is served, its early
    messages included."""
    payload = frame(0x2, bytes(65000), mask=NO_MASK)
    wire = repeated(payload)
    with uvicorn() as server:
        outcomes: list[tuple[int, str]] = []
        with attacked(server, legit_echo):
            request = upgrade_request(server.port, "/late-accept?delay=1")
            source = sources()

            def early(sock: socket.socket) -> None:
                sock.sendall(request)
                time.sleep(0.1)  # uvicorn's HTTP layer drops what comes with the request
                sock.settimeout(0.5)
                sent = 0
                with contextlib.suppress(OSError):
                    while sent < EARLY_BYTES:
                        sock.sendall(wire)
                        sent += len(wire)
                sock.settimeout(3)
                try:
                    status, head = read_response_head(sock)
                    outcomes.append((status, head.split(b"\r\n")[0].decode()))
                except OSError as error:
                    outcomes.append((0, repr(error)))
                finally:
                    sock.close()

            socks = [connect_raw(server.port, next(source)) for _ in range(EARLY_CONNECTIONS)]
            threads = [threading.Thread(target=early, args=(sock,)) for sock in socks]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(15)
        assert len(outcomes) == EARLY_CONNECTIONS
        assert all(status in (0, 400) for status, _ in outcomes), outcomes

        # A little before the accept is fine, and delivered after it.
        sock = connect_raw(server.port)
        sock.sendall(upgrade_request(server.port, "/late-accept?delay=0.3"))
        time.sleep(0.1)
        sock.sendall(text_frame("early 1") + text_frame("early 2"))
        assert read_response_head(sock)[0] == 101
        assert [read_message(sock) for _ in range(2)] == [(1, b"early 1"), (1, b"early 2")]
        sock.close()
        # The refused ones' accepts fail as a disconnect, not as a crash.
        assert wait_until(lambda: len(observed(server, "late accept")) >= EARLY_CONNECTIONS, 3)
        assert {e["error"] for e in observed(server, "late accept")} == {"ClientDisconnected"}


# -- 2. floods of an app that never receives -----------------------------------------

FLOOD_CONNECTIONS = 8


@pytest.mark.parametrize("size", [64 * 1024, MiB], ids=["64KiB", "1MiB"])
def test_flood_of_an_app_that_never_receives(size: int) -> None:
    """8 clients send frames of `size` to an app that accepted and never
    calls receive(), until the server has stopped reading them all (at
    most 4 s). Reading must pause once --ws-max-queue (32) fragments wait:
    each fragment is at most one read of the transport (256 KiB), so a
    connection holds at most 32 x min(size, 256 KiB)."""
    wire = repeated(frame(0x2, bytes(size), mask=NO_MASK))
    per_connection = MAX_QUEUE * min(size, READ_SIZE) / MiB
    allowed = FLOOD_CONNECTIONS * per_connection + 16
    with uvicorn() as server, attacked(server, legit_echo, allowed_mib=allowed):
        socks = open_upgraded(server, FLOOD_CONNECTIONS, "/never-receive")
        flood = Flood(socks, wire, server).run(4 * scaled(1))
        flood.assert_stopped_reading()
        for sock in socks:
            sock.close()


COMPRESSED_MAX_SIZE = 4 * MiB
COMPRESSED_CONNECTIONS = 4


def test_compressed_flood_of_an_app_that_never_receives() -> None:
    """As above, with permessage-deflate and --ws-max-size 4 MiB: each
    client sends 40 messages that are 4 KiB on the wire and 4 MiB once
    inflated (each within the limit), to an app that never receives. What
    the server may hold is about one message in the queue and one being
    inflated per connection (2 x 4 MiB), not --ws-max-queue of them: the
    attacker paid 4 KiB for each."""
    bomb = frame(0x2, deflated(bytes(COMPRESSED_MAX_SIZE - 64)), mask=NO_MASK, rsv1=True)
    allowed = COMPRESSED_CONNECTIONS * 2 * COMPRESSED_MAX_SIZE / MiB + 16
    # A safety net for the machine: the server cannot take more than this.
    limits = {resource.RLIMIT_AS: (3 << 30, 3 << 30)}
    with uvicorn("--ws-max-size", str(COMPRESSED_MAX_SIZE), rlimits=limits) as server:
        legit_echo(server)
        base = server.rss_kib()
        limit = base + allowed * 1024
        socks = open_upgraded(server, COMPRESSED_CONNECTIONS, "/never-receive", extra=DEFLATE)
        with RssSampler(server.pid, interval=0.005) as sampler:
            for sock in socks:
                sock.settimeout(2)
                with contextlib.suppress(OSError):
                    sock.sendall(bomb * 40)
                if sampler.peak > limit:
                    break  # crossed: no need to go on
            time.sleep(0.5)  # what was read is inflated
        for sock in socks:
            abort(sock)
        server.assert_alive()
        legit_echo(server)
        growth = (sampler.peak - base) / 1024
        assert sampler.peak <= limit, f"RSS grew by {growth:.0f} MiB, over {allowed:.0f} MiB"


# -- 3. compression bomb -------------------------------------------------------------

BOMB_SIZE = 64 * MiB  # inflated; about 64 KiB on the wire


def test_compression_bomb_is_refused_with_1009() -> None:
    """A 64 KiB message that inflates to 64 MiB, with --ws-max-size at
    uvicorn's default of 16 MiB: the server closes with 1009 once the
    output passes 16 MiB, having inflated no more than that (the echo app
    holds what came until then). Sent as one frame, then as 16 KiB
    fragments."""
    stream = deflated(bytes(MiB), BOMB_SIZE // MiB)
    whole = frame(0x2, stream, mask=NO_MASK, rsv1=True)
    pieces = [stream[i : i + 16384] for i in range(0, len(stream), 16384)]
    fragmented = b"".join(
        frame(
            0x2 if i == 0 else 0x0,
            piece,
            fin=i == len(pieces) - 1,
            mask=NO_MASK,
            rsv1=i == 0,
        )
        for i, piece in enumerate(pieces)
    )
    # What inflates goes to the app as it comes (it is receiving), up to the
    # limit; the allocator's RSS for those pieces (a slice of input inflates
    # to about 1 MiB) runs to about twice their size.
    allowed = 2 * MAX_SIZE / MiB + 16
    with uvicorn() as server, attacked(server, legit_echo, allowed_mib=allowed, interval=0.005):
        for wire in (whole, fragmented):
            sock = handshake_raw(server.port, "/", extra=DEFLATE)
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.sendall(wire)
            opcode, payload = read_message(sock)
            sock.close()
            assert opcode == 0x8, (opcode, payload[:40])
            assert struct.unpack("!H", payload[:2])[0] == 1009, payload


# -- 4. ping flood from a client that never reads ------------------------------------

PING_CONNECTIONS = 16


@pytest.mark.parametrize(
    "loop",
    ["uvloop", "asyncio"],
)
def test_ping_flood_from_a_client_that_never_reads(loop: str) -> None:
    """16 clients (receive buffer 4 KiB) send 125-byte pings and never read
    the pongs, until the server has stopped reading them all (at most 6 s).
    Once the pongs owed pass the write limit and the transport takes no
    more, it must stop; what it holds meanwhile stays within 32 MiB in all.
    (Until then the kernel's socket buffers take some 4 MiB of pongs a
    connection: that costs the server CPU, not RSS.)"""
    wire = repeated(frame(0x9, b"p" * 125))
    with uvicorn("--loop", loop) as server, attacked(server, legit_echo):
        source = sources()
        socks = []
        for _ in range(PING_CONNECTIONS):
            sock = connect_raw(server.port, next(source))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(upgrade_request(server.port, "/"))
            assert read_response_head(sock)[0] == 101
            socks.append(sock)
        flood = Flood(socks, wire, server).run(6 * scaled(1))
        flood.assert_stopped_reading()
        for sock in socks:
            sock.close()


# -- 5. messages of a million fragments ----------------------------------------------

FRAGMENTS = 1_000_000
FRAGMENT_CONNECTIONS = 4


def test_million_fragment_messages() -> None:
    """As the echo suite's: a 1,000,000-byte message in one-byte fragments
    on 4 connections at once; each echo comes back intact within 30 s and
    RSS stays within 4 x 4 MiB + 16 MiB."""
    data = bytes(range(256)) * (FRAGMENTS // 256) + bytes(range(FRAGMENTS % 256))
    wire = one_byte_fragments(data)
    allowed = FRAGMENT_CONNECTIONS * 4 + 16
    with uvicorn() as server, attacked(server, legit_echo, allowed_mib=allowed) as sampler:
        base = server.rss_kib()
        socks = open_upgraded(server, FRAGMENT_CONNECTIONS, "/")
        echoed: dict[int, bool] = {}
        errors: list[str] = []

        def exchange(index: int, sock: socket.socket) -> None:
            sock.settimeout(30)
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
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30 * scaled(1)
        while any(thread.is_alive() for thread in threads):
            if time.monotonic() > deadline or sampler.peak > base + allowed * 1024:
                break  # the checks after say which
            time.sleep(0.02)
        for sock in socks:
            abort(sock)
        for thread in threads:
            thread.join(5)
        assert echoed == dict.fromkeys(range(FRAGMENT_CONNECTIONS), True), (echoed, errors)


# -- 6. an app that sends to a client that never reads -------------------------------


def test_app_sending_to_a_client_that_never_reads() -> None:
    """8 clients (receive buffer 4 KiB) open /firehose, where the app sends
    64 KiB messages as fast as send() returns, and never read. send() must
    wait once the write buffer is full: RSS stays bounded, and when the
    clients go, each app's send fails with ClientDisconnected after a few
    dozen messages (what the buffers hold), not thousands."""
    with uvicorn() as server:
        with attacked(server, legit_echo):
            source = sources()
            socks = []
            for _ in range(FLOOD_CONNECTIONS):
                sock = connect_raw(server.port, next(source))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(upgrade_request(server.port, "/firehose"))
                socks.append(sock)
            time.sleep(1.5 * scaled(1))
            for sock in socks:
                sock.close()
        assert wait_until(lambda: len(observed(server, "firehose")) >= FLOOD_CONNECTIONS, 3)
        ends = observed(server, "firehose")
        assert {end["error"] for end in ends} == {"ClientDisconnected"}, ends
        assert max(end["sent"] for end in ends) <= 256, ends  # 16 MiB: the buffers, no more


# -- 7. connections reset mid-handshake and mid-frame --------------------------------


def reset_storm(server: Server, path: str, rounds: int) -> int:
    """Connections reset (SO_LINGER 0) before sending anything, halfway
    through the upgrade request, right after it, and in the middle of a
    frame that follows it (sent without waiting for the answer, which may
    not come yet). Returns how many were made."""
    request = upgrade_request(server.port, path)
    partial = frame(0x2, b"x" * 200)[:50]
    source = sources()
    made = 0
    for _ in range(rounds):
        batch = []
        for _ in range(50):
            with contextlib.suppress(OSError):
                batch.append(connect_raw(server.port, next(source), timeout=2))
        for sock in batch:
            reset(sock)
        made += len(batch)
        for cut in (len(request) // 2, len(request), None):
            for _ in range(20):
                try:
                    sock = connect_raw(server.port, next(source), timeout=2)
                except OSError:
                    continue
                made += 1
                with contextlib.suppress(OSError):
                    if cut is None:
                        sock.sendall(request)
                        time.sleep(0.002)
                        sock.sendall(partial)
                    else:
                        sock.sendall(request[:cut])
                reset(sock)
    return made


@pytest.mark.parametrize("path", ["/", "/late-accept?delay=0.2"], ids=["echo", "late-accept"])
def test_connect_and_reset_storm(path: str) -> None:
    """3 rounds of 50 connections reset before the server accepts them and
    20 each reset halfway through the request, after it, and mid-frame; on
    the echo route and on one whose app takes 0.2 s to accept (so the
    resets come while the request is pending). No traceback, and every
    connection's objects are freed after."""
    with uvicorn() as server:
        baseline = live_objects(server)
        with attacked(server, legit_echo):
            made = reset_storm(server, path, scaled(3))
        assert made >= 300
        assert_all_freed(server, baseline)
        assert tracebacks(server) == 0, server.log_tail(30)


# -- 8. idle crowds and slow requests ------------------------------------------------

IDLE_CONNECTIONS = 1000


def test_idle_connections_then_a_newcomer() -> None:
    """1,000 clients complete the handshake and then say nothing; while
    they are held, a newcomer is served within a second, and RSS stays
    within 32 MiB (about 13 KiB each). Then they leave, and are freed."""
    with uvicorn() as server:
        baseline = live_objects(server)
        held: list[socket.socket] = []
        with attacked(server, legit_echo):
            request = upgrade_request(server.port, "/")
            source = sources()
            for _ in range(scaled(IDLE_CONNECTIONS)):
                sock = connect_raw(server.port, next(source))
                sock.sendall(request)
                held.append(sock)
            assert all(read_response_head(sock)[0] == 101 for sock in held)
            legit_echo(server)
            assert live_objects(server)["tasks"] >= baseline["tasks"] + len(held)
            for sock in held:
                sock.close()
        assert_all_freed(server, baseline)


def test_slowloris_upgrade_requests() -> None:
    """200 sockets dribble an upgrade request a byte every 50 ms for 1 s.
    That is uvicorn's HTTP layer's business (it has no deadline for a
    request head: it holds them as long as they dribble), but a newcomer
    must still be served while they are held."""
    with uvicorn() as server, attacked(server, legit_echo):
        request = upgrade_request(server.port, "/")
        source = sources()
        held = [connect_raw(server.port, next(source)) for _ in range(scaled(200))]
        for sent in range(20):
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.send(request[sent : sent + 1])
            time.sleep(0.05)
        legit_echo(server)
        for sock in held:
            sock.close()


# -- 9. what the app does ------------------------------------------------------------


def test_unanswered_requests_whose_clients_leave() -> None:
    """200 clients send an upgrade request to an app that never answers it
    but waits on receive(); the clients leave. Each app's receive() reports
    the disconnect (1006), and every connection is freed."""
    with uvicorn() as server:
        baseline = live_objects(server)
        with attacked(server, legit_echo):
            request = upgrade_request(server.port, "/never-answer")
            source = sources()
            held = [connect_raw(server.port, next(source)) for _ in range(scaled(200))]
            for sock in held:
                sock.sendall(request)
            time.sleep(0.3)
            for sock in held:
                sock.close()
            assert wait_until(lambda: len(observed(server, "never answered")) >= len(held), 3)
        codes = {entry["event"]["code"] for entry in observed(server, "never answered")}
        assert codes == {1006}, codes
        assert_all_freed(server, baseline)


def outcome(sock: socket.socket) -> str:
    """What the client sees after its upgrade request and two messages:
    `HTTP <status>`, `close <code>`, `echoed` (both came back), `silent`
    (nothing for a second) or `dropped` (the connection ended without a
    close frame). Every close frame must be one that may be sent."""
    sock.settimeout(3)
    try:
        status, _ = read_response_head(sock)
        if status != 101:
            return f"HTTP {status}"
        sock.sendall(text_frame("one") + text_frame("two"))
        sock.settimeout(1)
        echoes = 0
        while echoes < 2:
            _, opcode, payload = read_frame(sock)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                assert is_sendable_close_code(code), payload
                assert len(payload) <= 125, payload
                return f"close {code}"
            echoes += 1
        return "echoed"
    except TimeoutError:
        return "silent"
    except (OSError, ConnectionError):
        return "dropped"


# Where the app raises, and what the client must see (our class's answers:
# 500 before the accept, 1011 after it, the app's own close if it came first).
RAISED = {
    "before-connect": "HTTP 500",
    "before-accept": "HTTP 500",
    "mid-denial": "HTTP 500",
    "after-accept": "close 1011",
    "after-message": "close 1011",
    "after-close": "close 4000",
    "after-disconnect": "silent",  # the app waits for the end; the client ends it
    "base-exception": "close 1011",
    "cancelled": "close 1011",
}


def test_app_raising_everywhere() -> None:
    """The app raises before reading the connect event, before the accept,
    in the middle of a denial response, after the accept, after a message,
    after its own close, after the disconnect, and raises SystemExit and
    CancelledError. The server logs each once, answers as RAISED says, and
    frees every connection."""
    assert set(RAISED) == set(RAISES)
    with uvicorn() as server:
        baseline = live_objects(server)
        seen = {}
        with attacked(server, legit_echo):
            for where in RAISES:
                sock = connect_raw(server.port)
                sock.sendall(upgrade_request(server.port, f"/raise/{where}"))
                seen[where] = outcome(sock)
                sock.close()
            assert wait_until(lambda: tracebacks(server) >= len(RAISES), 3)
        assert seen == RAISED
        assert tracebacks(server) == len(RAISES), server.log_tail(40)
        assert_all_freed(server, baseline)


# The close codes and reasons an app may ask for that must not reach the wire.
BAD_CLOSES = [
    "code=1005",
    "code=1006",
    "code=1015",
    "code=999",
    "code=5000",
    "code=4000&reason=124",
]


def test_app_misusing_the_protocol() -> None:
    """Messages out of order (a send before the accept, two accepts, an
    unknown type, a send and a close after the close, a denial body after
    the accept, status 101, wrong value types, a header with CRLF) and close
    codes or reasons that may not be sent. What the app sends wrongly
    raises in the app (which goes on, and is served); nothing invalid
    reaches the wire (`outcome` checks every close frame); every connection
    is freed."""
    with uvicorn() as server:
        baseline = live_objects(server)
        seen = {}
        with attacked(server, legit_echo):
            for what in MISUSES:
                sock = connect_raw(server.port)
                sock.sendall(upgrade_request(server.port, f"/misuse/{what}"))
                seen[what] = outcome(sock)
                sock.close()
            for query in BAD_CLOSES:
                sock = connect_raw(server.port)
                sock.sendall(upgrade_request(server.port, f"/close?{query}"))
                seen[query] = outcome(sock)
                sock.close()
            sock = connect_raw(server.port)
            sock.sendall(upgrade_request(server.port, "/close?code=4000&reason=123"))
            assert outcome(sock) == "close 4000"  # the longest reason that fits
            sock.close()
        assert wait_until(lambda: len(observed(server, "misuse")) >= 12, 3)
        errors = {entry["misuse"] for entry in observed(server, "misuse") if entry["error"]}
        assert errors == set(MISUSES), errors
        for query in BAD_CLOSES:
            assert seen[query] in ("close 1011", "dropped"), (query, seen[query])
        # Each misuse is refused in the app, which then closes or echoes.
        assert all(seen[what] in ("echoed", "close 4001") for what in MISUSES), seen
        assert_all_freed(server, baseline)


def test_receive_called_twice_at_once() -> None:
    """The app calls receive() twice at once (asyncio.gather), as an app
    with a task watching for the disconnect may; the client sends two
    messages. As with uvicorn's own classes, each call gets one of them,
    and the connection goes on."""
    with uvicorn() as server, attacked(server, legit_echo):
        sock = handshake_raw(server.port, "/double-receive")
        time.sleep(0.2)  # both calls are waiting
        sock.sendall(text_frame("one") + text_frame("two"))
        sock.settimeout(3)
        got = {read_message(sock)[1] for _ in range(2)}
        assert got == {b"one", b"two"}
        sock.close()
        assert wait_until(lambda: bool(observed(server, "double receive")), 3)
        entry = observed(server, "double receive")[0]
        assert isinstance(entry["second"], dict), entry


def test_impatient_receive_keeps_the_message_whole() -> None:
    """The app waits for each message with a 20 ms timeout (each expiry
    cancels its receive()), while a client sends a 1 MiB message in 16
    fragments 50 ms apart, then a second one: both arrive whole, nothing
    is lost between the cancelled calls, and the client gets their sizes."""
    data = bytes(range(256)) * 4096
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    with uvicorn() as server, attacked(server, legit_echo):
        sock = handshake_raw(server.port, "/impatient")
        sock.settimeout(5)
        for _ in range(2):
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                sock.sendall(frame(0x2 if i == 0 else 0x0, piece, fin=last, mask=NO_MASK))
                time.sleep(0.05)
            assert read_message(sock) == (0x1, f"{len(data)} {hash_of(data)}".encode())
        sock.close()
        assert observed(server, "impatient")[0]["timeouts"] > 10


def hash_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
