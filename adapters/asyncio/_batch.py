"""Deferred writes, gathered into one callback per loop iteration.

A broadcast to a thousand peers queues a frame on each, and each must be
written by the end of the iteration. One `call_soon` per peer costs a
thousand handles, and the loop works through them before it reads again:
the next message waits behind them (about a millisecond at N = 1,000). One
callback per loop, running each connection's flush in turn, does the same
writes at a fraction of the cost.

Most connections need no flush at all: a broadcast writes each peer's one
frame at once. What such a connection needs is only to know whether it
already wrote in this iteration, so `iteration` counts the batch's runs:
a connection that wrote keeps the number (`touch`), and the number is
stale once the batch has run. No callback per peer, and no handle.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

# Weak both ways: a batch lives while its connections (or its scheduled
# callback) hold it, and a loop closed with flushes still due, which hold
# their connections and so the loop, must not be kept alive by this table.
_by_loop: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.ReferenceType[EndOfIteration]
] = weakref.WeakKeyDictionary()


class EndOfIteration:
    """Runs the flushes added during one loop iteration in a single callback,
    in the order they were added."""

    __slots__ = ("__weakref__", "_due", "_loop", "_scheduled", "iteration")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._due: list[Callable[[], None]] = []
        self._scheduled = False
        # How many times the batch has run: the number of the iteration
        # now under way, as far as writes are concerned.
        self.iteration = 0

    def touch(self) -> int:
        """Make sure this iteration ends with a run (which moves
        `iteration` on); returns the iteration's number."""
        if not self._scheduled:
            self._scheduled = True
            self._running_loop().call_soon(self._run)
        return self.iteration

    def add(self, flush: Callable[[], None]) -> None:
        """Run `flush` at the end of this iteration."""
        self.touch()
        self._due.append(flush)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        # Alive whenever this is called: from the loop's own callback, or by
        # a connection of the loop, which holds it.
        assert loop is not None
        return loop

    def _run(self) -> None:
        # Flushes added while these run (a write that ends a connection,
        # whose callbacks send on another) go to the next callback.
        self._scheduled = False
        self.iteration += 1
        due, self._due = self._due, []
        for index, flush in enumerate(due):
            try:
                flush()
            except Exception as error:  # one connection's failure must not strand the rest
                self._running_loop().call_exception_handler(
                    {"message": "error in a deferred write", "exception": error}
                )
            except BaseException:  # (KeyboardInterrupt, SystemExit): the rest stay due
                rest = due[index + 1 :]
                if rest:
                    self.touch()
                    self._due[:0] = rest
                raise


def end_of_iteration(loop: asyncio.AbstractEventLoop) -> EndOfIteration:
    """The batch of this loop (made on first use, gone with its connections)."""
    known = _by_loop.get(loop)
    batch = None if known is None else known()
    if batch is None:
        batch = EndOfIteration(loop)
        _by_loop[loop] = weakref.ref(batch)
    return batch
