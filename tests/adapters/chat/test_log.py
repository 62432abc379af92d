"""Throttled log lines (`log.py`)."""

from __future__ import annotations

import logging

import pytest

from adapters.chat.log import LogThrottle


def test_allow() -> None:
    throttle = LogThrottle(60.0)
    assert throttle.allow(100.0) == 0
    assert throttle.allow(101.0) is None
    assert throttle.allow(159.0) is None
    assert throttle.allow(160.0) == 2
    assert throttle.allow(10.0) == 0  # the clock stepped back: not silenced for good


def test_one_line_per_interval_with_a_count_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = LogThrottle(5.0)
    with caplog.at_level(logging.INFO, "wschat"):
        assert throttle.warning(100.0, "dropped %s", "one")
        assert not throttle.warning(101.0, "dropped %s", "two")
        assert not throttle.warning(102.0, "dropped %s", "three")
        assert throttle.log(logging.ERROR, 105.0, "dropped %s", "four", exc_info=ValueError("x"))
    first, second = caplog.records
    assert (first.levelno, first.getMessage()) == (logging.WARNING, "dropped one")
    assert (second.levelno, second.getMessage()) == (
        logging.ERROR,
        "dropped four (and 2 more like it)",
    )
    assert second.exc_info is not None
