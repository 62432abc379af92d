"""The chat's logger, and log lines that something outside the process can
trigger at will (a client's input, what Redis sends) throttled so that it
cannot flood the log."""

from __future__ import annotations

import logging

logger = logging.getLogger("wschat")


class LogThrottle:
    """At most one log line per `interval` seconds of `now` (the caller's
    clock), with a count of those left out."""

    __slots__ = ("_interval", "_last", "_skipped")

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._last = float("-inf")
        self._skipped = 0

    def allow(self, now: float) -> int | None:
        """None: stay quiet. Otherwise log, and say how many were not. A
        clock that stepped back does not silence it for good."""
        if 0 <= now - self._last < self._interval:
            self._skipped += 1
            return None
        self._last = now
        skipped, self._skipped = self._skipped, 0
        return skipped

    def log(
        self,
        level: int,
        now: float,
        message: str,
        *args: object,
        exc_info: BaseException | bool | None = None,
    ) -> bool:
        """Log unless one was logged less than `interval` ago; True if logged."""
        skipped = self.allow(now)
        if skipped is None:
            return False
        if skipped:
            message += " (and %d more like it)"
            args = (*args, skipped)
        logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(
        self, now: float, message: str, *args: object, exc_info: BaseException | None = None
    ) -> bool:
        return self.log(logging.WARNING, now, message, *args, exc_info=exc_info)
