"""Named deadlines, driven by a clock the core never reads.

Starting a timer records only its delay; the deadline is fixed the next
time the adapter tells us the time (`next_deadline(now)` or
`handle_timeout(now)`), which an adapter does right after every step. This
keeps every method that may start a timer (accept, close, receive_data...)
free of a `now` argument, at the cost of a start time late by one step.
"""

from __future__ import annotations

import enum


class Timer(enum.Enum):
    OPEN = "open"  # opening handshake must finish
    PING = "ping"  # time to send the next keepalive ping
    PONG = "pong"  # the keepalive ping must be answered
    CLOSE = "close"  # the close handshake (or the server's TCP close) must finish


class TimerSet:
    __slots__ = ("_deadlines", "_pending")

    def __init__(self) -> None:
        self._pending: dict[Timer, float] = {}
        self._deadlines: dict[Timer, float] = {}

    def start(self, timer: Timer, delay: float | None) -> None:
        """(Re)start `timer` to fire `delay` seconds from the next time we learn."""
        self._deadlines.pop(timer, None)
        if delay is None:
            self._pending.pop(timer, None)
        else:
            self._pending[timer] = delay

    def cancel(self, timer: Timer) -> None:
        self._pending.pop(timer, None)
        self._deadlines.pop(timer, None)

    def cancel_all(self) -> None:
        self._pending.clear()
        self._deadlines.clear()

    def is_running(self, timer: Timer) -> bool:
        return timer in self._pending or timer in self._deadlines

    def _arm(self, now: float) -> None:
        if self._pending:
            for timer, delay in self._pending.items():
                self._deadlines[timer] = now + delay
            self._pending.clear()

    def next_deadline(self, now: float) -> float | None:
        self._arm(now)
        return min(self._deadlines.values(), default=None)

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the earliest timer due at `now`, if any.

        One at a time on purpose: firing a timer may cancel others (failing
        the connection cancels them all), and a timer popped in a batch
        before that would still fire.
        """
        self._arm(now)
        due = [(deadline, timer.value, timer) for timer, deadline in self._deadlines.items()]
        due = [entry for entry in due if entry[0] <= now]
        if not due:
            return None
        timer = min(due)[2]
        del self._deadlines[timer]
        return timer
