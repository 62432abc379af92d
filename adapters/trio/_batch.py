"""The end of a scheduler step, for the writes deferred during it.

A connection writes its first message of a step at once (a reply leaves
without waiting), and the ones after it in the same step wait for the step
to end, to go out together: a broadcast of 300 messages read in one go is
one write per peer, not 300. trio has no callback for "after the tasks now
running"; a task rescheduled now runs in the scheduler's next batch, which
is that. One such task per trio run goes through every connection that
wrote, as asyncio's `_batch.EndOfIteration` does once per loop iteration.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

logger = logging.getLogger(__name__)


class Deferring(Protocol):
    """A connection that wrote in this step (see `EndOfStep.add`)."""

    def _end_of_step(self) -> None: ...


class EndOfStep:
    """Calls `_end_of_step` of each connection added during one scheduler
    step, in the order they were added, from one system task of the run
    (started when needed, gone after `IDLE_EXIT` seconds with nothing to do:
    a run whose connections are over keeps no task of ours)."""

    __slots__ = ("_due", "_parked", "_running")

    IDLE_EXIT = 1.0

    def __init__(self) -> None:
        self._due: list[Deferring] = []
        self._parked: trio.lowlevel.Task | None = None
        self._running = False

    def add(self, connection: Deferring) -> None:
        """`connection` wrote at once in this step: later writes in it wait
        for the step's end, where `connection._end_of_step()` is called."""
        self._due.append(connection)
        parked = self._parked
        if parked is not None:
            self._parked = None
            trio.lowlevel.reschedule(parked)
        elif not self._running:
            self._running = True
            trio.lowlevel.spawn_system_task(self._run, name="websocket end of step")

    async def _run(self) -> None:
        try:
            while await self._next_step():
                due, self._due = self._due, []
                for connection in due:
                    try:
                        connection._end_of_step()
                    except Exception:  # one connection's failure must not strand the rest
                        logger.exception("error in a deferred write")
        finally:
            self._running = False
            self._parked = None

    async def _next_step(self) -> bool:
        """Wait for the end of the step in which something was added; False
        after `IDLE_EXIT` seconds with nothing added."""
        if self._due:
            # Added while the last ones ran: their step is the next one.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        with trio.move_on_after(self.IDLE_EXIT):
            self._parked = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._unpark)
        return bool(self._due)

    def _unpark(self, _: object) -> trio.lowlevel.Abort:
        self._parked = None  # (idle for long enough, or the run is ending)
        return trio.lowlevel.Abort.SUCCEEDED


_this_run: trio.lowlevel.RunVar[EndOfStep] = trio.lowlevel.RunVar("websocket end of step")


def end_of_step() -> EndOfStep:
    """The batch of the current trio run (made on first use)."""
    try:
        return _this_run.get()
    except LookupError:
        batch = EndOfStep()
        _this_run.set(batch)
        return batch
