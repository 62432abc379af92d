"""The timer set: pending until the clock is known, then absolute."""

from __future__ import annotations

from wsproto_core.timers import Timer, TimerSet


def test_timers_arm_at_the_next_known_time() -> None:
    timers = TimerSet()
    timers.start(Timer.PING, 5.0)
    timers.start(Timer.CLOSE, 2.0)
    assert timers.is_running(Timer.PING)
    assert timers.next_deadline(100.0) == 102.0
    assert timers.next_deadline(200.0) == 102.0  # armed once, not re-armed
    assert timers.pop_due(101.0) is None
    assert timers.pop_due(110.0) is Timer.CLOSE
    assert timers.pop_due(110.0) is Timer.PING
    assert timers.pop_due(110.0) is None
    assert timers.next_deadline(110.0) is None


def test_cancel_and_disabled_timers() -> None:
    timers = TimerSet()
    timers.start(Timer.OPEN, None)
    assert not timers.is_running(Timer.OPEN)
    timers.start(Timer.OPEN, 1.0)
    timers.start(Timer.OPEN, None)  # restarting with None stops it
    assert timers.next_deadline(0.0) is None
    timers.start(Timer.PONG, 1.0)
    timers.next_deadline(0.0)
    timers.cancel(Timer.PONG)
    assert not timers.is_running(Timer.PONG)
    timers.start(Timer.PING, 1.0)
    timers.cancel_all()
    assert timers.next_deadline(0.0) is None


def test_restarting_an_armed_timer_replaces_its_deadline() -> None:
    timers = TimerSet()
    timers.start(Timer.CLOSE, 5.0)
    assert timers.next_deadline(0.0) == 5.0
    timers.start(Timer.CLOSE, None)  # stops it, though it was already armed
    assert not timers.is_running(Timer.CLOSE)
    assert timers.pop_due(10.0) is None
    timers.start(Timer.PING, 5.0)
    timers.next_deadline(0.0)
    timers.start(Timer.PING, 20.0)  # counted again from the next known time
    assert timers.next_deadline(10.0) == 30.0
    assert timers.pop_due(29.0) is None
    assert timers.pop_due(30.0) is Timer.PING
