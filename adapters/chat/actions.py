"""Carrying out the room's actions: the same in the three backends but for
how a connection is closed later, which each backend says.

Every step (a client arrives, says something, leaves; the hub delivers;
time passes) is carried out on behalf of at most one client. If a step
fails, that client alone is dropped (1011) and the room stays consistent:
the failure is logged, at most once per `LOG_INTERVAL` seconds with the
number of those not logged, so a client that triggers one in a loop cannot
flood the log. Invalid events from Redis are dropped by the room, and
logged here on the same terms.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, Protocol, TypeVar

from wsproto_core import HandshakeRequest

from .._common import ConnectionClosed
from .ratelimit import UNKNOWN
from .resp import command
from .room import Action, Broadcast, Close, Publish, Room, RoomConfig, Send, Store
from .service import (
    BROKEN,
    CHANNEL,
    HISTORY_KEY,
    WS_PATH,
    ChatSettings,
    Peer,
    fan_out,
    logger,
)

PeerT = TypeVar("PeerT", bound=Peer)

LOG_INTERVAL = 60.0  # seconds between two log lines about the same kind of trouble


class Link(Protocol):
    """What the actions need of a backend's Redis link."""

    def send(self, *commands: bytes) -> bool: ...


class Throttle:
    """One log line per `interval` seconds, and a count of the others."""

    __slots__ = ("_interval", "_last", "_skipped")

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._interval = interval
        self._last = float("-inf")
        self._skipped = 0

    def allow(self, now: float) -> int | None:
        """None: stay quiet. Otherwise log, and say how many were not."""
        if 0 <= now - self._last < self._interval:
            self._skipped += 1
            return None
        self._last = now
        skipped, self._skipped = self._skipped, 0
        return skipped


def host_of(remote_address: object) -> str:
    """The IP of a peer's address ((host, port, ...) for TCP), or
    "unknown" for anything else (a Unix socket, an address the backend
    could not get)."""
    if isinstance(remote_address, tuple | list) and remote_address:
        host = remote_address[0]
        if isinstance(host, str):
            return host
    return UNKNOWN


class ChatActions(Generic[PeerT]):
    """The room, the clients of this process, and the Redis link if any."""

    redis: Link | None = None

    def __init__(self, settings: ChatSettings) -> None:
        self.settings = settings
        self.room = Room(
            RoomConfig(
                history=settings.history,
                rate=settings.rate,
                burst=settings.burst,
                worker=settings.worker,
                shared=settings.redis is not None,
            )
        )
        self.clients: dict[int, PeerT] = {}
        self.ids = itertools.count(1)
        self._failures = Throttle()
        self._rejections = Throttle()
        self._seeded_from: int | None = None  # the Redis session the history came from
        self._rejected_logged = 0
        self._queue: deque[Action] | None = None  # actions being carried out

    def close_later(self, peer: PeerT, code: int, reason: str) -> None:
        """Start closing `peer` without waiting for the handshake to end."""
        raise NotImplementedError

    # -- the steps ---------------------------------------------------------------

    def history_due(self, up: bool, session: int) -> bool:
        """Whether to fetch the shared history: once per Redis session (the
        room keeps it up to date between), and only while Redis is up."""
        return up and self._seeded_from != session

    def seed_history(self, session: int, history: list[str] | None) -> None:
        if history is not None:
            self.room.seed_history(history)
            self._seeded_from = session

    def arrive(self, peer: PeerT, history: list[str] | None) -> int:
        """A client connected: its id. If taking it in fails, it is already
        dropped (1011), and `receive` says False."""
        client = next(self.ids)
        self.clients[client] = peer

        def connect(now: float) -> list[Action]:
            address = host_of(peer.remote_address)
            return self.room.connect(client, now, history, address=address)

        self._step(client, connect)
        return client

    def receive(self, client: int, message: str | bytes) -> bool:
        """False once the client has been dropped (too slow, or broken)."""
        if client not in self.clients:
            return False
        self._step(client, lambda now: self.room.receive(client, message, now))
        return client in self.clients

    def leave(self, client: int) -> None:
        if self.clients.pop(client, None) is not None:
            self._step(None, lambda now: self.room.disconnect(client, now))

    def from_redis(self, envelope: str) -> None:
        """What Redis delivered on the channel: checked by the room."""
        self._step(None, lambda now: self.room.deliver(envelope, now))
        self._report_rejections()

    def tick(self) -> None:
        self._step(None, self.room.tick)
        self._report_rejections()

    def _step(self, client: int | None, step: Callable[[float], list[Action]]) -> None:
        """Run one step of the room for `client` (None: for no one in
        particular) and carry out its actions. Whatever fails drops that
        client and nothing else; the room has already forgotten it before
        its close is started."""
        try:
            self.perform(step(time.time()))
        except Exception:
            self._log_failure(client)
            if client is not None:
                self.drop(client, *BROKEN)

    def _log_failure(self, client: int | None) -> None:
        """The traceback of what just failed, throttled."""
        skipped = self._failures.allow(time.time())
        if skipped is not None:
            logger.exception(
                "a chat step failed for client %s (%d similar failures not logged)",
                client,
                skipped,
            )

    def _report_rejections(self) -> None:
        """Log what the room dropped from the hub, throttled."""
        rejected = self.room.rejected - self._rejected_logged
        if rejected and self._rejections.allow(time.time()) is not None:
            self._rejected_logged = self.room.rejected
            logger.warning(
                "dropped %d invalid event(s) from redis (last: %s)",
                rejected,
                self.room.rejection,
            )

    # -- the actions -------------------------------------------------------------

    def perform(self, actions: list[Action]) -> None:
        """Carry out `actions`, in order. Nothing here waits for a peer:
        send_prepared only queues. What an action leads to (the `left` of
        a client dropped for being slow, a Publish delivered here when
        Redis is away) joins the end of the queue instead of recursing, so
        a thousand slow clients are a thousand turns of one loop."""
        if self._queue is not None:
            self._queue.extend(actions)
            return
        self._queue = queue = deque(actions)
        failed: Exception | None = None
        try:
            while queue:
                try:
                    self._carry_out(queue.popleft())
                except Exception as error:  # the others still go out; then it is raised
                    if failed is None:
                        failed = error
        finally:
            self._queue = None
        if failed is not None:
            raise failed

    def _carry_out(self, action: Action) -> None:
        limit = self.settings.client_buffer
        if type(action) is Broadcast:
            for client, why in fan_out(action.text, list(self.clients.items()), limit):
                self.drop(client, *why)
        elif type(action) is Send:
            peer = self.clients.get(action.client)
            if peer is not None:
                for client, why in fan_out(action.text, [(action.client, peer)], limit):
                    self.drop(client, *why)
        elif type(action) is Publish:
            # Already broadcast here; if Redis is away, the other workers
            # miss it (as they would any event of a worker they cannot reach).
            if self.redis is not None:
                self.redis.send(command("PUBLISH", CHANNEL, action.text))
        elif type(action) is Store:
            if self.redis is not None:
                length = self.settings.history
                self.redis.send(
                    command("RPUSH", HISTORY_KEY, action.text),
                    command("LTRIM", HISTORY_KEY, -length, -1),
                )
        elif type(action) is Close:
            self.drop(action.client, action.code, action.reason)

    def drop(self, client: int, code: int, reason: str) -> None:
        """Take `client` out of the room and start closing it. The room
        forgets it first: whatever fails next (its `left` going out, its
        close), it is gone, and the step that dropped it carries on."""
        peer = self.clients.pop(client, None)
        if peer is None:
            return
        self._step(None, lambda now: self.room.disconnect(client, now))
        try:
            self.close_later(peer, code, reason)
        except Exception:
            self._log_failure(client)


class AsyncPeer(Peer, Protocol):
    """A connection of the asyncio or the trio adapter (the same API)."""

    @property
    def request(self) -> HandshakeRequest | None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class AsyncHistory(Protocol):
    sessions: int

    @property
    def up(self) -> bool: ...

    async def history(self) -> list[str] | None: ...


AsyncPeerT = TypeVar("AsyncPeerT", bound=AsyncPeer)


class AsyncChatActions(ChatActions[AsyncPeerT]):
    """The connection handler of the two async backends."""

    link: AsyncHistory | None = None

    async def handler(self, ws: AsyncPeerT) -> None:
        if ws.request is None or ws.request.path != WS_PATH:
            await ws.close(1008, f"the chat is at {WS_PATH}")
            return
        link = self.link
        if link is not None and self.history_due(link.up, link.sessions):
            session = link.sessions
            self.seed_history(session, await link.history())
        client = self.arrive(ws, None)
        try:
            async for message in ws:
                if not self.receive(client, message):
                    break
        except ConnectionClosed:
            pass
        finally:
            self.leave(client)
