"""What a server counts for its operator: `serve(..., stats=ServerStats())`.

Only the server sees the requests it turns away (a malformed request, a
forbidden origin, one connection too many from an address or in all), so it
is the server that counts them; the application counts the rest (its own
connections, messages). The application reads the counters whenever it
likes, say from its `http_handler` for a metrics endpoint.

The counters are written from the connections' threads in the blocking
backend, so each change takes a lock; nothing here is on a per-message path.
"""

from __future__ import annotations

import threading
from collections import Counter

NO_RESPONSE = 0  # the status of a handshake that ended without an answer


class ServerStats:
    """Counters of a server's refused handshakes, by HTTP status.

    `NO_RESPONSE` (0) counts upgrade requests that ended with no status
    sent: the client went away, or took longer than `open_timeout`."""

    __slots__ = ("_lock", "_refused")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: Counter[int] = Counter()

    def refused(self, status: int | None) -> None:
        """A handshake was answered `status` (None: not answered)."""
        with self._lock:
            self._refused[NO_RESPONSE if status is None else status] += 1

    def handshake_failures(self) -> dict[int, int]:
        """A snapshot: status -> how many handshakes ended with it."""
        with self._lock:
            return dict(self._refused)
