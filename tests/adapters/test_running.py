"""Signals during a graceful stop (`adapters._running`): the first stops,
a later one ends the drain, and the same request arriving twice at once
(a terminal's Ctrl-C and a parent's SIGTERM) counts once."""

from __future__ import annotations

from adapters._running import SIGNAL_ECHO, _StopRequests


def test_the_first_signal_stops_and_a_later_one_hurries() -> None:
    now = [100.0]
    seen: list[str] = []
    requests = _StopRequests(
        lambda: seen.append("stop"), lambda: seen.append("hurry"), lambda: now[0]
    )
    requests()
    assert seen == ["stop"]
    now[0] += SIGNAL_ECHO / 2
    requests()  # the echo of the first
    assert seen == ["stop"]
    now[0] += SIGNAL_ECHO
    requests()
    assert seen == ["stop", "hurry"]
