"""Attacks on what an operator runs next to the chat: /healthz and /metrics,
the refused-handshake counters, X-Forwarded-For, the presence envelopes
between workers, the nicknames held in Redis, --drain and --workers. The
attackers are a hostile peer, a hostile Redis user (anyone who can reach
Redis can PUBLISH on `wschat:room` and SET or DEL any key), a misbehaving
Redis (no EVAL permission, stalled), and an operator's bad day (a worker
killed, the metrics directory deleted or missing).

Each test asserts the correct behaviour. Three found faults, since fixed:
a nick key of another type stopped the refresh of a whole batch (TAKE),
a parent whose workers all failed to start waited for ever, and a deleted
metrics directory broke /metrics for good."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time

import pytest

from adapters import ConnectionClosed, blocking

from .chat_ops_support import (
    health,
    http_get,
    legit_shared_chat,
    redis_server,
    running_workers,
    scrape,
    wait_for,
)
from .support import (
    BACKENDS,
    Member,
    attacked,
    connect_raw,
    legit_chat,
    read_response_head,
    running,
    upgrade_request,
)

backends = pytest.mark.parametrize("backend", BACKENDS)
NO_RATE_LIMIT = ("--rate", "10000", "--burst", "10000")
# Statuses the server itself may refuse a handshake with (none: no answer).
SERVER_STATUSES = {"400", "403", "404", "405", "413", "426", "431", "500", "501", "503", "505"}


def member(url: str, source: str = "127.0.0.1", **options: object) -> Member:
    if source != "127.0.0.1":
        options["local_address"] = (source, 0)
    return Member(url, **options)


def status_of(port: int, request: bytes, source: str = "127.0.0.1") -> int:
    """The status the server answers `request` with (0: none, it closed)."""
    sock = connect_raw(port, source, timeout=0.5)
    try:
        sock.sendall(request)
        with contextlib.suppress(OSError):
            return read_response_head(sock)[0]
        return 0
    finally:
        sock.close()


# -- /metrics and /healthz ------------------------------------------------------


@backends
def test_scrape_flood_and_odd_refusals_leave_the_chat_responsive(backend: str) -> None:
    """Four threads GET /metrics and /healthz (600 requests at most, 1.5 s
    at most) from 127.0.0.2-5 while two people chat: every message is
    delivered within 1 s. Then a hostile peer sends 20 kinds of broken
    upgrade requests: the refused-handshake counter's label set stays
    within the server's own statuses (a peer cannot grow it)."""
    with running("chat", backend, *NO_RATE_LIMIT) as server, attacked(server, legit_chat):
        port = server.port
        alice, bob = member(server.url), member(server.url)
        alice.join("alice")
        bob.join("bob")
        stop = threading.Event()
        answered: list[int] = []

        def flood(source: str) -> None:
            for i in range(150):
                if stop.is_set():
                    return
                with contextlib.suppress(OSError):
                    answered.append(http_get(port, ("/metrics", "/healthz")[i % 2], source)[0])

        floods = [
            threading.Thread(target=flood, args=(f"127.0.0.{n}",), daemon=True)
            for n in (2, 3, 4, 5)
        ]
        for thread in floods:
            thread.start()
        worst = 0.0
        deadline = time.monotonic() + 1.5
        try:
            for i in range(40):
                if time.monotonic() > deadline:
                    break
                sent = time.monotonic()
                alice.send(type="message", text=f"during the flood {i}")
                bob.next_of("message", timeout=2.0, text=f"during the flood {i}")
                worst = max(worst, time.monotonic() - sent)
        finally:
            stop.set()
            for thread in floods:
                thread.join(10)
        assert worst < 1.0, f"a message took {worst:.2f} s during the scrape flood"
        assert answered
        assert set(answered) == {200}, sorted(set(answered))

        # Broken upgrade requests of every kind the parser can name.
        good = upgrade_request(port, "/ws")
        broken = [
            good.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
            good.replace(b"Sec-WebSocket-Key", b"X-Key"),
            good.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
            good.replace(b"HTTP/1.1", b"HTTP/2.0", 1),
            good.replace(b"GET", b"POST", 1),
            good.replace(b"GET", b"BREW", 1),
            good.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
            good.replace(b"Host: ", b"Host: a\r\nHost: "),
            good.replace(b"\r\n\r\n", b"\r\nX: " + b"a" * 70000 + b"\r\n\r\n"),
            good.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\nhello"),
            good.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
            upgrade_request(port, "/ws", origin="http://evil.example"),
            b"GET /ws HTTP/1.1\r\n" + b"X-" + b"a" * 100 + b": b\r\n" * 2000 + b"\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS hello
            b"GET /ws HTTP/9.9\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"\r\n" * 100,
            b"GET /ws HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
            good[:40],  # then the connection ends: no answer
        ]
        for _ in range(1):
            for request in broken:
                with contextlib.suppress(OSError):
                    status_of(port, request)
        time.sleep(1.1)  # (a page is rendered at most once a second)
        samples = scrape(port)
        labels = {
            dict(labels)["status"]
            for (name, labels) in samples
            if name == "wschat_handshake_failures_total"
        }
        assert labels, "no refused handshake was counted"
        assert labels <= SERVER_STATUSES | {"none"}, labels
        total = sum(
            value for (name, _), value in samples.items() if name.startswith("wschat_handshake")
        )
        assert total >= len(broken) // 2, (total, labels)  # (some are plain HTTP: answered)
        alice.close()
        bob.close()


# -- X-Forwarded-For --------------------------------------------------------------


def _held_with_xff(port: int, source: str, values: list[str]) -> list[int]:
    """Open one WebSocket per X-Forwarded-For value from `source` and hold
    them all: the statuses answered."""
    held: list[socket.socket] = []
    statuses = []
    try:
        for value in values:
            sock = connect_raw(port, source, timeout=3)
            held.append(sock)
            sock.sendall(upgrade_request(port, "/ws", extra=[("X-Forwarded-For", value)]))
            statuses.append(read_response_head(sock)[0])
    finally:
        for sock in held:
            sock.close()
    return statuses


@backends
def test_forwarded_for_is_believed_from_trusted_hops_only(backend: str) -> None:
    """--trusted-proxies 127.0.0.1 --max-connections-per-ip 2: an untrusted
    peer (127.0.0.5) cannot spread itself over forged addresses; a trusted
    one's client is the rightmost untrusted entry (the server's own
    address in the header walks on, garbage stops at the proxy); a 60 KB
    header of 6,000 entries costs nothing; the limits of others hold."""
    args = ("--trusted-proxies", "127.0.0.1", "--max-connections-per-ip", "2")
    with running("chat", backend, *args) as server, attacked(server, legit_chat):
        port = server.port
        spoofed = _held_with_xff(port, "127.0.0.5", ["1.1.1.1", "2.2.2.2", "3.3.3.3"])
        assert spoofed == [101, 101, 503], spoofed
        # Behind the trusted proxy, the client can prepend what it likes:
        # the proxy's own entry (the rightmost) decides.
        forged = ["9.9.9.1, 203.0.113.7", "9.9.9.2, 203.0.113.7", "9.9.9.3,203.0.113.7"]
        assert _held_with_xff(port, "127.0.0.1", forged) == [101, 101, 503]
        # Distinct clients behind the proxy: each has its own limit.
        distinct = [f"203.0.113.{n}" for n in range(10, 16)]
        assert _held_with_xff(port, "127.0.0.1", distinct) == [101] * 6
        # Entries that are the trusted proxy itself walk on to the client...
        own = ["198.51.100.9, 127.0.0.1, 127.0.0.1"] * 3
        assert _held_with_xff(port, "127.0.0.1", own) == [101, 101, 503]
        # ... and entries that are not addresses stop at the proxy that wrote them.
        garbage = ["unknown", "<script>", "1.2.3.4.5"]
        assert _held_with_xff(port, "127.0.0.1", garbage) == [101, 101, 503]
        # A huge header: 6,000 entries (the client's, then the proxy's).
        huge = ", ".join(f"10.{n // 250}.{n % 250}.1" for n in range(6000)) + ", 192.0.2.77"
        started = time.monotonic()
        statuses = _held_with_xff(port, "127.0.0.1", [huge, huge, huge])
        assert statuses in ([101, 101, 503], [431, 431, 431]), statuses
        assert time.monotonic() - started < 1.0
        # The forged headers of the untrusted peer did not take 127.0.0.1's slots.
        assert _held_with_xff(port, "127.0.0.1", ["127.0.0.1", "127.0.0.1"]) == [101, 101]


@backends
def test_forwarded_for_rate_limits_follow_the_client(backend: str) -> None:
    """The chat's own rate limits use the same client address: behind the
    trusted proxy, one client (many connections, one XFF address) shares a
    burst; an untrusted peer forging XFF shares its own."""
    args = ("--trusted-proxies", "127.0.0.1", "--rate", "0.2", "--burst", "6")
    with running("chat", backend, *args) as server, attacked(server, legit_chat):
        for source, forwarded in (("127.0.0.1", "198.51.100.4"), ("127.0.0.6", None)):
            delivered = 0
            for i in range(3):
                xff = forwarded or f"192.0.2.{i}"
                ws = blocking.connect(
                    server.url,
                    compression=None,
                    local_address=(source, 0),
                    extra_headers=[("X-Forwarded-For", xff)],
                )
                try:
                    json.loads(ws.recv(timeout=3))  # welcome
                    ws.send(json.dumps({"type": "join", "nick": f"n{source[-1]}x{i}"}))
                    for n in range(5):
                        ws.send(json.dumps({"type": "message", "text": f"m{n}"}))
                    with contextlib.suppress(TimeoutError):
                        while True:
                            event = json.loads(ws.recv(timeout=0.3))
                            delivered += event["type"] == "message"
                finally:
                    ws.close_nowait()
            # 18 messages (joins count) on one burst of 6: most were refused
            assert delivered <= 6, (source, delivered)


# -- a hostile Redis publisher --------------------------------------------------


def _presence(worker: str, **event: object) -> str:
    return json.dumps({"worker": worker, "event": {"type": "presence", **event}})


@backends
def test_forged_presence_stays_bounded(backend: str) -> None:
    """A Redis user publishes 1,500 presence envelopes from 1,500 invented
    workers (each claiming a million people, 20 joins, a million more,
    20 renames), and 200 odd ones (lists of 21, negative or huge counts,
    booleans, 300-character worker names, 200 KB, not UTF-8). A watcher
    gets at most about one presence update a tick, each with at most 20
    names a list and counts within bounds; the room stays usable."""
    with redis_server() as redis:  # noqa: SIM117 (the inner one needs the outer's port)
        with running("chat", backend, "--redis", redis.url(), *NO_RATE_LIMIT) as server:
            wait_for(server, "redis connected")
            with attacked(server, legit_shared_chat):
                watcher = member(server.url)
                watcher.join("watcher")
                names = [f"n{i}" for i in range(20)]
                forged: list[bytes | str] = [
                    _presence(
                        f"fake:{w}",
                        count=1_000_000,
                        joined=names,
                        joined_more=1_000_000,
                        left=names,
                        renamed=[[n, n + "x"] for n in names],
                    )
                    for w in range(1500)
                ]
                odd: list[bytes | str] = [
                    _presence("odd", count=1, joined=[*names, "n20"]),
                    _presence("odd", count=-1),
                    _presence("odd", count=1_000_001),
                    _presence("odd", count=True),
                    _presence("odd", count=1, joined_more=10**30),
                    _presence("odd", count=1, renamed=[["a", "b", "c"]]),
                    _presence("odd", count=1, joined=[{"nick": "a"}]),
                    _presence("x" * 300, count=1),
                    _presence("", count=1),
                    json.dumps({"worker": "odd", "event": {"type": "presence"}, "x": 1}),
                    "[" * 100_000,
                    "x" * 200_000,
                    b"\xff\xfe" * 100,
                    _presence("odd", count=1, joined=["a\u202eb"]),
                ] * 15
                started = time.monotonic()
                redis.publish_all(forged + odd)
                updates = []
                while time.monotonic() - started < 3.0:
                    with contextlib.suppress(TimeoutError):
                        event = watcher.next(timeout=0.5)
                        if event["type"] == "presence":
                            updates.append(event)
                elapsed = time.monotonic() - started
                assert updates, f"the forged presence was not shown: {server.log_tail(10)}"
                assert len(updates) <= elapsed / 1.0 + 2, (len(updates), elapsed)
                for update in updates:
                    for kind in ("joined", "left", "renamed"):
                        assert len(update.get(kind, [])) <= 20, update
                        assert 0 <= update.get(f"{kind}_more", 0) <= 1_000_000, update
                    # (at most 1,024 other workers are counted, a million each)
                    assert 0 <= update["online"] <= 1024 * 1_000_000 + 10, update
                watcher.close()


# -- nicknames in Redis --------------------------------------------------------


def _lookalikes(count: int) -> list[str]:
    """`count` different spellings of "alice" that all fold to it."""
    cyrillic = {"a": "а", "e": "е", "i": "і", "c": "с"}  # noqa: RUF001
    out = []
    for mask in range(1 << 5):
        cased = "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate("alice"))
        out.append(cased)
        for latin, other in cyrillic.items():
            if latin in cased:
                out.append(cased.replace(latin, other, 1))
    return out[:count]


def test_lookalike_race_across_two_workers_has_one_winner() -> None:
    """Two chat processes (asyncio and blocking) share a Redis; 40 clients
    on each, from 80 addresses, join at once with 80 spellings of "alice"
    that fold alike: exactly one gets it. Its worker is then SIGKILLed:
    the name's keys in Redis expire within the TTL (8 s), unrefreshed."""
    names = _lookalikes(80)
    assert len(set(names)) == 80
    with redis_server() as redis:
        url = redis.url()
        with running("chat", "asyncio", "--redis", url) as one:  # noqa: SIM117 (the inner one needs the outer's port)
            with running("chat", "blocking", "--redis", url) as two:
                wait_for(one, "redis connected")
                wait_for(two, "redis connected")
                members = [
                    member((one, two)[i % 2].url, f"127.0.{i // 200 + 1}.{i % 200 + 2}")
                    for i in range(80)
                ]
                for m, name in zip(members, names, strict=True):
                    m.send(type="join", nick=name)
                answers = []
                for m in members:
                    while True:
                        event = m.next(timeout=10)
                        if event["type"] in ("you", "error"):
                            answers.append(event)
                            break
                winners = [i for i, a in enumerate(answers) if a["type"] == "you"]
                assert len(winners) == 1, [answers[i] for i in winners]
                codes = {a.get("code") for a in answers if a["type"] == "error"}
                assert codes == {"nick_taken"}, codes
                pttl = redis.call("PTTL", "wschat:nick:f:alice")
                assert isinstance(pttl, int)
                assert 0 < pttl <= 8000, pttl
                winner = (one, two)[winners[0] % 2]
                os.kill(winner.pid, signal.SIGKILL)  # (before its clients could release it)
                winner.process.wait(5)
                for m in members:
                    m.close()
                time.sleep(2.5)  # (a refresh would have set it back to 8 s)
                pttl = redis.call("PTTL", "wschat:nick:f:alice")
                assert isinstance(pttl, int)
                assert pttl <= 6000, pttl


def _joined(server_url: str, nick: str, source: str = "127.0.0.1") -> Member:
    m = member(server_url, source)
    answer = m.join(nick)
    assert answer == {"type": "you", "nick": nick}, answer
    return m


def test_a_poisoned_nick_key_does_not_stop_the_others_refresh() -> None:
    """A Redis user turns one held name's key (bob's) into a list. The
    other names this worker holds must still be refreshed: zed's keys,
    deleted (as an outage would lose them, or their TTL), are taken again
    at the next refresh."""
    with redis_server() as redis, running("chat", "asyncio", "--redis", redis.url()) as server:
        wait_for(server, "redis connected")
        bob = _joined(server.url, "bob")
        zed = _joined(server.url, "zed")
        # bob is first in the refresh's batch: the script stops at his key.
        redis.pipeline([("DEL", "wschat:nick:f:bob"), ("RPUSH", "wschat:nick:f:bob", "junk")])
        redis.pipeline([("DEL", "wschat:nick:f:zed"), ("DEL", "wschat:nick:c:zed")])
        deadline = time.monotonic() + 4.5  # two refreshes (every 2 s)
        while redis.call("EXISTS", "wschat:nick:f:zed") != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert redis.call("EXISTS", "wschat:nick:f:zed") == 1, "zed's name was not refreshed"
        bob.close()
        zed.close()


@backends
def test_redis_without_eval_permission_keeps_the_chat_usable(backend: str) -> None:
    """Redis's ACL denies the chat's user scripting (-@scripting): every
    claim is refused with NOPERM. Joins and renames are granted locally
    at once (nicknames unique in this process), names still clash here,
    messages flow, and the refusals are logged once, not per join."""
    acl = ("--user", "chat", "on", ">secret", "~*", "&*", "+@all", "-@scripting")
    with redis_server(*acl) as redis:
        url = redis.url("chat", "secret")
        with running("chat", backend, "--redis", url, *NO_RATE_LIMIT) as server:
            wait_for(server, "redis connected")
            with attacked(server, legit_shared_chat):
                people = []
                for i in range(20):
                    started = time.monotonic()
                    people.append(_joined(server.url, f"p{i}", f"127.0.3.{i + 2}"))
                    assert time.monotonic() - started < 1.0
                    people[-1].send(type="join", nick=f"q{i}")
                    assert people[-1].next_of("you", nick=f"q{i}")
                assert member(server.url).join("Q0").get("code") == "nick_taken"
                people[0].send(type="message", text="no scripts here")
                people[1].next_of("message", text="no scripts here")
                status, body = health(server.port)
                assert status == 200, body
                assert body["redis"] == "up", body
                time.sleep(2.2)  # (a refresh, refused too)
                assert server.log.count("redis refused a claim") == 1, server.log_tail(10)
                server.assert_alive()
                for m in people:
                    m.close()


@backends
def test_rename_churn_is_bounded_in_redis(backend: str) -> None:
    """One client renames 300 times as fast as it can, alternating names
    and look-alikes of a name held here: Redis runs a bounded number of
    scripts (the join burst of 20 and 1 a second, a claim and a release
    each, and the refreshes), not one per attempt."""
    with redis_server() as redis:  # noqa: SIM117 (the inner one needs the outer's port)
        with running("chat", backend, "--redis", redis.url(), *NO_RATE_LIMIT) as server:
            wait_for(server, "redis connected")
            holder = _joined(server.url, "holder", "127.0.4.2")
            churner = _joined(server.url, "churn0", "127.0.4.3")
            redis.call("CONFIG", "RESETSTAT")
            started = time.monotonic()
            for i in range(300):
                nick = ("HOLDER", f"churn{i % 2 + 1}", "h0lder")[i % 3]
                churner.send(type="join", nick=nick)
                if time.monotonic() - started > 2.0:
                    break
            with contextlib.suppress(TimeoutError):
                while True:
                    churner.next(timeout=0.5)
            elapsed = time.monotonic() - started
            calls = redis.eval_calls()
            # claims and releases: 2 x (20 + elapsed); refreshes: one a 2 s each
            assert calls <= 2 * (20 + elapsed) + elapsed / 2 + 3, (calls, elapsed)
            holder.close()
            churner.close()


# -- an operator's bad day ---------------------------------------------------------


@backends
def test_sigterm_with_drain_while_clients_flood(backend: str) -> None:
    """--drain 1: two clients flood messages; SIGTERM. /healthz answers 503
    at once while the chat still delivers; then every client gets 1001 and
    the process exits 0 within drain + 5 s."""
    with running("chat", backend, "--drain", "1", *NO_RATE_LIMIT) as server:
        alice, bob = member(server.url), member(server.url)
        alice.join("alice")
        bob.join("bob")
        stop = threading.Event()

        def flood() -> None:
            for i in range(600):
                if stop.is_set():
                    return
                with contextlib.suppress(OSError, ConnectionClosed):
                    alice.send(type="message", text=f"flood {i}")
                time.sleep(0.001)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            status = 200
            while status != 503 and time.monotonic() - started < 0.5:
                status = health(server.port)[0]
            assert status == 503, status
            bob.send(type="message", text="still here")
            alice.next_of("message", timeout=1.0, text="still here")
        finally:
            stop.set()
            flooder.join(5)
        codes = []
        for m in (alice, bob):
            try:
                while True:
                    m.next(timeout=6)
            except ConnectionClosed as closed:
                codes.append(closed.code)
            except TimeoutError:
                codes.append("timeout")
        assert codes == [1001, 1001], codes
        assert server.process.wait(timeout=6) == 0, server.log_tail()


def _series(samples: dict, name: str) -> dict[tuple, float]:  # type: ignore[type-arg]
    return {labels: value for (n, labels), value in samples.items() if n == name}


def test_workers_metrics_after_a_worker_is_sigkilled() -> None:
    """--workers 2: one worker is SIGKILLed; the other's /metrics still
    renders, the dead one's live gauges leave (wschat_redis_up has one
    series, the survivor's), the counters are still there, the chat goes
    on, and SIGINT ends everything with exit 0."""
    with redis_server() as redis, running_workers(2, "--redis", redis.url()) as workers:
        pids = workers.worker_pids(2)
        assert len(pids) == 2, pids
        url = f"ws://127.0.0.1:{workers.port}/ws"
        victim, survivor = sorted(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while f"worker {victim} ended" not in workers.log and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"worker {victim} ended" in workers.log, workers.log[-2000:]
        time.sleep(1.1)  # (a page is rendered at most once a second)
        samples = scrape(workers.port)
        up = _series(samples, "wschat_redis_up")
        assert [dict(labels)["pid"] for labels in up] == [str(survivor)], up
        assert _series(samples, "wschat_messages_received_total"), samples.keys()
        watcher = member(url)  # (the survivor's: the only one left)
        watcher.join("watcher")
        newcomer = member(url)
        newcomer.join("newcomer")
        newcomer.send(type="message", text="after the kill")
        watcher.next_of("message", text="after the kill")
        watcher.close()
        newcomer.close()
        workers.process.send_signal(signal.SIGINT)
        # 1: a worker ended on its own (a supervisor's Restart=on-failure
        # should know); the stop itself went cleanly.
        assert workers.process.wait(timeout=10) == 1, workers.log[-2000:]
        assert "Traceback" not in workers.log, workers.log[-3000:]


def _multiproc_dir(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        env = dict(item.split(b"=", 1) for item in environ.read().split(b"\0") if b"=" in item)
    shared = env[b"PROMETHEUS_MULTIPROC_DIR"].decode()
    assert "wschat-metrics-" in shared, shared  # (wschat's own temporary directory)
    return shared


def test_workers_metrics_survive_the_directory_deleted() -> None:
    """--workers 2, then a tmp cleaner deletes the metrics directory. The
    chat and /healthz go on; /metrics should still answer 200 with the
    worker's series, and 50 scrapes must not log 50 tracebacks."""
    with redis_server() as redis, running_workers(2, "--redis", redis.url()) as workers:
        pids = workers.worker_pids(2)
        assert len(pids) == 2, pids
        shutil.rmtree(_multiproc_dir(min(pids)))
        time.sleep(2.2)  # (ticks: each syncs the metrics)
        assert health(workers.port)[0] == 200
        url = f"ws://127.0.0.1:{workers.port}/ws"
        one, two = member(url), member(url)
        one.join("one")
        one.send(type="message", text="after the rmtree")
        two.next_of("message", text="after the rmtree")
        statuses = {http_get(workers.port, "/metrics")[0] for _ in range(50)}
        one.close()
        two.close()
        tracebacks = workers.log.count("Traceback")
        assert statuses == {200}, statuses
        assert tracebacks <= 2, tracebacks


def test_workers_that_cannot_start_end_the_parent() -> None:
    """Another program holds the port (without SO_REUSEPORT): every worker
    fails to bind. The parent must say so and exit non-zero, not hang."""
    with socket.socket() as squatter, redis_server() as redis:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with running_workers(2, "--redis", redis.url(), started=False, port=port) as workers:
            with contextlib.suppress(Exception):
                workers.process.wait(timeout=15)
            code = workers.process.poll()
            assert code is not None, workers.log[-1500:]
            assert code != 0, (code, workers.log[-1500:])
            assert "before serving" in workers.log


def test_an_unusable_metrics_directory_turns_metrics_off_not_the_chat() -> None:
    """The operator's PROMETHEUS_MULTIPROC_DIR names a directory that is
    not there: the workers serve, and /metrics says why it is off."""
    env = {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/wschat-metrics"}
    with redis_server() as redis, running_workers(2, "--redis", redis.url(), env=env) as workers:
        status, body = http_get(workers.port, "/metrics")
        assert status == 501
        assert b"/nonexistent/wschat-metrics" in body
        assert health(workers.port)[0] == 200
