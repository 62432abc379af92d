"""What the chat counts as it runs, for `/metrics` (see `monitor.py`).

Plain integers, bumped where things happen (one `+=` each, nothing on the
per-message path that could be slower) and copied into the metrics library
once a second and at each scrape. They only grow; `monitor` turns them into
Prometheus counters by adding what grew since its last look.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class ChatCounters:
    messages_in: int = 0  # WebSocket messages received from clients
    bytes_in: int = 0  # their payload, in bytes (UTF-8 for text)
    messages_out: int = 0  # deliveries: one per client a message was queued for
    bytes_out: int = 0  # their payload, in bytes
    broadcasts: int = 0  # messages framed once and queued for every client here
    slow_drops: int = 0  # clients closed (1013) for letting messages pile up
    rate_limited: int = 0  # messages, joins and renames refused by a rate limit
    hub_rejected: int = 0  # events and history items from Redis dropped as invalid

    def snapshot(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def utf8_size(text: str | bytes) -> int:
    """The size of a message's payload on the wire, before compression.
    Chat text is mostly ASCII, where this costs no encoding."""
    if isinstance(text, bytes) or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))
