"""Rate limits with time as an input, so the room stays free of clocks.

A limit per connection is no limit: whoever reconnects gets a fresh
burst. So the buckets belong to the client's address (`address_key`),
are shared by every connection from it, and outlive those connections
(`Addresses`), in bounded memory.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

UNKNOWN = "unknown"  # the address of a peer whose address is not an IP
KEEP = 60.0  # seconds an idle address is remembered, at least
MAX_IDLE = 10_000  # idle addresses remembered, at most


class TokenBucket:
    """`burst` messages at once, then `rate` per second."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until one is free."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


def address_key(host: str) -> str:
    """Whose bucket a client uses: its IPv4 address, or the /64 of its
    IPv6 address (one subscriber usually holds a whole /64, and could
    otherwise take a fresh address for every connection). IPv4-mapped
    IPv6 addresses count as the IPv4 one; anything that is not an IP
    (a Unix socket, a missing address) shares `UNKNOWN`."""
    if not isinstance(host, str):
        return UNKNOWN
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # (no zone index)
    except ValueError:
        return UNKNOWN
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class AddressLimits:
    """The limits of one address: room messages, and joins and renames
    (each broadcast to everyone, so they are limited apart and harder)."""

    messages: TokenBucket
    joins: TokenBucket
    clients: int = 0  # connected now


class Addresses:
    """Every address with clients, and the idle ones for a while after:
    `keep` seconds, at least until its buckets would have refilled anyway
    (so forgetting them gives nothing away), and at most `max_idle` of
    them (the oldest idle ones go first, so memory stays bounded whatever
    the number of addresses that come and go)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        join_rate: float,
        join_burst: int,
        keep: float = KEEP,
        max_idle: int = MAX_IDLE,
    ) -> None:
        self._rate, self._burst = rate, burst
        self._join_rate, self._join_burst = join_rate, join_burst
        self._keep = max(keep, burst / rate, join_burst / join_rate)
        self._max_idle = max_idle
        self._active: dict[str, AddressLimits] = {}
        self._idle: OrderedDict[str, tuple[AddressLimits, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._active) + len(self._idle)

    def enter(self, key: str, now: float) -> AddressLimits:
        """A client from `key` connected: its address's limits, remembered
        or new."""
        limits = self._active.get(key)
        if limits is None:
            idle = self._idle.pop(key, None)
            if idle is None:
                limits = AddressLimits(
                    TokenBucket(self._rate, self._burst, now),
                    TokenBucket(self._join_rate, self._join_burst, now),
                )
            else:
                limits = idle[0]
            self._active[key] = limits
        limits.clients += 1
        return limits

    def leave(self, key: str, now: float) -> None:
        """A client from `key` left; the last one makes the address idle."""
        limits = self._active.get(key)
        if limits is None:
            return
        limits.clients -= 1
        if limits.clients <= 0:
            del self._active[key]
            self._idle[key] = (limits, now)
            while len(self._idle) > self._max_idle:
                self._idle.popitem(last=False)

    def expire(self, now: float) -> None:
        """Forget the addresses idle for longer than `keep` (oldest first:
        the idle ones are kept in the order they went idle)."""
        while self._idle:
            key, (_, since) = next(iter(self._idle.items()))
            if not now - since > self._keep:  # (a clock stepping back keeps them)
                return
            del self._idle[key]
