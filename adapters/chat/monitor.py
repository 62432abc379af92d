"""What an operator watches: `GET /healthz` for a load balancer and
`GET /metrics` for Prometheus, served by each worker next to the page.

`/healthz` answers 200 while the worker serves, with the Redis link's state
in its JSON body, and 503 from the moment a shutdown begins: `wschat
--drain S` keeps serving for S seconds after SIGTERM, so a load balancer
that polls it stops sending people here before the listener closes.

`/metrics` is the Prometheus text format, written by `prometheus_client`
(the `chat` extra). The chat counts in plain integers (`counters.py`, the
server's `ServerStats`) and this module adds what grew to the library's
metrics once a second and at each scrape, so counting costs the chat's
hot paths nothing but an addition.

With `--workers N`, every worker shares the port and a scrape reaches one
of them at random: each worker then keeps its metrics in files of a
directory that all of them share (the library's multiprocess mode,
`PROMETHEUS_MULTIPROC_DIR`, set by `wschat` for its workers), and whichever
worker answers reports the sum over all of them. Counters keep what a
worker that died had counted; gauges count live workers only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from wsproto_core import HttpRequest

from .. import HttpResponse, ServerStats
from .counters import ChatCounters
from .log import LogThrottle, logger
from .page import page

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # the library's own variable
METRICS_MAX_AGE = 1.0  # seconds a rendered /metrics page is served again
_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
_TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]

# ChatCounters' fields as Prometheus counters: name (without _total), help.
_COUNTERS = {
    "messages_in": ("wschat_messages_received", "WebSocket messages received from clients."),
    "bytes_in": ("wschat_received_bytes", "Payload bytes of the messages received."),
    "messages_out": ("wschat_messages_sent", "Messages queued for clients (one per client)."),
    "bytes_out": ("wschat_sent_bytes", "Payload bytes of the messages queued for clients."),
    "broadcasts": ("wschat_broadcasts", "Messages framed once and queued for every client."),
    "slow_drops": ("wschat_slow_consumer_drops", "Clients closed (1013) for falling behind."),
    "rate_limited": ("wschat_rate_limited", "Messages, joins and renames refused by a limit."),
    "hub_rejected": ("wschat_hub_events_rejected", "Invalid events from Redis, dropped."),
}


class _LinkView(Protocol):
    sessions: int

    @property
    def up(self) -> bool: ...


class ChatView(Protocol):
    """What the monitor reads of the chat process (`ChatProcess`)."""

    @property
    def clients(self) -> Mapping[int, object]: ...

    @property
    def link(self) -> _LinkView | None: ...

    def update_counters(self) -> None: ...


class Monitor:
    """The health and the metrics of one worker. `wschat` makes one per
    worker, gives `stats` to the server and `counters` to the chat, and
    serves `http_handler` on the chat's port."""

    def __init__(self, backend: str, worker: str, redis: bool) -> None:
        self.backend = backend
        self.worker = worker
        self.redis = redis
        self.stats = ServerStats()
        self.counters = ChatCounters()
        self.draining = False
        # A page is rendered at most this often (it costs some 0.25 ms, ten
        # pages' worth: a flood of scrapes must not cost more than one of
        # page loads); Prometheus scrapes every 15 s or so.
        self.metrics_max_age = METRICS_MAX_AGE
        self._rendered: tuple[float, str, bytes] | None = None
        self._chat: ChatView | None = None
        self._exporter: _Exporter | None = None
        self._off = ""  # why /metrics is off, if it is
        try:
            self._exporter = _Exporter(backend, redis)
        except ImportError:
            self._off = "prometheus_client is not installed: pip install 'wsproto-core[chat]'"
        except OSError as error:  # (the shared directory of --workers)
            self._off = f"{MULTIPROCESS_DIR}={_shared_dir()}: {error}"
        if self._off:
            logger.warning("/metrics is off: %s", self._off)

    def attach(self, chat: ChatView) -> None:
        """The chat process whose clients and Redis link are reported."""
        self._chat = chat

    def begin_drain(self) -> None:
        """Shutting down: /healthz says 503 from now on."""
        self.draining = True
        logger.info("shutting down: /healthz answers 503 from now on")

    def sync(self) -> None:
        """Bring the metrics up to date (the chat's ticker calls this every
        second: with several workers, the others' scrapes read the files)."""
        if self._chat is not None:
            self._chat.update_counters()
        if self._exporter is not None:
            self._exporter.sync(self)

    # -- what the chat's port answers ---------------------------------------------

    def http_handler(self, request: HttpRequest) -> HttpResponse:
        """/healthz and /metrics; the page for anything else."""
        if request.path == "/healthz" and request.method in ("GET", "HEAD"):
            return self._health()
        if request.path == "/metrics" and request.method in ("GET", "HEAD"):
            return self._metrics()
        return page(request)

    def health(self) -> dict[str, object]:
        chat = self._chat
        link = None if chat is None else chat.link
        redis = "up" if link is not None and link.up else "down" if self.redis else "off"
        return {
            "status": "draining" if self.draining else "serving",
            "backend": self.backend,
            "worker": self.worker,
            "connections": 0 if chat is None else len(chat.clients),
            "redis": redis,
            "redis_sessions": 0 if link is None else link.sessions,
        }

    def _health(self) -> HttpResponse:
        body = json.dumps(self.health()).encode() + b"\n"
        return HttpResponse(status=503 if self.draining else 200, headers=_JSON, body=body)

    def _metrics(self) -> HttpResponse:
        exporter = self._exporter
        if exporter is None:
            body = f"/metrics is off: {self._off}\n".encode()
            return HttpResponse(status=501, headers=_TEXT, body=body)
        now = time.monotonic()
        cached = self._rendered
        if cached is None or not 0 <= now - cached[0] < self.metrics_max_age:
            self.sync()
            cached = self._rendered = (now, *exporter.render())
        _, content_type, body = cached
        return HttpResponse(headers=[("Content-Type", content_type), _TEXT[1]], body=body)


class _Exporter:
    """The monitor's numbers as `prometheus_client` metrics, in a registry
    of this worker's own (or, with several workers, in the shared files)."""

    def __init__(self, backend: str, redis: bool) -> None:
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Gauge

        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self._client = prometheus_client
        self._shared_dir = _shared_dir()
        self._broken_dir = LogThrottle(60.0)
        self._lock = threading.Lock()  # a scrape (any thread) and the ticker both sync
        self._seen: dict[object, int] = {}
        self.registry = CollectorRegistry()
        if self._shared_dir is None:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=self.registry)  # memory, CPU, descriptors
        registry = self.registry
        self._counters = {
            field: Counter(name, help, registry=registry)
            for field, (name, help) in _COUNTERS.items()
        }
        self._refused = Counter(
            "wschat_handshake_failures",
            "Connections and upgrade requests refused, by the HTTP status sent "
            "(timeout: not whole within the open timeout).",
            ["status"],
            registry=registry,
        )
        self._connections = Gauge(
            "wschat_connections",
            "Chat clients connected now.",
            ["backend"],
            registry=registry,
            multiprocess_mode="livesum",
        ).labels(backend)
        self._draining = Gauge(
            "wschat_draining",
            "1 while shutting down (/healthz answers 503).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._redis_up: Gauge | None = None
        self._reconnects: Counter | None = None
        if redis:
            self._redis_up = Gauge(
                "wschat_redis_up",
                "1 while the worker's Redis link is up (one series per worker).",
                registry=registry,
                multiprocess_mode="liveall",
            )
            self._reconnects = Counter(
                "wschat_redis_reconnects", "Redis sessions after the first.", registry=registry
            )

    def sync(self, monitor: Monitor) -> None:
        with self._lock:
            for field, value in monitor.counters.snapshot().items():
                self._add(field, value, self._counters[field].inc)
            for status, count in monitor.stats.handshake_failures().items():
                label = str(status) if status != ServerStats.TIMED_OUT else "timeout"
                self._add(("refused", status), count, self._refused.labels(label).inc)
            health = monitor.health()
            self._connections.set(_int(health["connections"]))
            self._draining.set(1 if monitor.draining else 0)
            if self._redis_up is not None and self._reconnects is not None:
                self._redis_up.set(1 if health["redis"] == "up" else 0)
                sessions = _int(health["redis_sessions"])
                self._add("reconnects", max(0, sessions - 1), self._reconnects.inc)

    def _add(self, key: object, value: int, inc: Callable[[int], None]) -> None:
        """Add to a Prometheus counter what `value` (a running total) grew by."""
        grew = value - self._seen.get(key, 0)
        if grew > 0:
            inc(grew)
            self._seen[key] = value

    def render(self) -> tuple[str, bytes]:
        """The page: every worker's sum (several workers), or this one's.
        If the shared directory is unusable (removed by a cleaner, say),
        this worker's own numbers, and a warning now and then."""
        client = self._client
        if self._shared_dir is not None:
            from prometheus_client import CollectorRegistry, multiprocess

            try:
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry, path=self._shared_dir)  # type: ignore[no-untyped-call]
                return client.CONTENT_TYPE_LATEST, client.generate_latest(registry)
            except (OSError, ValueError) as error:
                self._broken_dir.warning(
                    time.monotonic(),
                    "/metrics reports this worker alone: %s=%s: %s",
                    MULTIPROCESS_DIR,
                    self._shared_dir,
                    error,
                )
        return client.CONTENT_TYPE_LATEST, client.generate_latest(self.registry)


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _shared_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR) or None
