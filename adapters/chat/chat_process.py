"""This process's chat: the room (`room.py`), the clients connected to this
process, and the Redis link if any, with the room's actions carried out on
them. The same in the three backends but for the connection handler
(asyncio and trio share `AsyncChatProcess.handler`) and the lock the
blocking backend holds around it all.

Every step (a client arrives, says something, leaves; the hub delivers;
time passes) is carried out on behalf of at most one client. If a step
fails, that client alone is dropped (1011) and the room stays consistent:
the failure is logged, at most once per `LOG_INTERVAL` seconds with the
number of those not logged, so a client that triggers one in a loop cannot
flood the log. Invalid events from Redis are dropped by the room, and
logged here on the same terms.

Nicknames across workers (with Redis): the room's `Claim`, `Release` and
`Refresh` become Redis commands (`nick_hub`), whose holder is this
worker, a token drawn once per process run (a restarted worker with the
same name and client numbers is someone else), and the client. A claim goes
through `Link.request` and its reply comes back as `Room.claimed`; a
refresh's reply lists the nicks held by someone else, each a `Room.lost`.
While Redis is away (the request refused, or its reply lost with the
connection, or an error reply) the claim is granted here: nicknames are
then unique in this process only, and the next refresh claims them in
Redis again once it is back (see the room's docstring for the trade-off).
Replies come from the link, outside any step: they are handled under
`lock` (the blocking backend's chat lock; nothing in an event loop).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from wsproto_core import HandshakeRequest, PreparedMessage

from .. import ConnectionClosed
from .._forwarded import client_address, trusted_networks
from .counters import ChatCounters, utf8_size
from .log import LogThrottle, logger
from .monitor import Monitor
from .nick_hub import REFRESH_BATCH, NickCommands
from .ratelimit import UNKNOWN
from .redis_session import LOST
from .resp import RedisError, Reply, command
from .room import (
    Action,
    Broadcast,
    Claim,
    Close,
    Publish,
    Refresh,
    Release,
    Room,
    RoomConfig,
    Send,
    Store,
)
from .settings import CHANNEL, HISTORY_KEY, TICK, WS_PATH, ChatSettings

LOG_INTERVAL = 60.0  # seconds between two log lines about the same kind of trouble

SLOW = (1013, "too slow: messages piled up")
BROKEN = (1011, "internal error")
WRONG_PATH = (1008, f"the chat is at {WS_PATH}")


class Peer(Protocol):
    """What the chat needs of a connection, in every backend."""

    @property
    def remote_address(self) -> object:
        """The peer's address: a (host, port, ...) tuple for TCP, something
        else (or None) when the backend could not tell."""
        ...

    def send_prepared(self, message: PreparedMessage) -> int: ...

    def close_nowait(self, code: int, reason: str) -> None: ...


class Link(Protocol):
    """What the chat needs of a backend's Redis link (`redis_link.py`)."""

    sessions: int

    @property
    def up(self) -> bool: ...

    def send(self, *commands: bytes) -> bool: ...

    def request(self, data: bytes, on_reply: Callable[[Reply], None]) -> bool: ...


PeerT = TypeVar("PeerT", bound=Peer)
LinkT = TypeVar("LinkT", bound=Link)


def host_of(remote_address: object) -> str:
    """The IP of a peer's address ((host, port, ...) for TCP), or
    "unknown" for anything else (a Unix socket, an address the backend
    could not get)."""
    if isinstance(remote_address, tuple | list) and remote_address:
        host = remote_address[0]
        if isinstance(host, str):
            return host
    return UNKNOWN


def refusal(request: HandshakeRequest) -> tuple[int, str] | None:
    """The close code and reason for a connection that is not to the chat
    (a WebSocket opened elsewhere than WS_PATH), or None."""
    return WRONG_PATH if request.path != WS_PATH else None


def fan_out(
    text: str, peers: Iterable[tuple[int, Peer]], limit: int
) -> tuple[int, list[tuple[int, tuple[int, str]]]]:
    """Frame `text` once and queue it for every peer, without waiting.

    Returns how many peers it was queued for, and the clients to close,
    each with its close code and reason:
    those that now have more than `limit` bytes waiting (they cannot keep
    up, and are closed with 1013 rather than buffered for without bound
    or allowed to slow the others down), and those whose connection
    failed in an unexpected way (1011: one broken connection must not
    keep the message from the others).
    """
    message = PreparedMessage(text)
    drop = []
    queued = 0
    for client, peer in peers:
        try:
            waiting = peer.send_prepared(message)
        except ConnectionClosed:
            continue  # it is going; its handler removes it
        except Exception:
            logger.debug("queueing for client %d failed", client, exc_info=True)
            drop.append((client, BROKEN))
            continue
        queued += 1
        if waiting > limit:
            drop.append((client, SLOW))
    return queued, drop


class ChatProcess(Generic[PeerT, LinkT]):
    """The room, the clients of this process, and the Redis link if any:
    `new_link(url, history, deliver)` makes it when the settings name a
    Redis. `lock` is held around what the link calls back (the replies to
    requests); a backend whose link runs in a thread of its own sets it."""

    lock: AbstractContextManager[Any] = contextlib.nullcontext()

    def __init__(
        self,
        settings: ChatSettings,
        new_link: Callable[[str, int, Callable[[str], None]], LinkT] | None = None,
        monitor: Monitor | None = None,
    ) -> None:
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
        self.link: LinkT | None = None
        if settings.redis is not None and new_link is not None:
            self.link = new_link(settings.redis, settings.history, self.from_redis)
        self._failures = LogThrottle(LOG_INTERVAL)
        self._rejections = LogThrottle(LOG_INTERVAL)
        self._claim_errors = LogThrottle(LOG_INTERVAL)
        self._seeded_from: int | None = None  # the Redis session the history came from
        self._rejected_logged = 0
        self._queue: deque[Action] | None = None  # actions being carried out
        # Who holds a nickname in Redis: this process run, then the client.
        self.nicks = NickCommands(f"{settings.worker}:{secrets.token_hex(8)}")
        self._refreshed_in: int | None = None  # the Redis session nicks were refreshed in
        self.monitor = monitor
        self._trusted = trusted_networks(settings.trusted_proxies)
        self.counters = ChatCounters() if monitor is None else monitor.counters
        if monitor is not None:
            monitor.attach(self)

    # -- the steps ---------------------------------------------------------------

    def history_due(self) -> int | None:
        """The Redis session to fetch the shared history from before the
        next client arrives, or None: it is fetched once per session (the
        room keeps it up to date between), and only while Redis is up."""
        link = self.link
        if link is None or not link.up or link.sessions == self._seeded_from:
            return None
        return link.sessions

    def seed_history(self, session: int, history: list[str] | None) -> None:
        """What Redis answered (None: nothing usable) for `session`."""
        if history is not None:
            self.room.seed_history(history)
            self._seeded_from = session

    def arrive(
        self, peer: PeerT, history: list[str] | None, forwarded_for: Sequence[str] = ()
    ) -> int:
        """A client connected: its id. If taking it in fails, it is already
        dropped (1011), and `receive` says False. `forwarded_for` is its
        request's X-Forwarded-For, believed from `--trusted-proxies` only."""
        client = next(self.ids)
        self.clients[client] = peer

        def connect(now: float) -> list[Action]:
            address = client_address(host_of(peer.remote_address), forwarded_for, self._trusted)
            return self.room.connect(client, now, history, address=address)

        self._step(client, connect)
        return client

    def receive(self, client: int, message: str | bytes) -> bool:
        """False once the client has been dropped (too slow, or broken)."""
        if client not in self.clients:
            return False
        counters = self.counters
        counters.messages_in += 1
        counters.bytes_in += utf8_size(message)
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
        link = self.link
        if link is not None and link.up and link.sessions != self._refreshed_in:
            self._refreshed_in = link.sessions  # (a new session: Redis may have forgotten)
            self.room.refresh_soon()
        self._step(None, self.room.tick)
        self._report_rejections()
        if self.monitor is not None:
            try:
                self.monitor.sync()  # (with several workers, the others' scrapes read it)
            except Exception:  # (a full disk, say): the ticks must go on
                self._log_failure(None)

    def update_counters(self) -> None:
        """Copy into `counters` what the room counts itself."""
        counters = self.counters
        counters.rate_limited = self.room.rate_limited
        counters.hub_rejected = self.room.rejected

    def claim_answered(self, client: int, nick: str, reply: Reply) -> None:
        """Redis answered `client`'s claim of `nick` (TAKE's list of those
        refused: [] or [1]); anything else, or no answer (`LOST`), grants
        it here (see the module's docstring)."""
        with self.lock:
            if isinstance(reply, RedisError) and reply is not LOST:
                self._claim_errors.warning(time.time(), "redis refused a claim: %s", reply)
            ok = reply != [1]
            self._step(client, lambda now: self.room.claimed(client, nick, ok, now))

    def refresh_answered(self, held: list[tuple[int, str]], reply: Reply) -> None:
        """TAKE's list of the holders refused: each lost its nickname."""
        if not isinstance(reply, list):
            return  # (not refreshed: tried again at the next refresh)
        with self.lock:
            for index in reply:
                if isinstance(index, int) and 1 <= index <= len(held):
                    self._lose(*held[index - 1])

    def _lose(self, client: int, nick: str) -> None:
        self._step(client, lambda now: self.room.lost(client, nick, now))

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
        self._failures.log(
            logging.ERROR, time.time(), "a chat step failed for client %s", client, exc_info=True
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
        if type(action) is Broadcast:
            self.counters.broadcasts += 1
            self._deliver(action.text, list(self.clients.items()))
        elif type(action) is Send:
            peer = self.clients.get(action.client)
            if peer is not None:
                self._deliver(action.text, [(action.client, peer)])
        elif type(action) is Publish:
            # Already broadcast here; if Redis is away, the other workers
            # miss it (as they would any event of a worker they cannot reach).
            if self.link is not None:
                self.link.send(command("PUBLISH", CHANNEL, action.text))
        elif type(action) is Store:
            if self.link is not None:
                length = self.settings.history
                self.link.send(
                    command("RPUSH", HISTORY_KEY, action.text),
                    command("LTRIM", HISTORY_KEY, -length, -1),
                )
        elif type(action) is Close:
            self.drop(action.client, action.code, action.reason)
        elif type(action) is Claim:
            self._claim(action)
        elif type(action) is Release:
            if self.link is not None:
                self.link.send(self.nicks.give_up(action.client, action.keys))
        elif type(action) is Refresh:
            for start in range(0, len(action.held), REFRESH_BATCH):
                self._refresh(action.held[start : start + REFRESH_BATCH])

    def _deliver(self, text: str, peers: list[tuple[int, PeerT]]) -> None:
        queued, drop = fan_out(text, peers, self.settings.client_buffer)
        counters = self.counters
        counters.messages_out += queued
        counters.bytes_out += queued * utf8_size(text)
        for client, why in drop:
            self.drop(client, *why)

    def _claim(self, claim: Claim) -> None:
        client, nick = claim.client, claim.nick
        data = self.nicks.take([(client, claim.keys)])

        def answered(reply: Reply) -> None:
            self.claim_answered(client, nick, reply)

        if self.link is None or not self.link.request(data, answered):
            # Redis is away: granted here (nicknames unique in this process).
            self._step(client, lambda now: self.room.claimed(client, nick, True, now))

    def _refresh(self, held: tuple[tuple[int, str, tuple[str, ...]], ...]) -> None:
        if self.link is not None:
            names = [(client, nick) for client, nick, _ in held]
            data = self.nicks.take((client, keys) for client, _, keys in held)
            self.link.request(data, lambda reply: self.refresh_answered(names, reply))

    def drop(self, client: int, code: int, reason: str) -> None:
        """Take `client` out of the room and start closing it. The room
        forgets it first: whatever fails next (its `left` going out, its
        close), it is gone, and the step that dropped it carries on."""
        peer = self.clients.pop(client, None)
        if peer is None:
            return
        if (code, reason) == SLOW:
            self.counters.slow_drops += 1
        self._step(None, lambda now: self.room.disconnect(client, now))
        try:
            # Never waits (a stuck peer's writer included): the core's close
            # timer ends the connection if the peer does not answer. No task
            # or thread per close either: closing thousands at once must not
            # need thousands.
            peer.close_nowait(code, reason)
        except Exception:
            self._log_failure(client)


class AsyncPeer(Peer, Protocol):
    """A connection of the asyncio or the trio adapter (the same API)."""

    @property
    def request(self) -> HandshakeRequest: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class AsyncLink(Link, Protocol):
    """The Redis link of the asyncio or the trio backend."""

    async def history(self) -> list[str] | None: ...


AsyncPeerT = TypeVar("AsyncPeerT", bound=AsyncPeer)
AsyncLinkT = TypeVar("AsyncLinkT", bound=AsyncLink)


class AsyncChatProcess(ChatProcess[AsyncPeerT, AsyncLinkT]):
    """The chat of the two async backends: their connection handler, and
    their ticker (`sleep` is the backend's)."""

    async def ticker(self, sleep: Callable[[float], Awaitable[object]]) -> None:
        while True:
            await sleep(TICK)
            self.tick()

    async def handler(self, ws: AsyncPeerT) -> None:
        why = refusal(ws.request)
        if why is not None:
            await ws.close(*why)
            return
        link, session = self.link, self.history_due()
        if link is not None and session is not None:
            self.seed_history(session, await link.history())
        client = self.arrive(ws, None, ws.request.headers.get_all("X-Forwarded-For"))
        try:
            async for message in ws:
                if not self.receive(client, message):
                    break
        except ConnectionClosed:
            pass
        finally:
            self.leave(client)
