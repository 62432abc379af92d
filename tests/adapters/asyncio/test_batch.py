"""The end-of-iteration batch of deferred writes (adapters/asyncio/_batch.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from adapters.asyncio._batch import EndOfIteration, end_of_iteration


def test_flushes_run_once_in_order_after_the_current_step() -> None:
    ran: list[str] = []

    async def main() -> None:
        batch = EndOfIteration(asyncio.get_running_loop())
        batch.add(lambda: ran.append("a"))
        batch.add(lambda: ran.append("b"))
        assert ran == []  # not now: at the end of this iteration
        await asyncio.sleep(0)
        assert ran == ["a", "b"]
        await asyncio.sleep(0)
        assert ran == ["a", "b"]  # once

    asyncio.run(main())


def test_touch_numbers_the_iteration_and_the_run_moves_it_on() -> None:
    """A connection that wrote keeps `touch()`'s number; once the batch has
    run, that number is stale, with no callback of the connection's own."""
    seen: list[int] = []
    runs: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        batch = EndOfIteration(loop)
        real_call_soon = loop.call_soon

        def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> Any:
            runs.append(callback)
            return real_call_soon(callback, *args, **kwargs)

        loop.call_soon = counting_call_soon  # type: ignore[method-assign]
        seen.extend([batch.touch(), batch.touch(), batch.iteration])
        batch.add(lambda: seen.append(batch.iteration))
        await asyncio.sleep(0)
        seen.append(batch.touch())
        await asyncio.sleep(0)
        seen.append(batch.iteration)
        del loop.call_soon

    asyncio.run(main())
    # one run scheduled per iteration touched, however many touches; a
    # flush added in an iteration sees the next number
    assert seen == [0, 0, 0, 1, 1, 2]
    assert sum(1 for callback in runs if getattr(callback, "__name__", "") == "_run") == 2


def test_a_failing_flush_is_reported_and_the_others_still_run() -> None:
    ran: list[str] = []
    reported: list[dict[str, Any]] = []

    def fail() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        batch = EndOfIteration(loop)
        batch.add(fail)
        batch.add(lambda: ran.append("after"))
        await asyncio.sleep(0)

    asyncio.run(main())
    assert ran == ["after"]
    assert [str(context["exception"]) for context in reported] == ["boom"]


def test_a_flush_added_while_the_batch_runs_runs_in_the_next_one() -> None:
    ran: list[str] = []

    async def main() -> None:
        batch = EndOfIteration(asyncio.get_running_loop())

        def first() -> None:
            ran.append("first")
            batch.add(lambda: ran.append("added while running"))

        batch.add(first)
        await asyncio.sleep(0)
        assert ran == ["first"]
        await asyncio.sleep(0)
        assert ran == ["first", "added while running"]

    asyncio.run(main())


def test_each_loop_has_one_batch() -> None:
    async def get() -> EndOfIteration:
        return end_of_iteration(asyncio.get_running_loop())

    async def twice() -> tuple[EndOfIteration, EndOfIteration]:
        return await get(), await get()

    first, second = asyncio.run(twice())
    assert first is second
    assert asyncio.run(get()) is not first  # another loop, another batch


def test_a_batch_does_not_keep_its_loop_alive() -> None:
    """Batches are kept per loop in a weak registry; one that held its loop
    would keep every loop that ever sent anything (and its selector) alive."""
    loop = asyncio.new_event_loop()
    batch = end_of_iteration(loop)
    batch.add(lambda: None)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None


def test_a_loop_closed_with_flushes_still_due_is_freed() -> None:
    """`loop.close()` drops the callback that would run them; the flushes
    left in the batch hold their connections, which hold the loop, so a
    table that held the batch would keep the loop (and its sockets) alive."""

    class Connection:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop  # as a WebSocket holds its loop

        def flush(self) -> None:
            raise AssertionError("never runs: the loop is closed first")

    loop = asyncio.new_event_loop()
    connection = Connection(loop)
    end_of_iteration(loop).add(connection.flush)
    loop.close()
    gone = weakref.ref(loop)
    del loop, connection
    gc.collect()
    assert gone() is None


def test_an_interrupt_in_a_flush_leaves_the_rest_due() -> None:
    ran: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        batch = EndOfIteration(asyncio.get_running_loop())
        batch.add(interrupt)
        batch.add(lambda: ran.append("after"))
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(main())
        assert ran == []
        loop.run_until_complete(asyncio.sleep(0))
        assert ran == ["after"]
    finally:
        loop.close()
