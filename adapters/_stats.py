"""What a server counts for its operator: `serve(..., stats=ServerStats())`.

Only the server sees the requests it turns away (a malformed request, a
forbidden origin, one connection too many from an address or in all), so it
is the server that counts them. A plain HTTP request answered by the
`http_handler` is not refused, nor is a connection closed before its
request was whole (a load balancer's TCP check is not an attack). The
application counts the rest (its own connections, messages) and reads
these whenever it likes, say from its `http_handler` for a metrics
endpoint.

The counters are written from the connections' threads in the blocking
backend, so each change takes a lock; nothing here is on a per-message path.
"""

from __future__ import annotations

import threading
from collections import Counter


class ServerStats:
    """Counters of a server's refused connections and upgrade requests, by
    the HTTP status sent: 503 for one connection too many (`max_connections`,
    answered before any request is read, so plain HTTP requests too) or
    from one address (`max_connections_per_ip`), 403 for a forbidden origin,
    400, 426, 431... for a malformed request. `TIMED_OUT` (0) counts
    requests not whole within `open_timeout` (no answer is sent)."""

    TIMED_OUT = 0

    __slots__ = ("_lock", "_refused")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: Counter[int] = Counter()

    def refused(self, status: int) -> None:
        """A connection or a request was refused with `status` (or
        `TIMED_OUT`)."""
        with self._lock:
            self._refused[status] += 1

    def handshake_failures(self) -> dict[int, int]:
        """A snapshot: status -> how many handshakes ended with it."""
        with self._lock:
            return dict(self._refused)
