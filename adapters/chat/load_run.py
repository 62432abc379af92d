"""One run of the load generator (`python -m adapters.chat.load`, whose
docstring says what it measures): the clients, their phases and the
numbers they collect; `LoadRun.summary()` is what is reported."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

from .. import ConnectionClosed, HandshakeError
from .._common import ClientOptions
from ..asyncio import WebSocket, connect
from .load_report import counts, ms
from .load_stats import Histogram, Sources
from .load_svg import Panel, Series, render

ABORT_AFTER = 20  # failed connections without a single success: stop trying
QUIET = 0.5  # seconds without a message that count as a settled room
QUIET_AFTER_CHAT = 1.0  # ... and as no more deliveries to wait for
SEND_STALL = 1.0  # seconds a send may wait for the socket before it is counted stalled
LAG_INTERVAL = 0.05  # how often the event loop's lag is sampled
PERCENTS = (50.0, 90.0, 99.0)
EXIT_OK, EXIT_FATAL, EXIT_PROBLEMS, EXIT_INTERRUPTED = 0, 1, 3, 130


class LoadError(Exception):
    """The run cannot happen; the message says why, for a person."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    url: str
    clients: int
    rate: float  # messages per second, all clients together
    duration: float
    sources: Sources | None = None
    concurrency: int = 64  # handshakes and joins in flight at once
    settle: float = 15.0  # at most this long for the room to go quiet
    drain: float = 10.0  # at most this long for the last deliveries
    size: int = 0  # pad each text to this many characters
    deflate: bool = True  # offer permessage-deflate, as browsers do
    open_timeout: float = 10.0
    join_timeout: float = 20.0
    close_timeout: float = 5.0
    progress: bool = True

    @property
    def messages(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass(slots=True, eq=False)
class Member:
    index: int
    nick: str
    source: str | None
    ws: WebSocket | None = None
    joined: bool = False
    join_error: str | None = None
    closed_at: float | None = None  # when the server closed it (perf_counter)


def describe_os_error(error: OSError) -> str:
    """A connection failure in a few words: the errno's meaning when it
    has one ("connection refused"), else the message."""
    if isinstance(error, TimeoutError):
        return "timed out"
    if error.errno is not None:  # (asyncio's strerror names the address instead)
        name = errno.errorcode.get(error.errno, str(error.errno))
        return f"{os.strerror(error.errno).lower()} ({name})"
    return str(error) or type(error).__name__


def close_label(code: int | None, reason: str) -> str:
    text = "no status" if code is None else str(code)
    return f"{text} {reason}".rstrip()


def bucket_width(duration: float) -> float:
    """The plot's time step: about a hundred points over the run, rounded."""
    for width in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0):
        if duration / width <= 120:
            return width
    return 60.0


class LoadRun:
    """One run: the members, what they sent and received, and the counts."""

    def __init__(self, config: LoadConfig, *, progress_out: TextIO = sys.stderr) -> None:
        self.config = config
        self.progress_out = progress_out
        tag = secrets.token_hex(4)
        self.marker = f"lg{tag}:"  # starts every text of this run; seq follows
        self.members = [
            Member(
                i, f"ld{tag[:6]}-{i}", None if config.sources is None else config.sources.address(i)
            )
            for i in range(config.clients)
        ]
        self.phase = "connecting"
        self.stop = asyncio.Event()
        self.interrupted = False
        self.finishing = False  # our own closes at the end are not the server's
        self.aborted: str | None = None
        self.gate = asyncio.Semaphore(config.concurrency)
        self.attempts_done = 0
        self.all_attempted = asyncio.Event()
        # clients
        self.connected = 0
        self.joined = 0
        self.connect_failures: Counter[str] = Counter()
        self.join_failures: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()  # closed by the server, after joining
        self.errors: Counter[str] = Counter()  # the chat's error events, by code
        self.send_failures: Counter[str] = Counter()
        self.alive = 0  # joined members not closed, once the chat starts
        # messages, by sequence number
        self.send_at: list[float] = []
        self.sender: list[int] = []
        self.expected: list[int] = []
        self.got: list[int] = []
        self.last_at: list[float] = []
        self.seen: list[bytearray | None] = []  # per receiver; None once complete
        # deliveries
        self.delivered = 0
        self.duplicates = 0
        self.unknown = 0  # our tag, but a sequence number we never sent
        self.latency = Histogram()
        self.to_all = Histogram()
        self.lag = Histogram()
        self.width = bucket_width(config.duration)
        self.latency_by_bucket: dict[int, Histogram] = {}
        self.arrivals_by_bucket: Counter[int] = Counter()
        self.t0 = 0.0
        self.sending_ended = 0.0
        self.last_message_at = time.perf_counter()
        self.last_delivery_at = 0.0
        self.cpu = 0.0  # process CPU seconds over chat and drain
        self.wall = 0.0

    # -- receiving -------------------------------------------------------------

    def on_text(self, member: Member, raw: str | bytes) -> None:
        """One message from the server. Ours are found by their tag without
        parsing the JSON (there are a hundred thousand a second of them at
        scale); the rest is parsed only while joining, or if it may be an
        error, and anything not understood is ignored."""
        now = time.perf_counter()
        self.last_message_at = now
        if not isinstance(raw, str):
            return
        at = raw.find(self.marker)
        if at >= 0:
            start = at + len(self.marker)
            try:
                seq = int(raw[start : raw.index(":", start)])
            except ValueError:
                self.unknown += 1
                return
            self.deliver(member, seq, now)
            return
        if member.joined and "error" not in raw:
            return  # presence, joins, leaves, other people: not measured
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "error":
            code = str(event.get("code", "?"))
            self.errors[code] += 1
            if not member.joined and member.join_error is None:
                member.join_error = code
        elif kind == "you" and not member.joined:
            member.joined = True

    def deliver(self, member: Member, seq: int, now: float) -> None:
        if not 0 <= seq < len(self.send_at):
            self.unknown += 1
            return
        seen = self.seen[seq]
        if seen is None or seen[member.index]:
            self.duplicates += 1
            return
        seen[member.index] = 1
        sent = self.send_at[seq]
        latency = now - sent
        self.latency.add(latency)
        key = int((sent - self.t0) / self.width)
        bucket = self.latency_by_bucket.get(key)
        if bucket is None:
            bucket = self.latency_by_bucket[key] = Histogram()
        bucket.add(latency)
        self.arrivals_by_bucket[int((now - self.t0) / self.width)] += 1
        self.delivered += 1
        self.last_delivery_at = now
        self.last_at[seq] = now
        got = self.got[seq] = self.got[seq] + 1
        if got == self.expected[seq]:
            self.seen[seq] = None  # complete: its per-receiver record is not needed
            self.to_all.add(latency)

    # -- one member --------------------------------------------------------------

    async def member(self, member: Member) -> None:
        """Connect, join, then read until the connection ends."""
        ws = await self.join(member)
        if ws is None:
            return
        try:
            while True:
                self.on_text(member, await ws.recv())
        except ConnectionClosed as closed:
            if not self.finishing:
                member.closed_at = time.perf_counter()
                self.closes[close_label(closed.code, closed.reason)] += 1
                if self.phase in ("chat", "drain"):
                    self.alive -= 1
                    if self.alive == 0:
                        self.stop.set()

    async def join(self, member: Member) -> WebSocket | None:
        """The member's connection once it has joined, or None (counted)."""
        try:
            async with self.gate:
                if self.aborted or self.stop.is_set():
                    return None
                ws = await self.open(member)
                if ws is None:
                    return None
                try:
                    async with asyncio.timeout(self.config.join_timeout):
                        await ws.recv()  # the welcome
                        await ws.send(json.dumps({"type": "join", "nick": member.nick}))
                        while not member.joined and member.join_error is None:
                            self.on_text(member, await ws.recv())
                except TimeoutError:
                    member.join_error = "no answer to the join"
                except ConnectionClosed as closed:
                    member.join_error = f"closed: {close_label(closed.code, closed.reason)}"
                if member.join_error is not None:
                    self.join_failures[member.join_error] += 1
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(self.config.close_timeout):
                            await ws.close()
                    return None
                self.joined += 1
                return ws
        finally:
            self.attempts_done += 1
            if self.attempts_done == len(self.members):
                self.all_attempted.set()

    async def open(self, member: Member) -> WebSocket | None:
        config = self.config
        options: ClientOptions = {
            "open_timeout": config.open_timeout,
            "close_timeout": config.close_timeout,
        }
        if not config.deflate:
            options["compression"] = None
        if member.source is not None:
            options["local_address"] = (member.source, 0)
        reason: str
        try:
            ws = await connect(config.url, **options)
        except HandshakeError as error:
            reason = f"HTTP {error.status}" if error.status is not None else error.reason
        except OSError as error:
            reason = describe_os_error(error)
            if member.source is not None and error.errno == errno.EADDRNOTAVAIL:
                reason = f"cannot use source address {member.source}: {reason}"
        except ConnectionClosed as closed:
            reason = f"closed during the handshake: {close_label(closed.code, closed.reason)}"
        else:
            member.ws = ws
            self.connected += 1
            return ws
        self.connect_failures[reason] += 1
        failed = sum(self.connect_failures.values())
        if not self.connected and failed >= min(ABORT_AFTER, len(self.members)):
            self.aborted = "no connection succeeded"
            self.stop.set()
        return None

    # -- the phases ----------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
        tasks = [asyncio.create_task(self.member(m)) for m in self.members]
        helpers = [
            asyncio.create_task(self.report_progress()),
            asyncio.create_task(self.watch_lag()),
        ]
        try:
            await self.until(self.all_attempted.wait())
            if not self.joined:
                self.phase = "failed"
                return
            self.phase = "settling"
            await self.settle()
            self.phase = "chat"
            cpu0 = time.process_time()
            await self.chat()
            self.phase = "drain"
            await self.drain()
            self.cpu = time.process_time() - cpu0
            self.wall = time.perf_counter() - self.t0
        finally:
            self.phase = "closing"
            for helper in helpers:
                helper.cancel()
            await self.close_all(tasks)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    def interrupt(self) -> None:
        self.interrupted = True
        self.stop.set()

    async def until(self, awaitable: Any) -> None:
        """Wait for `awaitable` or for the run to be stopped."""
        stopped = asyncio.create_task(self.stop.wait())
        waited = asyncio.ensure_future(awaitable)
        await asyncio.wait({stopped, waited}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, waited):
            task.cancel()

    async def settle(self) -> None:
        """Until no message came for QUIET seconds (the joins' broadcasts
        are through), at most `settle` seconds."""
        deadline = time.perf_counter() + self.config.settle
        while not self.stop.is_set():
            now = time.perf_counter()
            if now - self.last_message_at >= QUIET or now >= deadline:
                return
            await asyncio.sleep(0.05)

    async def chat(self) -> None:
        config = self.config
        participants = [m for m in self.members if m.joined and m.closed_at is None]
        self.alive = len(participants)
        count = len(self.members)
        self.t0 = time.perf_counter()
        turn = 0
        for number in range(config.messages):
            due = self.t0 + number / config.rate
            while (wait := due - time.perf_counter()) > 0 and not self.stop.is_set():
                await asyncio.sleep(min(wait, 0.25))
            if self.stop.is_set() or self.alive <= 0:
                break
            while (sender := participants[turn % len(participants)]).closed_at is not None:
                turn += 1
            turn += 1
            assert sender.ws is not None
            seq = len(self.send_at)
            self.sender.append(sender.index)
            self.expected.append(self.alive)
            self.got.append(0)
            self.last_at.append(0.0)
            self.seen.append(bytearray(count))
            self.send_at.append(time.perf_counter())
            try:
                async with asyncio.timeout(SEND_STALL):
                    await sender.ws.send(self.text(seq))
            except ConnectionClosed:
                self.send_failures["connection closed"] += 1
                self.expected[seq] = 0
                self.seen[seq] = None
            except TimeoutError:  # (queued all the same: it may still arrive)
                self.send_failures[f"send waited over {SEND_STALL:g} s"] += 1
        self.sending_ended = time.perf_counter()

    def text(self, seq: int) -> str:
        """The chat command that says message `seq`: its text is this run's
        tag, the number, and padding up to `size` characters."""
        head = f"{self.marker}{seq}:"
        return json.dumps({"type": "message", "text": head + "x" * (self.config.size - len(head))})

    async def drain(self) -> None:
        """Until every expected delivery is in, or none came for a second,
        at most `drain` seconds."""
        deadline = time.perf_counter() + self.config.drain
        while not self.stop.is_set():
            now = time.perf_counter()
            if self.delivered >= sum(self.expected) or now >= deadline:
                break
            if now - max(self.last_delivery_at, self.sending_ended) >= QUIET_AFTER_CHAT:
                break
            await asyncio.sleep(0.05)

    async def close_all(self, tasks: list[asyncio.Task[None]]) -> None:
        self.finishing = True
        self.stop.set()
        closing = [m.ws.close() for m in self.members if m.ws is not None and m.closed_at is None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.close_timeout + 1):
                await asyncio.gather(*closing, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- watching ------------------------------------------------------------------

    async def watch_lag(self) -> None:
        """How late the event loop wakes up: when it is late, the generator
        itself is the bottleneck and the latencies include its delay."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_INTERVAL)
            if self.phase in ("chat", "drain"):
                self.lag.add(max(0.0, time.perf_counter() - before - LAG_INTERVAL))

    async def report_progress(self) -> None:
        last_delivered, last_at = 0, time.perf_counter()
        started = last_at
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            rate = (self.delivered - last_delivered) / (now - last_at)
            last_delivered, last_at = self.delivered, now
            if self.config.progress:
                print(self.progress_line(now - started, rate), file=self.progress_out, flush=True)

    def progress_line(self, elapsed: float, rate: float) -> str:
        failed = sum(self.connect_failures.values()) + sum(self.join_failures.values())
        head = f"[{elapsed:5.0f} s] {self.phase:<10}"
        if self.phase in ("connecting", "settling"):
            return (
                f"{head} connected {self.connected}/{len(self.members)}, joined {self.joined}, "
                f"failed {failed}"
            )
        p50, p99 = self.latency.percentiles([50, 99])
        return (
            f"{head} clients {self.alive}/{len(self.members)}  sent {len(self.send_at)}  "
            f"delivered {rate:,.0f}/s  p50 {ms(p50)}  p99 {ms(p99)}  "
            f"closed {sum(self.closes.values())}  errors {sum(self.errors.values())}"
        )

    # -- the outcome -----------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        config = self.config
        sent = [seq for seq in range(len(self.send_at)) if self.expected[seq] > 0]
        expected = sum(self.expected[seq] for seq in sent)
        everyone = sum(1 for seq in sent if self.got[seq] == self.expected[seq])
        no_one = sum(1 for seq in sent if self.got[seq] == 0)
        lost_closed = lost_open = 0
        for seq in sent:
            seen = self.seen[seq]
            if seen is None:
                continue
            when = self.send_at[seq]
            for member in self.members:
                if not member.joined or seen[member.index]:
                    continue
                if member.closed_at is None:
                    lost_open += 1
                elif member.closed_at > when:
                    lost_closed += 1
        window = max(self.last_delivery_at, self.sending_ended) - self.t0 if sent else 0.0
        sending = self.sending_ended - self.t0 if sent else 0.0
        latency = self.latency.percentiles(PERCENTS)
        to_all = self.to_all.percentiles([50, 99])
        lag = self.lag.percentiles([99])
        return {
            "url": config.url,
            "clients": {
                "requested": config.clients,
                "connected": self.connected,
                "joined": self.joined,
                "connect_failures": dict(self.connect_failures),
                "join_failures": dict(self.join_failures),
                "sources": None if config.sources is None else config.sources.describe(),
            },
            "messages": {
                "rate": config.rate,
                "duration": config.duration,
                "sent": len(sent),
                "sent_per_s": len(sent) / sending if sending > 0 else None,
                "send_failures": dict(self.send_failures),
                "reached_everyone": everyone,
                "reached_some": len(sent) - everyone - no_one,
                "reached_no_one": no_one,
            },
            "deliveries": {
                "expected": expected,
                "received": self.delivered,
                "lost": expected - self.delivered,
                "lost_to_closed_clients": lost_closed,
                "lost_to_connected_clients": lost_open,
                "duplicates": self.duplicates,
                "unknown": self.unknown,
                "per_s": self.delivered / window if window > 0 else None,
            },
            "latency_s": {
                "count": self.latency.count,
                "p50": latency[0],
                "p90": latency[1],
                "p99": latency[2],
                "max": self.latency.max if self.latency.count else None,
                "mean": self.latency.mean,
            },
            "to_all_receivers_s": {
                "count": self.to_all.count,
                "p50": to_all[0],
                "p99": to_all[1],
                "max": self.to_all.max if self.to_all.count else None,
            },
            "closes": dict(self.closes),
            "errors": dict(self.errors),
            "generator": {
                "cpu_share": self.cpu / self.wall if self.wall > 0 else None,
                "loop_lag_p99_s": lag[0],
                "loop_lag_max_s": self.lag.max if self.lag.count else None,
            },
            "interrupted": self.interrupted,
        }

    def plot(self) -> str:
        """The SVG: latency percentiles by the second the message was sent,
        and deliveries per second by when they arrived."""
        width = self.width
        keys = range(max([*self.latency_by_bucket, *self.arrivals_by_bucket, 0]) + 1)
        lines: dict[str, list[tuple[float, float | None]]] = {"p50": [], "p99": [], "max": []}
        for key in keys:
            bucket = self.latency_by_bucket.get(key)
            p50, p99 = bucket.percentiles([50, 99]) if bucket else (None, None)
            x = (key + 0.5) * width
            lines["p50"].append((x, None if p50 is None else p50 * 1000))
            lines["p99"].append((x, None if p99 is None else p99 * 1000))
            lines["max"].append((x, bucket.max * 1000 if bucket else None))
        rates = [((k + 0.5) * width, self.arrivals_by_bucket.get(k, 0) / width) for k in keys]
        config = self.config
        return render(
            [
                Panel(
                    "latency per delivery, by when the message was sent",
                    "ms",
                    [Series(name, points) for name, points in lines.items()],
                    log_y=True,
                ),
                Panel("deliveries per second", "deliveries/s", [Series("delivered", rates)]),
            ],
            title=f"wschat load: {config.clients} clients, {config.rate:g} msgs/s, {config.url}",
            x_label="seconds since the first message",
        )


def fatal_message(run: LoadRun) -> str:
    config = run.config
    reasons = counts(dict(run.connect_failures + run.join_failures))
    text = f"no client could join the chat at {config.url} ({reasons})"
    if any("refused" in reason for reason in run.connect_failures):
        text += "; is wschat running there?"
    elif any(reason.startswith("HTTP 503") for reason in run.connect_failures):
        text += "; the server refused them (503): too many clients, or per address?"
    return text
