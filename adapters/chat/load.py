"""`python -m adapters.chat.load`: put N chatters on a running wschat and
measure what it delivers.

    python -m adapters.chat.load --url ws://127.0.0.1:8000/ws \\
        --clients 100 --rate 100 --duration 10 [--plot load.svg] [--json]

N real WebSocket clients (our asyncio client, all on one event loop) connect,
join with unique nicknames, then say R messages a second in total, taking
turns, for S seconds. Every message carries this run's tag and a sequence
number; all the clients live in this one process, so one clock times each
message from its send to its arrival at every client in the room (the
sender included: the chat broadcasts to everyone, and the page shows your
own message when it comes back). Whatever else arrives (welcome, joins and
leaves, presence, other people's messages) is ignored, whatever its format.

Phases: connect and join (at most `--concurrency` handshakes at a time);
settle (until the room has been quiet for a moment: the joins' broadcasts
must not count as chat latency); chat; drain (until every delivery is in,
or none came for a second); close. A progress line goes to stderr every
second; the summary to stdout at the end (`--json`: as JSON).

The chat limits each client address (20 connections, 2 messages a second
and 1 join a second after a burst, by default), so on loopback each client
binds a source address of its own, 127.0.0.2 upwards (on Linux every
127.x.y.z is local); `--source` names other addresses or ranges.

Exit status: 0 when every client joined and every message reached everyone;
1 when the run could not happen (no client got in; the message says why);
2 for bad arguments; 3 when it ran with problems (refused clients, closes,
losses: the summary counts them); 130 when interrupted (summary printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import json
import os
import resource
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import ConnectionClosed, HandshakeError, InvalidURI
from .._common import ClientOptions, parse_uri
from ..asyncio import WebSocket, connect
from .load_stats import Histogram, Sources, auto_sources, parse_sources
from .load_svg import Panel, Series, render

# What wschat allows by default (cli.py, room.py): said in the warnings
# when a run would run into them.
CHAT_CONNECTIONS_PER_IP = 20
CHAT_RATE_PER_IP = 2.0

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


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1000
    return (
        f"{value:.2f} ms"
        if value < 10
        else f"{value:.1f} ms"
        if value < 100
        else f"{value:,.0f} ms"
    )


def counts(counter: dict[str, int]) -> str:
    if not counter:
        return "none"
    return ", ".join(
        f"{key} ({value})" for key, value in sorted(counter.items(), key=lambda kv: -kv[1])
    )


def render_summary(summary: dict[str, Any]) -> str:
    """The summary for a person: one line a topic."""
    clients, messages = summary["clients"], summary["messages"]
    deliveries, latency, to_all = (
        summary["deliveries"],
        summary["latency_s"],
        summary["to_all_receivers_s"],
    )
    generator = summary["generator"]
    failed = sum(clients["connect_failures"].values())
    sent_rate = messages["sent_per_s"]
    per_s = deliveries["per_s"]
    lines = [
        f"wschat load: {summary['url']}, {clients['requested']} clients, "
        f"{messages['rate']:g} msgs/s for {messages['duration']:g} s"
        + (f" (sources {clients['sources']})" if clients["sources"] else ""),
        f"clients     {clients['connected']} connected, {failed} failed to connect"
        + (f" ({counts(clients['connect_failures'])})" if failed else "")
        + f"; {clients['joined']} joined"
        + (
            f", join refused: {counts(clients['join_failures'])}"
            if clients["join_failures"]
            else ""
        ),
        f"messages    {messages['sent']} sent"
        + (f" ({sent_rate:.1f}/s)" if sent_rate else "")
        + f"; reached everyone {messages['reached_everyone']}, some {messages['reached_some']},"
        f" no one {messages['reached_no_one']}"
        + (
            f"; send failures: {counts(messages['send_failures'])}"
            if messages["send_failures"]
            else ""
        ),
        f"deliveries  {deliveries['expected']} expected, {deliveries['received']} received,"
        f" {deliveries['lost']} lost"
        + (
            f" ({deliveries['lost_to_closed_clients']} to clients closed by the server,"
            f" {deliveries['lost_to_connected_clients']} to connected ones)"
            if deliveries["lost"]
            else ""
        )
        + (f", {deliveries['duplicates']} duplicates" if deliveries["duplicates"] else "")
        + (f"; {per_s:,.0f}/s" if per_s else ""),
        f"latency     p50 {ms(latency['p50'])}  p90 {ms(latency['p90'])}  p99 {ms(latency['p99'])}"
        f"  max {ms(latency['max'])}  (per delivery, send to arrival)",
        f"to all      p50 {ms(to_all['p50'])}  p99 {ms(to_all['p99'])}  max {ms(to_all['max'])}"
        f"  (per message that reached everyone: send to its last arrival)",
        f"closes      {counts(summary['closes'])}",
        f"errors      {counts(summary['errors'])}",
    ]
    share = generator["cpu_share"]
    if share is not None:
        line = (
            f"generator   CPU {share:.0%} of one core; event loop lag p99 "
            f"{ms(generator['loop_lag_p99_s'])}, max {ms(generator['loop_lag_max_s'])}"
        )
        if share > 0.9:
            line += " (saturated: the figures include the generator's own delay)"
        lines.append(line)
    if summary["interrupted"]:
        lines.append("interrupted: the figures cover the run up to Ctrl-C")
    return "\n".join(lines)


def problems(summary: dict[str, Any]) -> list[str]:
    """What went wrong in a run that did happen, one phrase each."""
    found = []
    clients, deliveries = summary["clients"], summary["deliveries"]
    failed = sum(clients["connect_failures"].values()) + sum(clients["join_failures"].values())
    if failed:
        found.append(f"{failed} of {clients['requested']} clients did not get in")
    if summary["closes"]:
        found.append(f"the server closed {sum(summary['closes'].values())} clients")
    if deliveries["lost"]:
        found.append(f"{deliveries['lost']} deliveries lost")
    if deliveries["duplicates"]:
        found.append(f"{deliveries['duplicates']} deliveries duplicated")
    if summary["messages"]["send_failures"]:
        found.append("some sends failed")
    return found


def fatal_message(run: LoadRun) -> str:
    config = run.config
    reasons = counts(dict(run.connect_failures + run.join_failures))
    text = f"no client could join the chat at {config.url} ({reasons})"
    if any("refused" in reason for reason in run.connect_failures):
        text += "; is wschat running there?"
    elif any(reason.startswith("HTTP 503") for reason in run.connect_failures):
        text += "; the server refused them (503): too many clients, or per address?"
    return text


# -- the command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[LoadConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.chat.load",
        description="Put N chatters on a running wschat; measure deliveries and latency.",
    )
    parser.add_argument(
        "--url", required=True, help="the chat's WebSocket, such as ws://127.0.0.1:8000/ws"
    )
    parser.add_argument("--clients", type=int, default=100, help="clients (default: 100)")
    parser.add_argument(
        "--rate", type=float, default=10.0, help="messages per second, in total (default: 10)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of chat (default: 10)"
    )
    parser.add_argument(
        "--source",
        default="auto",
        help="source addresses, such as 127.0.0.2-127.0.3.255 (comma-separated addresses and "
        "ranges); 'auto' (default): one 127.x address per client when the chat is on IPv4 "
        "loopback; 'none': the system's choice",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="handshakes at once (default: 64)"
    )
    parser.add_argument(
        "--size", type=int, default=0, help="pad each message to this many characters"
    )
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument(
        "--drain", type=float, default=10.0, help="at most this long for late deliveries"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="uvloop if installed (auto)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE", help="write an SVG plot of latency over time"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.concurrency < 1:
        parser.error(
            "--clients and --concurrency must be at least 1, --rate and --duration positive"
        )
    if args.size < 0 or args.size > 100_000 or args.drain < 0:
        parser.error("--size must be from 0 to 100000, --drain 0 or more")
    if args.rate * args.duration > 10_000_000:
        parser.error("at most ten million messages a run")
    try:
        uri = parse_uri(args.url)
    except InvalidURI as error:
        parser.error(str(error))
    sources: Sources | None
    if args.source == "auto":
        sources = auto_sources(uri.host, args.clients)
    elif args.source == "none":
        sources = None
    else:
        try:
            sources = parse_sources(args.source)
        except ValueError as error:
            parser.error(f"--source: {error}")
    config = LoadConfig(
        url=args.url,
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        sources=sources,
        concurrency=args.concurrency,
        drain=args.drain,
        size=args.size,
        deflate=not args.no_deflate,
        progress=not args.quiet,
    )
    return config, args


def warnings_for(config: LoadConfig) -> list[str]:
    """What the chat's default per-address limits will make of this run."""
    said = []
    per_address = (
        config.clients
        if config.sources is None
        else config.sources.most_per_address(config.clients)
    )
    if per_address > CHAT_CONNECTIONS_PER_IP:
        said.append(
            f"up to {per_address} clients share a source address; wschat admits "
            f"{CHAT_CONNECTIONS_PER_IP} per address by default (--source spreads them)"
        )
    rate = config.rate / config.clients * per_address
    if rate > CHAT_RATE_PER_IP:
        said.append(
            f"{rate:.1f} messages/s per source address; wschat allows {CHAT_RATE_PER_IP:g}/s"
            " per address by default (its --rate), so some will be refused"
        )
    return said


def raise_file_limit(needed: int) -> None:
    """Raise the soft limit on open files to what the clients need, up to
    the hard limit; LoadError if that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and soft < needed:
            raise LoadError(f"{needed} open files needed, but `ulimit -n` allows {soft}")


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for (or available, with auto), else None:
    the default loop. uvloop is optional: not a dependency."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise LoadError("--loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    config, args = parse_args(argv)
    try:
        raise_file_limit(config.clients + 64)
        factory = event_loop_factory(args.loop)
    except LoadError as error:
        print(f"load: {error}", file=err)
        return EXIT_FATAL
    for warning in warnings_for(config):
        print(f"load: warning: {warning}", file=err)
    if config.progress:
        sources = "" if config.sources is None else f" from {config.sources.describe()}"
        print(
            f"load: {config.clients} clients{sources} to {config.url}; "
            f"{config.messages} messages at {config.rate:g}/s",
            file=err,
            flush=True,
        )

    holder: list[LoadRun] = []

    async def go() -> None:
        run = LoadRun(config, progress_out=err)
        holder.append(run)
        await run.run()

    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            runner.run(go())
        except KeyboardInterrupt:  # (a second Ctrl-C, or one before the handler was set)
            print("load: interrupted", file=err)
            return EXIT_INTERRUPTED
    run = holder[0]
    if not run.joined:
        if run.interrupted:
            print("load: interrupted before any client joined", file=err)
            return EXIT_INTERRUPTED
        print(f"load: {fatal_message(run)}", file=err)
        return EXIT_FATAL
    summary = run.summary()
    if args.json:
        print(json.dumps(summary, indent=2), file=out)
    else:
        print(render_summary(summary), file=out)
    if args.plot is not None:
        try:
            args.plot.write_text(run.plot(), encoding="utf-8")
        except OSError as error:
            print(
                f"load: cannot write the plot to {args.plot}: {describe_os_error(error)}", file=err
            )
            return EXIT_FATAL
        print(f"load: plot written to {args.plot}", file=err)
    if run.interrupted:
        return EXIT_INTERRUPTED
    found = problems(summary)
    if found:
        print(f"load: problems: {'; '.join(found)}", file=err)
        if summary["closes"] and not run.alive:
            print("load: the server closed every connection", file=err)
        return EXIT_PROBLEMS
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
