"""A client and a server connected back to back, driven by hypothesis in any
order: messages, pings, closes from either side, partial deliveries, the
clock moving (keepalive and close timers firing), and transports closing.

Invariants: what each side received is a prefix of what the other sent; two
correct peers never fail each other except through a timeout; and the
close codes agree at the end.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wsproto_core import (
    BytesMessage,
    CloseReceived,
    Connection,
    ConnectionFailed,
    LocalProtocolError,
    PerMessageDeflate,
    Pong,
    State,
    TextMessage,
)
from wsproto_core.events import Event

from .test_connection_properties import send_fragmented
from .wire import open_pair

Side = Literal["client", "server"]
sides = st.sampled_from(["client", "server"])


def other(side: Side) -> Side:
    return "server" if side == "client" else "client"


class BackToBack(RuleBasedStateMachine):
    OPTIONS: ClassVar[dict[str, object]] = {}

    def __init__(self) -> None:
        super().__init__()
        client, server = open_pair(
            ping_interval=5.0,
            ping_timeout=3.0,
            close_timeout=4.0,
            max_message_size=None,
            **self.OPTIONS,
        )
        self.conns: dict[Side, Connection] = {"client": client, "server": server}
        self.wire: dict[Side, bytes] = {"client": b"", "server": b""}
        self.sent: dict[Side, list[str | bytes]] = {"client": [], "server": []}
        self.received: dict[Side, list[str | bytes]] = {"client": [], "server": []}
        self.pings: dict[Side, list[bytes]] = {"client": [], "server": []}
        self.pongs: dict[Side, list[bytes]] = {"client": [], "server": []}
        self.close_sent: dict[Side, int | None] = {"client": None, "server": None}
        self.close_seen: dict[Side, int | None] = {"client": None, "server": None}
        self.failures: dict[Side, list[int]] = {"client": [], "server": []}
        self.transport_closed = False
        self.now = 0.0
        for conn in self.conns.values():
            conn.next_deadline(self.now)

    def flush(self, side: Side) -> None:
        self.wire[side] += self.conns[side].data_to_send()

    def take(self, side: Side, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TextMessage | BytesMessage):
                self.received[side].append(event.data)
            elif isinstance(event, Pong):
                self.pongs[side].append(event.payload)
            elif isinstance(event, CloseReceived):
                self.close_seen[side] = event.code
            elif isinstance(event, ConnectionFailed):
                self.failures[side].append(event.code)

    @rule(
        side=sides,
        message=st.text(max_size=50) | st.binary(max_size=50),
        points=st.lists(st.integers(0, 60), max_size=3),
    )
    def send(self, side: Side, message: str | bytes, points: list[int]) -> None:
        conn = self.conns[side]
        if conn.state is State.OPEN:
            send_fragmented(conn, message, points)
            self.sent[side].append(message)
        else:
            with pytest.raises(LocalProtocolError):
                send_fragmented(conn, message, points)
        self.flush(side)

    @rule(side=sides, payload=st.binary(max_size=20))
    def ping(self, side: Side, payload: bytes) -> None:
        conn = self.conns[side]
        if conn.state is State.OPEN:
            conn.send_ping(payload)
            self.pings[side].append(payload)
        else:
            with pytest.raises(LocalProtocolError):
                conn.send_ping(payload)
        self.flush(side)

    @rule(side=sides, code=st.sampled_from([1000, 1001, 3000, 4999]))
    def close(self, side: Side, code: int) -> None:
        conn = self.conns[side]
        was_open = conn.state is State.OPEN
        conn.close(code)
        if was_open:
            self.close_sent[side] = code
            assert conn.state is State.CLOSING
        self.flush(side)

    @precondition(lambda self: not self.transport_closed)
    @rule(side=sides, size=st.integers(1, 200))
    def deliver(self, side: Side, size: int) -> None:
        data, self.wire[side] = self.wire[side][:size], self.wire[side][size:]
        peer = other(side)
        self.take(peer, self.conns[peer].receive_data(data))
        self.flush(peer)
        assert not self.failures[peer] or self.failures[side] or self.timed_out(peer)

    @rule(seconds=st.sampled_from([0.5, 2.0, 3.5, 6.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        for side in ("client", "server"):
            conn = self.conns[side]
            self.take(side, conn.handle_timeout(self.now))
            self.flush(side)
            deadline = conn.next_deadline(self.now)
            assert deadline is None or deadline > self.now

    def timed_out(self, side: Side) -> bool:
        return any(code in (1006, 1011) for code in self.failures[side])

    @precondition(lambda self: not self.transport_closed)
    @rule(side=sides)
    def close_transport(self, side: Side) -> None:
        """The side that was told to close does so after flushing."""
        if not self.conns[side].should_close_transport:
            return
        peer = other(side)
        self.take(peer, self.conns[peer].receive_data(self.wire[side]))
        self.take(peer, self.conns[peer].receive_eof())
        self.wire[side] = b""
        self.transport_closed = True
        assert self.conns[peer].state is State.CLOSED

    @invariant()
    def received_is_a_prefix_of_sent(self) -> None:
        for side in ("client", "server"):
            got, sent = self.received[other(side)], self.sent[side]
            assert got == sent[: len(got)]
            # Pongs answer our pings in order (RFC 6455 5.5.3 would let a
            # peer skip some, so only the order is required). Keepalive pongs
            # are filtered out: their random 4-byte payloads are not ours.
            ours = [p for p in self.pongs[side] if p in self.pings[side]]
            position = 0
            for payload in ours:
                assert payload in self.pings[side][position:], "pong out of order"
                position = self.pings[side].index(payload, position) + 1

    @invariant()
    def correct_peers_fail_only_by_timeout(self) -> None:
        for side in ("client", "server"):
            for code in self.failures[side]:
                assert code in (1006, 1011), f"{side} failed with {code}"
            assert len(self.failures[side]) <= 1

    @invariant()
    def close_codes_agree(self) -> None:
        for side in ("client", "server"):
            seen = self.close_seen[side]
            if (
                seen is not None
                and self.close_sent[other(side)] is not None
                and not self.failures[other(side)]
            ):
                # What we saw is what the peer sent, or the echo of ours.
                assert seen in (self.close_sent[other(side)], self.close_sent[side])

    @invariant()
    def closed_connections_refuse_to_send(self) -> None:
        for conn in self.conns.values():
            if conn.state is State.CLOSED:
                assert conn.close_code is not None


TestBackToBack = BackToBack.TestCase


class CompressedBackToBack(BackToBack):
    """The same model with permessage-deflate, every message compressed
    (context takeover both ways, so any lost or reordered byte would show)."""

    OPTIONS: ClassVar[dict[str, object]] = {"compression": PerMessageDeflate(min_size=0)}

    @invariant()
    def compression_was_negotiated(self) -> None:
        for conn in self.conns.values():
            assert [e.name for e in conn.extensions] == ["permessage-deflate"]


TestCompressedBackToBack = CompressedBackToBack.TestCase
