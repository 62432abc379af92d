"""/healthz and /metrics: unit tests of the monitor, then scraped over HTTP
from real chat processes on every backend while people chat (and with two
workers sharing a port, through a real redis-server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters import ConnectionClosed, HandshakeError, blocking
from adapters._running import SIGNAL_ECHO
from adapters.chat.monitor import Monitor
from wsproto_core import Headers, HttpRequest

from .helpers import BACKENDS, Member, running_chat, wait_for_log
from .test_redis import free_port, redis_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    """The samples of a Prometheus text page, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET on loopback: status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), headers, body


def scrape(port: int) -> Samples:
    status, headers, body = get(port, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=")
    return samples_of(body.decode())


def request(path: str, method: str = "GET") -> HttpRequest:
    return HttpRequest(method=method, target=path, path=path, query="", headers=Headers(), body=b"")


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- the monitor alone -----------------------------------------------------------------------


def test_health_is_200_while_serving_and_503_once_draining() -> None:
    monitor = Monitor("trio", "w1", redis=False)
    response = monitor.http_handler(request("/healthz"))
    assert response.status == 200
    assert json.loads(response.body) == {
        "status": "serving",
        "backend": "trio",
        "worker": "w1",
        "connections": 0,
        "redis": "off",
        "redis_sessions": 0,
    }
    monitor.begin_drain()
    response = monitor.http_handler(request("/healthz"))
    assert response.status == 503
    assert json.loads(response.body)["status"] == "draining"


def test_other_paths_and_methods_are_the_pages() -> None:
    monitor = Monitor("asyncio", "w1", redis=False)
    assert monitor.http_handler(request("/")).status == 200
    assert monitor.http_handler(request("/healthz", "POST")).status == 404
    assert monitor.http_handler(request("/metrics/x")).status == 404


def test_counters_are_added_once_however_often_they_are_synced() -> None:
    monitor = Monitor("asyncio", "w1", redis=True)
    monitor.counters.messages_in = 3
    monitor.counters.slow_drops = 1
    monitor.stats.refused(400)
    monitor.stats.refused(monitor.stats.TIMED_OUT)
    monitor.sync()
    monitor.sync()  # (the ticker's, then a scrape's: nothing grew between)
    samples = samples_of(monitor.http_handler(request("/metrics")).body.decode())
    assert samples[("wschat_messages_received_total", ())] == 3
    assert samples[("wschat_slow_consumer_drops_total", ())] == 1
    assert samples[("wschat_handshake_failures_total", (("status", "400"),))] == 1
    assert samples[("wschat_handshake_failures_total", (("status", "timeout"),))] == 1
    assert samples[("wschat_redis_up", ())] == 0  # nothing attached: no link up
    monitor.counters.messages_in = 5
    samples = samples_of(monitor.http_handler(request("/metrics")).body.decode())
    assert samples[("wschat_messages_received_total", ())] == 3  # the page of a moment ago
    monitor.metrics_max_age = 0.0
    samples = samples_of(monitor.http_handler(request("/metrics")).body.decode())
    assert samples[("wschat_messages_received_total", ())] == 5


def test_without_redis_there_is_no_redis_metric() -> None:
    samples = samples_of(Monitor("asyncio", "w1", redis=False)._metrics().body.decode())
    assert not [name for name, _ in samples if name.startswith("wschat_redis")]
    assert samples[("wschat_connections", (("backend", "asyncio"),))] == 0


# -- a real chat, scraped ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_metrics_follow_a_conversation(backend: str) -> None:
    with running_chat(backend, "--burst", "4", "--rate", "0.1") as chat:
        status, headers, body = get(chat.port, "/healthz")
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["status"] == "serving"
        assert json.loads(body)["backend"] == backend
        alice, bob = Member(chat.ws_url), Member(chat.ws_url)
        alice.join("alice")
        bob.join("bob")
        alice.send(type="message", text="héllo")
        assert bob.next_of("message")["text"] == "héllo"
        assert alice.next_of("message")["text"] == "héllo"
        # The limit is per address (both are 127.0.0.1): two joins, "héllo"
        # and one "x" spend the burst of 4, and 3 are refused.
        for _ in range(4):
            alice.send(type="message", text="x")
        assert alice.next_of("error")["code"] == "rate_limited"
        with pytest.raises(HandshakeError):
            blocking.connect(chat.ws_url, origin="https://evil.example")
        assert json.loads(get(chat.port, "/healthz")[2])["connections"] == 2
        samples = scrape(chat.port)
        assert samples[("wschat_connections", (("backend", backend),))] == 2
        # alice's joins and messages, bob's join: 2 + 5 received
        assert samples[("wschat_messages_received_total", ())] == 7
        assert samples[("wschat_rate_limited_total", ())] == 3
        assert samples[("wschat_handshake_failures_total", (("status", "403"),))] == 1
        assert samples[("wschat_broadcasts_total", ())] >= 2  # 2 messages, and presence
        sent = samples[("wschat_messages_sent_total", ())]
        assert sent >= 2 * samples[("wschat_broadcasts_total", ())]  # both in the room
        assert samples[("wschat_received_bytes_total", ())] > 7 * len('{"type":"join"}')
        assert samples[("wschat_sent_bytes_total", ())] > sent * len('{"type":""}')
        assert samples[("process_resident_memory_bytes", ())] > 0
        alice.close()
        bob.close()
        eventually(
            lambda: scrape(chat.port)[("wschat_connections", (("backend", backend),))] == 0,
            "the connections gauge did not come back to 0",
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_health_says_503_while_draining_then_the_server_stops(backend: str) -> None:
    with running_chat(backend, "--drain", "30") as chat:
        member = Member(chat.ws_url)
        chat.stopping = True
        chat.process.send_signal(signal.SIGTERM)
        first = time.monotonic()
        eventually(lambda: get(chat.port, "/healthz")[0] == 503, "/healthz never said 503")
        member.join("still-here")  # the people here are served on meanwhile
        chat.process.send_signal(signal.SIGTERM)  # within SIGNAL_ECHO: the same request
        time.sleep(max(0.0, first + SIGNAL_ECHO + 0.2 - time.monotonic()))
        assert chat.process.poll() is None
        assert get(chat.port, "/healthz")[0] == 503
        # A later signal cuts the 30 s drain short. (The server's clock of
        # the first signal may lag the test's under load: a signal that it
        # still takes for an echo is followed by another.)
        for _ in range(5):
            chat.process.send_signal(signal.SIGTERM)
            try:
                while True:
                    member.next(timeout=3)
            except ConnectionClosed:
                break
            except TimeoutError:
                continue
        assert member.ws.close_code == 1001
        assert chat.process.wait(timeout=20) == 0


def test_workers_drain_when_the_whole_group_is_signalled() -> None:
    """Ctrl-C in a terminal (or systemd stopping the service) signals the
    parent and every worker at once, and the parent passes it on: each
    worker sees two signals, which must not cut its drain short."""
    with redis_process() as (redis_port, _):
        port = free_port()
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "adapters.chat", "--port", str(port)),
                *("--workers", "2", "--drain", "4", "--redis", f"redis://127.0.0.1:{redis_port}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: the test's stays out of it
        )
        try:
            assert process.stdout is not None
            assert "2 workers" in process.stdout.readline()
            wait_for_log(process, "redis connected", count=2)
            member = Member(f"ws://127.0.0.1:{port}/ws")
            os.killpg(process.pid, signal.SIGINT)
            eventually(lambda: get(port, "/healthz")[0] == 503, "/healthz never said 503")
            time.sleep(SIGNAL_ECHO + 0.5)  # past any echo: a cut drain would have ended by now
            assert get(port, "/healthz")[0] == 503
            member.join("still-served")
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_two_workers_report_their_sum_whichever_answers() -> None:
    with redis_process() as (redis_port, _):
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
                f"redis://127.0.0.1:{redis_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert "2 workers" in process.stdout.readline()
            wait_for_log(process, "redis connected", count=2)
            members = [Member(f"ws://127.0.0.1:{port}/ws") for _ in range(6)]
            workers: set[str] = set()
            key = ("wschat_connections", (("backend", "asyncio"),))

            def all_counted() -> bool:
                # Each scrape reaches either worker (a new connection each).
                workers.add(json.loads(get(port, "/healthz")[2])["worker"])
                return scrape(port)[key] == 6 and len(workers) == 2

            eventually(all_counted, "the sum over both workers was never 6 from each", 20)

            def both_up() -> bool:  # one series per worker (a pid label), each synced each second
                ups = [
                    value for (name, _), value in scrape(port).items() if name == "wschat_redis_up"
                ]
                return sorted(ups) == [1, 1]

            eventually(both_up, "the two workers' wschat_redis_up were never both 1")
            for member in members:
                member.close()
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
