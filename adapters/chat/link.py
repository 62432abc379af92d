"""What the three backends' Redis links share: where Redis is, whether it
is up, the backoff, and what gets logged. Each backend adds the sockets."""

from __future__ import annotations

from collections.abc import Callable

from .resp import Subscription, parse_redis_url
from .service import logger

FIRST_DELAY = 0.25  # seconds before the first reconnection attempt
MAX_DELAY = 10.0


class LinkState:
    """Two connections to Redis (one subscribed to the room's channel, one
    for commands), kept up with backoff. While Redis is away `up` is False,
    commands are refused, and the chat carries on with this process's
    clients alone."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        self.host, self.port, self.db = parse_redis_url(url)
        self.history_length = history
        self.deliver = deliver
        self.up = False
        self.delay = FIRST_DELAY

    def _confirm(self, subscription: Subscription) -> None:
        """The subscription is confirmed: Redis is (back) up."""
        if subscription.confirmed and not self.up:
            logger.info("redis connected at %s:%d", self.host, self.port)
            self.up = True
            self.delay = FIRST_DELAY

    def _lost(self, reason: str) -> float:
        """Log the loss (once per outage) and return how long to wait."""
        if self.up or self.delay == FIRST_DELAY:
            logger.warning("redis unavailable (%s); retrying with backoff", reason)
        self.up = False
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return delay
