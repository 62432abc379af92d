"""The adapters under generated schedules (issue 12, item 4).

A hypothesis state machine drives both ends of a real connection, a server
of one backend and a client of another (all nine pairs), through generated
sequences of steps; each end is an agent in its own thread or loop that
does what the test asks (`stateful_support`), so the test plays the
application on both sides at once.

The steps:

- send a message from either side: text or binary, 0 B to 400 KiB, sizes
  around the frame-length encodings (125/126, 65535/65536) and the
  adapters' buffers, random (incompressible) or repetitive, compressed or
  not, whole or in fragments; a burst of many at once;
- read some messages on one side, or drain both: reading is otherwise
  paused, so that queues fill, reading stops and sends wait (backpressure);
- ping from either side with a unique payload;
- close from either side or both (generated valid codes and reasons), at
  once (`close_nowait`) or behind the side's pending sends (`close`);
- the peer vanishes, without a close frame: one side resets the connection
  (SO_LINGER 0 and the adapter's own abort), or (deep profile only: it
  costs a close_timeout) shuts its socket down and stops reading;
- finish the close (read both sides to the end), then connect again; at
  most 5 other steps run once a connection is ending, so that no close
  timer runs out while the test leaves a side unread.

What is checked:

- after every step: the connection is still open on both sides while
  nothing closed it; every send that finished while it was open succeeded,
  and every ping answered with a round trip between 0 and the time it took;
- every message read is the next one its peer sent, intact and of its type
  (delivered in order, once: a duplicate or a loss shows as the wrong
  message or one too many before the end);
- at the end of a clean close, each side received exactly the messages its
  peer's sends succeeded for, in order; sends after a side's own close
  failed with ConnectionClosed; each side's close code and reason are those
  of the close frame it received (the peer's own, or the echo of ours), the
  exception from `recv` says the same, and so does `close_code`; each side
  ends (`wait_closed`) within close_timeout (10 s) plus a margin: most end
  at once, and one case that does not is the regression test at the end;
- where a peer vanished: each side received a prefix of what the other
  sent, and both report 1006 (ConnectionClosedError);
- nothing left running: once both agents finished, every thread, task and
  file descriptor started for the connection is gone and no server holds a
  connection or handler task (bounded waits).

Keepalive pings are off (`ping_interval=None`): a side whose reading the
test pauses would otherwise fail with 1011 after ping_interval +
ping_timeout under a slow machine, a true outcome the model cannot predict.

Each example also draws the client's options (compression on or off,
`max_queue` 1, 4 or 16, `write_limit` 4 KiB or 64 KiB); the servers keep
their defaults.

Budget: the `ci` profile runs 15 examples of at most 25 steps per pair
(some 25-45 s for the nine pairs on two busy cores); HYPOTHESIS_PROFILE=deep
runs 80 of 50, not derandomized (some 5-10 minutes). WS_STATEFUL_EXAMPLES=N
overrides the number of examples; WS_STATEFUL_DEBUG=1 prints the steps of
any step slower than 2 s and, at the end, how often each step and outcome
occurred.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import pytest
from hypothesis import currently_in_test_context, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from .harness import client as harness_client
from .stateful_support import (
    BACKENDS,
    TIMEOUT,
    VANISH,
    WAIT,
    Handle,
    Servers,
    Snapshot,
    open_pair,
    server_closing_mid_message,
    servers_running,
    snapshot,
    wait_done,
    wait_for,
    wait_until_quiet,
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
EXAMPLES = {"ci": 15, "deep": 80}
STEPS = {"ci": 25, "deep": 50}
VANISH_HOW = VANISH if PROFILE == "deep" else ("reset",)

SIDES = ("server", "client")
CLOSE_TIMEOUT = 10.0  # the adapters' default
ENDING_STEPS = 5  # steps allowed once a connection is ending, before finish_close
SLOW = 2.0  # seconds: a step this slow is reported with WS_STATEFUL_DEBUG=1
KiB = 1024
BOUNDARY_SIZES = [0, 1, 125, 126, 127, 4095, 65535, 65536, 65537, 131072, 256 * KiB + 1, 400 * KiB]
CLEAN_CODES = (1000, 1001, 1005)
Message = str | bytes
P = ParamSpec("P")
R = TypeVar("R")


def other(side: str) -> str:
    return "client" if side == "server" else "server"


# -- messages ----------------------------------------------------------------------

CHARS = ["a", "é", "€", "😀"]  # 1 to 4 bytes in UTF-8


@dataclass(frozen=True)
class Outgoing:
    """A message to send: what the receiver must get, and how it is sent."""

    message: Message
    pieces: list[Message] | None  # send_fragments(pieces), or send(message)
    compress: bool | None

    def describe(self) -> str:
        kind = "text" if isinstance(self.message, str) else "binary"
        how = f"in {len(self.pieces)} fragments" if self.pieces is not None else "whole"
        return f"{kind} of {_size(self.message)} B, {how}, compress={self.compress}"


def _size(message: Message) -> int:
    return len(message.encode()) if isinstance(message, str) else len(message)


def make_text(size: int, rng: random.Random, repetitive: bool) -> str:
    """A str of exactly `size` UTF-8 bytes, with characters of 1 to 4 bytes."""
    if repetitive:
        unit = "".join(rng.choices(CHARS, k=rng.randint(1, 12)))
        chars = list(unit * (size // len(unit.encode()) + 1))
    else:
        chars = rng.choices(CHARS, k=size // 2 + 4)
    out: list[str] = []
    total = 0
    for char in chars:
        width = len(char.encode())
        if total + width > size:
            break
        out.append(char)
        total += width
    return "".join(out) + "a" * (size - total)


def make_message(size: int, text: bool, repetitive: bool, seed: int) -> Message:
    rng = random.Random(seed)
    if text:
        return make_text(size, rng, repetitive)
    if repetitive:
        unit = rng.randbytes(rng.randint(1, 64))
        return (unit * (size // len(unit) + 1))[:size]
    return rng.randbytes(size)


def split(message: Message, count: int, seed: int) -> list[Message]:
    rng = random.Random(seed)
    cuts = sorted(rng.randint(0, len(message)) for _ in range(count - 1))
    bounds = [0, *cuts, len(message)]
    return [message[a:b] for a, b in itertools.pairwise(bounds)]


sizes = st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 2048))


@st.composite
def outgoing(draw: st.DrawFn, size: int | None = None) -> Outgoing:
    if size is None:
        size = draw(sizes)
    text = draw(st.booleans())
    repetitive = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    message = make_message(size, text, repetitive, seed)
    fragments = draw(st.one_of(st.none(), st.integers(1, 4)))
    pieces = None if fragments is None else split(message, fragments, seed)
    compress = draw(st.sampled_from([None, True, False]))
    return Outgoing(message, pieces, compress)


close_codes = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]),
    st.integers(3000, 4999),
)
close_reasons = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40).filter(
    lambda reason: len(reason.encode()) <= 123
)
ping_extras = st.binary(max_size=100)


# -- the model -----------------------------------------------------------------------


@dataclass
class Sent:
    what: Outgoing
    future: Future[Any]
    after_own_close: bool  # submitted after this side had closed: must fail


@dataclass
class PendingPing:
    payload: bytes
    future: Future[Any]
    started: float


@dataclass
class End:
    """One side of the connection, as the test knows it."""

    handle: Handle
    sent: list[Sent] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)  # from the peer
    pings: list[PendingPing] = field(default_factory=list)
    closes: list[Future[Any]] = field(default_factory=list)
    closed_with: tuple[int, str] | None = None  # this side called close
    ended: ConnectionClosed | None = None  # what recv raised at the end


STATS: Counter[str] = Counter()  # what the runs exercised: printed with WS_STATEFUL_DEBUG=1


def note(label: str) -> None:
    if currently_in_test_context():  # (not when a scenario is replayed by hand)
        event(label)
    STATS[label] += 1


def _brief(arguments: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}={value.describe() if isinstance(value, Outgoing) else repr(value)[:40]}"
        for name, value in arguments.items()
    )


def guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Marks the machine failed if a step raises, so that teardown only
    cleans up instead of checking (and burying the step's error)."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        machine = args[0]
        assert isinstance(machine, ConnectionMachine)
        if method.__name__ != "still_open":  # (the invariant, after every step)
            machine.log.append(f"{method.__name__}({_brief(kwargs)})")
            note(f"step {method.__name__}")
            if machine.phase in ("closing", "vanished"):
                machine.steps_ending += 1
        started = time.monotonic()
        try:
            return method(*args, **kwargs)
        except BaseException as error:
            if not machine.failed:
                machine.failed = True
                error.add_note(machine.report())
            raise
        finally:
            took = time.monotonic() - started
            if took > SLOW and os.environ.get("WS_STATEFUL_DEBUG"):
                print(f"slow step ({took:.1f} s): {machine.report()}", file=sys.stderr)

    return run


class ConnectionMachine(RuleBasedStateMachine):
    """One server x client pair; the pair and the servers are set by `machine_for`."""

    servers: Servers
    server_backend: str
    client_backend: str

    def __init__(self) -> None:
        super().__init__()
        self.failed = False
        self.ends: dict[str, End] = {}
        self.phase = "none"  # open, closing, vanished, over
        self.before: Snapshot | None = None
        self.options: dict[str, Any] = {}
        self.pings_sent = 0
        self.vanished_by: str | None = None  # how, if a side vanished
        self.steps_ending = 0  # steps since the connection began to end
        self.log: list[str] = []  # the steps so far, for the report of a failure

    def report(self) -> str:
        pair = f"{self.server_backend} server, {self.client_backend} client"
        return f"{pair}, client options {self.options}; steps:\n  " + "\n  ".join(self.log)

    def live(self) -> bool:
        """Whether steps other than `finish_close` may run: while open, and
        for a few steps once the connection is ending (a side's close timer
        runs meanwhile: a closer whose peer the test leaves unread for
        close_timeout would fail with 1006, a true outcome not modelled)."""
        if self.phase == "open":
            return True
        return self.phase in ("closing", "vanished") and self.steps_ending < ENDING_STEPS

    # -- opening and ending connections ------------------------------------------

    def connect(self) -> None:
        self.before = snapshot(self.servers)
        server, client = open_pair(
            self.servers, self.server_backend, self.client_backend, **self.options
        )
        self.ends = {"server": End(server), "client": End(client)}
        self.phase = "open"
        self.vanished_by = None
        self.steps_ending = 0

    def finish(self) -> None:
        """Both agents end (the connection is over); nothing may be left running."""
        assert self.before is not None
        for end in self.ends.values():
            end.handle.call("finish")
        for end in self.ends.values():  # (raises what the handler or client raised)
            wait_for(end.handle.exited, WAIT, f"{end.handle}: the handler's or client's end")
        wait_until_quiet(self.servers, self.before)
        self.phase = "none"

    @initialize(
        compression=st.booleans(),
        max_queue=st.sampled_from([1, 4, 16]),
        write_limit=st.sampled_from([4 * KiB, 64 * KiB]),
    )
    @guarded
    def open_first(self, compression: bool, max_queue: int, write_limit: int) -> None:
        self.options = {"max_queue": max_queue, "write_limit": write_limit}
        if not compression:
            self.options["compression"] = None
        self.connect()

    @precondition(lambda self: self.phase == "over")
    @rule()
    @guarded
    def reconnect(self) -> None:
        self.finish()
        self.connect()

    def teardown(self) -> None:
        try:
            if self.failed:
                self.force_end()
                return
            if self.phase == "open":
                self.close("client", 1000, "", ordered=True)
            if self.phase in ("closing", "vanished"):
                self.finish_close()
            if self.phase == "over":
                self.finish()
        except BaseException:
            self.force_end()
            raise

    def force_end(self) -> None:
        """After a failure: end both agents at any cost, without checks."""
        for end in self.ends.values():
            for kind, *args in (("vanish", "reset"), ("finish",)):
                try:
                    end.handle.call(kind, *args, timeout=WAIT)
                except BaseException:
                    continue
        self.ends = {}
        self.phase = "none"

    # -- sending -------------------------------------------------------------------

    def submit_send(self, side: str, what: Outgoing) -> None:
        end = self.ends[side]
        message = what.message if what.pieces is None else what.pieces
        future = end.handle.submit("send", message, what.compress)
        end.sent.append(Sent(what, future, after_own_close=end.closed_with is not None))

    @precondition(lambda self: self.live())
    @rule(side=st.sampled_from(SIDES), what=outgoing())
    @guarded
    def send(self, side: str, what: Outgoing) -> None:
        self.submit_send(side, what)

    @precondition(lambda self: self.phase == "open")
    @rule(
        side=st.sampled_from(SIDES),
        size=st.sampled_from([0, 125, 64 * KiB, 256 * KiB + 1]),
        count=st.integers(2, 24),
        seed=st.integers(0, 2**32 - 1),
    )
    @guarded
    def burst(self, side: str, size: int, count: int, seed: int) -> None:
        """Many messages at once, random bytes (incompressible): with the
        peer not reading, its queue fills and then the kernel's buffers."""
        for index in range(count):
            message = make_message(size, text=False, repetitive=False, seed=seed + index)
            self.submit_send(side, Outgoing(message, None, None))

    # -- reading -------------------------------------------------------------------

    def pending(self, side: str) -> int:
        """Messages the peer sent that `side` has not read (some may fail)."""
        return len(self.ends[other(side)].sent) - len(self.ends[side].received)

    def safe_to_read(self, side: str) -> bool:
        """Whether reading `side` to its end needs nothing of the peer.

        Once a close is under way, `side` reads the peer's close frame only
        when the peer sends one: its own close (the peer is a closer), or
        the echo of ours once it read it (the peer ended). Reading the
        closer first could wait on a peer whose reading is paused."""
        end, peer = self.ends[side], self.ends[other(side)]
        if end.ended is not None:
            return False
        if self.phase == "closing":
            return peer.closed_with is not None or peer.ended is not None
        return self.phase == "vanished"

    def read_one(self, side: str) -> bool:
        """Read one message on `side` and check it; False if recv raised
        ConnectionClosed (allowed only once the connection is ending)."""
        end, peer = self.ends[side], self.ends[other(side)]
        index = len(end.received)
        message: Message | None = None
        try:
            message = end.handle.call("recv")
        except ConnectionClosed as closed:
            end.ended = closed
        except TimeoutError:
            raise AssertionError(
                f"{end.handle}: no message #{index} within the timeout "
                f"({self.phase}, {self.pending(side)} sent and not read)"
            ) from None
        if message is None:
            assert self.phase != "open", (
                f"{end.handle}: recv raised {end.ended!r} on an open connection, "
                f"with {self.pending(side)} messages of the peer not read"
            )
            return False
        assert index < len(peer.sent), (
            f"{end.handle}: got message #{index} ({_size(message)} B), "
            f"but the peer sent only {len(peer.sent)}"
        )
        expected = peer.sent[index].what
        wrong = f"{end.handle}: message #{index} is not the one sent ({expected.describe()})"
        assert type(message) is type(expected.message), f"{wrong}: {type(message).__name__}"
        assert message == expected.message, f"{wrong}: got {_size(message)} B"
        end.received.append(message)
        return True

    @precondition(lambda self: self.live())
    @rule(side=st.sampled_from(SIDES), count=st.integers(1, 6))
    @guarded
    def read(self, side: str, count: int) -> None:
        """Resume reading `side` for a while, then pause it again."""
        if self.phase == "open":
            count = min(count, self.pending(side))
        elif not self.safe_to_read(side):
            return
        blocked = sum(not sent.future.done() for sent in self.ends[other(side)].sent)
        note(f"read resumed with {min(blocked, 3)}+ of the peer's sends not done")
        for _ in range(count):
            if not self.read_one(side):
                return

    @precondition(lambda self: self.phase == "open")
    @rule()
    @guarded
    def drain(self) -> None:
        """Both sides read everything: then every send and ping completes."""
        for side in SIDES:
            for _ in range(self.pending(side)):
                self.read_one(side)
        for end in self.ends.values():
            for index, sent in enumerate(end.sent):
                wait_done(sent.future, WAIT, f"{end.handle}: send #{index} after the peer read")
            for ping in end.pings:
                wait_done(ping.future, WAIT, f"{end.handle}: ping {ping.payload!r:.20}")
        self.check_completed()

    # -- pings ---------------------------------------------------------------------

    @precondition(lambda self: self.live())
    @rule(side=st.sampled_from(SIDES), extra=ping_extras)
    @guarded
    def ping(self, side: str, extra: bytes) -> None:
        self.pings_sent += 1
        payload = f"{self.pings_sent}:".encode() + extra  # unique: at most 125 bytes
        end = self.ends[side]
        started = time.monotonic()  # (before the agent can send it)
        future = end.handle.submit("ping", payload)
        end.pings.append(PendingPing(payload, future, started))

    # -- closing ---------------------------------------------------------------------

    def close(self, side: str, code: int, reason: str, *, ordered: bool) -> None:
        end = self.ends[side]
        if ordered:  # behind the sends this side has queued
            end.closes.append(end.handle.submit("close", code, reason))
        else:
            end.handle.call("close_nowait", code, reason)
        end.closed_with = (code, reason)
        self.phase = "closing"

    @precondition(lambda self: self.phase == "open" or (self.phase == "closing" and self.live()))
    @rule(
        side=st.sampled_from(SIDES),
        code=close_codes,
        reason=close_reasons,
        ordered=st.booleans(),
    )
    @guarded
    def start_close(self, side: str, code: int, reason: str, ordered: bool) -> None:
        end = self.ends[side]
        if end.closed_with is not None or end.ended is not None:
            return
        self.close(side, code, reason, ordered=ordered)

    @precondition(lambda self: self.phase == "open")
    @rule(side=st.sampled_from(SIDES), how=st.sampled_from(VANISH_HOW))
    @guarded
    def vanish(self, side: str, how: str) -> None:
        self.ends[side].handle.call("vanish", how)
        note(f"vanish: {how}")
        self.phase = "vanished"
        self.vanished_by = how

    @precondition(lambda self: self.phase in ("closing", "vanished"))
    @rule()
    @guarded
    def finish_close(self) -> None:
        """Read both sides to their end (in an order that needs nothing of
        a paused side), then check what each got and how each ended."""
        for _ in range(2):
            side = next((side for side in SIDES if self.safe_to_read(side)), None)
            if side is None:
                break
            limit = self.pending(side) + 1
            for _ in range(limit):
                if not self.read_one(side):
                    break
            else:
                raise AssertionError(f"{self.ends[side].handle}: more messages than were sent")
        # Each side ends at most close_timeout after its close handshake (or
        # its last write, to a peer that stopped reading: a socket shut down).
        # Most end at once; see the regression test below for one that does not.
        bound = CLOSE_TIMEOUT + TIMEOUT
        started = time.monotonic()
        for end in self.ends.values():
            assert end.ended is not None, f"{end.handle}: recv never raised ConnectionClosed"
            end.handle.call("wait_closed", bound, timeout=bound + WAIT)
            futures = [sent.future for sent in end.sent] + end.closes
            futures += [ping.future for ping in end.pings]
            for future in futures:
                wait_done(future, bound + WAIT, f"{end.handle}: an operation after the end")
        if time.monotonic() - started > SLOW:
            note("ending: a side took over 2 s to end (its close timer or last write bound)")
        self.check_completed()
        if self.phase == "vanished":
            self.check_vanished()
        else:
            self.check_closed()
        self.phase = "over"

    # -- checks ------------------------------------------------------------------------

    def check_completed(self) -> None:
        """Sends and pings that finished: what each may have done by now."""
        for end in self.ends.values():
            for index, sent in enumerate(end.sent):
                if not sent.future.done():
                    continue
                error = sent.future.exception()
                where = f"{end.handle}: send #{index} ({sent.what.describe()})"
                if sent.after_own_close:
                    assert isinstance(error, ConnectionClosed), (
                        f"{where} after its own close: {error!r} instead of ConnectionClosed"
                    )
                elif self.phase == "open":
                    assert error is None, f"{where} failed on an open connection: {error!r}"
                else:
                    assert error is None or isinstance(error, ConnectionClosed), (
                        f"{where}: {error!r}"
                    )
            for ping in end.pings:
                if not ping.future.done():
                    continue
                error = ping.future.exception()
                where = f"{end.handle}: ping {ping.payload!r:.20}"
                if error is None:
                    rtt = ping.future.result()
                    took = time.monotonic() - ping.started
                    assert isinstance(rtt, float), f"{where} returned {rtt!r}"
                    assert math.isfinite(rtt), f"{where} returned {rtt!r}"
                    assert 0 <= rtt <= took + 0.001, f"{where}: rtt {rtt} s, took {took} s"
                else:
                    assert self.phase != "open", f"{where} failed on an open connection: {error!r}"
                    assert isinstance(error, ConnectionClosed), f"{where}: {error!r}"
            for future in end.closes:
                if future.done():
                    error = future.exception()
                    assert error is None, f"{end.handle}: close() raised {error!r}"

    @invariant()
    @guarded
    def still_open(self) -> None:
        """While nothing closed it, both sides say the connection is open."""
        if self.phase != "open":
            return
        for end in self.ends.values():
            state, code, reason = end.handle.call("status")
            assert (state, code) == ("OPEN", None), (
                f"{end.handle}: {state} with close code {code} ({reason!r}) "
                "though nothing closed the connection"
            )
        self.check_completed()

    def check_delivery(self, clean: bool) -> None:
        for side, end in self.ends.items():
            peer = self.ends[other(side)]
            results = [sent.future.exception() is None for sent in peer.sent]
            succeeded = sum(results)
            assert results == [True] * succeeded + [False] * (len(results) - succeeded), (
                f"{peer.handle}: a send succeeded after one failed: {results}"
            )
            if clean:
                assert len(end.received) == succeeded, (
                    f"{end.handle} received {len(end.received)} messages; "
                    f"the peer's sends succeeded for {succeeded} of {len(peer.sent)}"
                )
            else:  # whatever got through before the peer vanished, in order
                assert len(end.received) <= len(peer.sent)
            got = len(end.received)
            share = "all" if got == len(peer.sent) else "some" if got else "none"
            note(f"{'clean close' if clean else 'vanished'}: got {share} of what the peer sent")

    def check_ended_as(self, end: End, code: int, reason: str, how: str) -> None:
        state, close_code, close_reason = end.handle.call("status")
        assert state == "CLOSED", f"{end.handle}: {state} after the end"
        assert (close_code, close_reason) == (code, reason), (
            f"{end.handle}: ended with {close_code} {close_reason!r}, expected {code} "
            f"{reason!r} ({how})"
        )
        error = end.ended
        assert error is not None
        assert (error.code, error.reason) == (code, reason), (
            f"{end.handle}: recv raised {error!r}, but close_code is {code} {reason!r}"
        )
        expected = ConnectionClosedOK if code in CLEAN_CODES else ConnectionClosedError
        assert type(error) is expected, f"{end.handle}: {error!r} for code {code}"

    def check_closed(self) -> None:
        """Each side ended with the close frame it received: the peer's own
        close, or the echo of its own (code, no reason)."""
        self.check_delivery(clean=True)
        server, client = self.ends["server"], self.ends["client"]
        # (server's end, client's end), for each order the closes may have met in
        outcomes: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {}
        if server.closed_with is not None:  # the client echoed the server's close
            code, reason = server.closed_with
            outcomes["the client echoed"] = ((code, ""), (code, reason))
        if client.closed_with is not None:  # the server echoed the client's
            code, reason = client.closed_with
            outcomes["the server echoed"] = ((code, reason), (code, ""))
        if server.closed_with is not None and client.closed_with is not None:
            outcomes["crossed"] = (client.closed_with, server.closed_with)
        got = []
        for end in (server, client):
            _, code, reason = end.handle.call("status")
            got.append((code, reason))
        matched = [how for how, ends in outcomes.items() if ends == tuple(got)]
        assert matched, (
            f"close codes (server, client) {got}; possible: {outcomes} "
            f"(server closed with {server.closed_with}, client with {client.closed_with})"
        )
        for end, (code, reason) in zip((server, client), got, strict=True):
            self.check_ended_as(end, code, reason, "a clean close")
        note(f"clean close: {matched[0]}")

    def check_vanished(self) -> None:
        self.check_delivery(clean=False)
        for end in self.ends.values():
            assert end.ended is not None
            self.check_ended_as(end, 1006, end.ended.reason, "the peer vanished")


def machine_for(servers: Servers, server_backend: str, client_backend: str) -> type:
    return type(
        f"Machine_{server_backend}_{client_backend}",
        (ConnectionMachine,),
        {"servers": servers, "server_backend": server_backend, "client_backend": client_backend},
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with servers_running() as running:
        yield running
    if os.environ.get("WS_STATEFUL_DEBUG"):
        for label, count in sorted(STATS.items()):
            print(f"{count:8d}  {label}", file=sys.stderr)


def budget() -> settings:
    override = os.environ.get("WS_STATEFUL_EXAMPLES")
    examples = int(override) if override else EXAMPLES.get(PROFILE, EXAMPLES["ci"])
    return settings(max_examples=examples, stateful_step_count=STEPS.get(PROFILE, STEPS["ci"]))


@pytest.mark.timeout(120 if PROFILE == "ci" else 1200)  # (deep: many examples per pair)
@pytest.mark.parametrize("client_backend", BACKENDS)
@pytest.mark.parametrize("server_backend", BACKENDS)
def test_generated_schedules(servers: Servers, server_backend: str, client_backend: str) -> None:
    run_state_machine_as_test(
        machine_for(servers, server_backend, client_backend), settings=budget()
    )


# -- regressions found by the state machine -------------------------------------------

# A client whose receive queue is full (reading paused) holds the first
# fragment of a message the server never finishes, followed in the same
# read by the server's close frame: recv() took the fragment, found the
# connection over and raised without waking the reader, so the server's TCP
# close went unread and close() waited out close_timeout (asyncio, trio).


@pytest.mark.parametrize(
    "backend",
    [
        "blocking",
        "asyncio",
        "trio",
    ],
)
def test_client_ends_with_the_servers_tcp_close_after_an_unfinished_message(
    backend: str,
) -> None:
    """The server closes in the middle of a fragmented message and then
    closes TCP; the client, with `max_queue=1`, must end with it, not at its
    own close timer."""
    close_timeout = 4.0
    prompt = 2.0  # the blocking reader's poll is 1 s
    with server_closing_mid_message() as (port, echoed):
        url = f"ws://127.0.0.1:{port}/"
        options = {"max_queue": 1, "close_timeout": close_timeout, "compression": None}
        with harness_client(backend, url, **options) as ws:
            # The client's reader read the fragment and the close frame
            # together (it answered the close), and paused: its queue is full.
            assert echoed.wait(WAIT), "the client never answered the server's close"
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv()  # the unfinished message is dropped; the close is news
            assert (closed.value.code, closed.value.reason) == (1000, "bye")
            started = time.monotonic()
            ws.wait_closed()  # (bounded by the harness, and by close_timeout)
            took = time.monotonic() - started
            assert took < prompt, (
                f"{backend} client: the connection ended {took:.1f} s after the close "
                f"handshake and the server's TCP close (close_timeout {close_timeout} s)"
            )
