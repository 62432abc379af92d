"""The load generator's bookkeeping that needs no network: latency
histograms, percentiles, and which source address each client binds.

Kept apart from `load` so that it is tested on its own, exactly: a run
measures a million deliveries, and what is said about them rests on this.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass

# -- latencies -----------------------------------------------------------------

FLOOR = 1e-6  # seconds: anything faster is counted as this
GROWTH = 1.01  # each bucket is 1% wider than the one below
_LOG_GROWTH = math.log(GROWTH)


class Histogram:
    """Durations in logarithmic buckets, each 1% wide.

    Why not a list of every value: a run at 1,000 clients and 100 messages
    a second records 100,000 deliveries a second, and the progress line
    wants percentiles of all of them every second. Here adding is O(1),
    memory grows with the spread of the values (a few hundred buckets),
    not their number, and a percentile is off by at most half a bucket
    (0.5%). The smallest and largest values are kept exactly, and every
    percentile is clamped between them, so a single value or a constant
    series comes out exact.
    """

    __slots__ = ("_counts", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @staticmethod
    def bucket(value: float) -> int:
        """The bucket of `value`: 0 up to FLOOR, then k for
        [FLOOR * GROWTH**(k-1), FLOOR * GROWTH**k)."""
        if value <= FLOOR:
            return 0
        return int(math.log(value / FLOOR) / _LOG_GROWTH) + 1

    def add(self, value: float) -> None:
        index = self.bucket(value)
        self._counts[index] = self._counts.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        for index, count in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, percent: float) -> float | None:
        """The nearest-rank percentile (the smallest value with at least
        `percent`% of the values at or below it), None if empty."""
        return self.percentiles([percent])[0]

    def percentiles(self, percents: Iterable[float]) -> list[float | None]:
        """Several percentiles in one pass over the buckets."""
        wanted = list(percents)
        if not self.count:
            return [None] * len(wanted)
        for percent in wanted:
            if not 0 <= percent <= 100:
                raise ValueError(f"a percentile is from 0 to 100, not {percent}")
        ranks = sorted((max(1, math.ceil(p / 100 * self.count)), i) for i, p in enumerate(wanted))
        found: list[float | None] = [None] * len(wanted)
        seen = 0
        pending = iter(ranks)
        rank, slot = next(pending)
        for index in sorted(self._counts):
            seen += self._counts[index]
            while rank <= seen:
                found[slot] = self._representative(index)
                following = next(pending, None)
                if following is None:
                    return found
                rank, slot = following
        raise AssertionError("bucket counts do not add up to count")  # pragma: no cover

    def _representative(self, index: int) -> float:
        """The bucket's geometric middle, clamped to the values seen."""
        middle = FLOOR if index == 0 else FLOOR * GROWTH ** (index - 0.5)
        return min(max(middle, self.min), self.max)


# -- source addresses ----------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
# The first source address of the automatic spread: 127.0.0.1 is left to
# whoever else is on this machine (a person with a browser has their own
# rate limits, which a load run must not spend).
AUTO_FIRST = ipaddress.IPv4Address("127.0.0.2")
AUTO_LAST = ipaddress.IPv4Address("127.255.255.254")


@dataclass(frozen=True, slots=True)
class Sources:
    """Source addresses for the clients, handed out in turn: client i binds
    `address(i)`. Ranges are kept as (first, count), so a range as wide as
    127.0.0.0/8 costs nothing until it is used."""

    ranges: tuple[tuple[IPAddress, int], ...]

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ValueError("no source addresses")

    def __len__(self) -> int:
        return sum(count for _, count in self.ranges)

    def address(self, client: int) -> str:
        offset = client % len(self)
        for first, count in self.ranges:
            if offset < count:
                return str(first + offset)
            offset -= count
        raise AssertionError("offset past the ranges")  # pragma: no cover

    def most_per_address(self, clients: int) -> int:
        """The most clients any one address gets, out of `clients`."""
        return math.ceil(clients / len(self)) if clients else 0

    def describe(self) -> str:
        parts = [
            str(first) if count == 1 else f"{first}-{first + (count - 1)}"
            for first, count in self.ranges
        ]
        return ",".join(parts)


def parse_sources(spec: str) -> Sources:
    """`127.0.0.2-127.0.3.255,10.0.0.5`: addresses and inclusive ranges,
    comma-separated, all of one IP version. Raises ValueError saying what
    is wrong."""
    ranges: list[tuple[IPAddress, int]] = []
    versions: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"an empty item in the source list {spec!r}")
        low_text, _, high_text = part.partition("-")
        try:
            low = ipaddress.ip_address(low_text.strip())
            high = ipaddress.ip_address(high_text.strip()) if high_text else low
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or a range a-b of them") from None
        if low.version != high.version:
            raise ValueError(f"{part!r} mixes IPv4 and IPv6")
        if int(high) < int(low):
            raise ValueError(f"{part!r} runs backwards")
        versions.add(low.version)
        ranges.append((low, int(high) - int(low) + 1))
    if len(versions) > 1:
        raise ValueError("the source addresses mix IPv4 and IPv6")
    return Sources(tuple(ranges))


def auto_sources(host: str, clients: int) -> Sources | None:
    """One loopback source address per client when the target is IPv4
    loopback (a 127.x.y.z literal or `localhost`), from 127.0.0.2 up;
    None otherwise (another host's addresses are not ours to pick, and
    IPv6 has one loopback address only)."""
    if clients < 1:
        return None
    if host.lower() != "localhost":
        try:
            target = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        if not isinstance(target, ipaddress.IPv4Address) or target not in LOOPBACK_V4:
            return None
    count = min(clients, int(AUTO_LAST) - int(AUTO_FIRST) + 1)
    return Sources(((AUTO_FIRST, count),))
