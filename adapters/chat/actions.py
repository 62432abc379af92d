"""Carrying out the room's actions: the same in the three backends but for
how a connection is closed later, which each backend says."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Generic, Protocol, TypeVar

from wsproto_core import HandshakeRequest

from .._common import ConnectionClosed
from .resp import command
from .room import Action, Broadcast, Close, Publish, Room, RoomConfig, Send, Store
from .service import CHANNEL, HISTORY_KEY, WS_PATH, ChatSettings, Peer, fan_out

PeerT = TypeVar("PeerT", bound=Peer)


class Link(Protocol):
    """What the actions need of a backend's Redis link."""

    def send(self, *commands: bytes) -> bool: ...


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

    def close_later(self, peer: PeerT, code: int, reason: str) -> None:
        """Start closing `peer` without waiting for the handshake to end."""
        raise NotImplementedError

    def from_redis(self, envelope: str) -> None:
        self.perform(self.room.deliver(envelope, time.time()))

    def perform(self, actions: list[Action]) -> None:
        """Nothing here waits for a peer: send_prepared only queues."""
        limit = self.settings.client_buffer
        for action in actions:
            if type(action) is Broadcast:
                for client in fan_out(action.text, list(self.clients.items()), limit):
                    self.drop(client, 1013, "too slow: messages piled up")
            elif type(action) is Send:
                peer = self.clients.get(action.client)
                if peer is not None:
                    for client in fan_out(action.text, [(action.client, peer)], limit):
                        self.drop(client, 1013, "too slow: messages piled up")
            elif type(action) is Publish:
                redis = self.redis
                if redis is None or not redis.send(command("PUBLISH", CHANNEL, action.text)):
                    # No hub (or Redis is away): this process's clients only.
                    self.perform(self.room.deliver(action.text, time.time()))
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
        peer = self.clients.pop(client, None)
        if peer is not None:
            self.perform(self.room.disconnect(client, time.time()))
            self.close_later(peer, code, reason)

    def arrive(self, peer: PeerT, history: list[str] | None) -> int:
        client = next(self.ids)
        self.clients[client] = peer
        self.perform(self.room.connect(client, time.time(), history))
        return client

    def receive(self, client: int, message: str | bytes) -> bool:
        """False once the client has been dropped (too slow)."""
        if client not in self.clients:
            return False
        self.perform(self.room.receive(client, message, time.time()))
        return True

    def leave(self, client: int) -> None:
        if self.clients.pop(client, None) is not None:
            self.perform(self.room.disconnect(client, time.time()))

    def tick(self) -> None:
        self.perform(self.room.tick(time.time()))


class AsyncPeer(Peer, Protocol):
    """A connection of the asyncio or the trio adapter (the same API)."""

    @property
    def request(self) -> HandshakeRequest | None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class AsyncHistory(Protocol):
    async def history(self) -> list[str] | None: ...


AsyncPeerT = TypeVar("AsyncPeerT", bound=AsyncPeer)


class AsyncChatActions(ChatActions[AsyncPeerT]):
    """The connection handler of the two async backends."""

    link: AsyncHistory | None = None

    async def handler(self, ws: AsyncPeerT) -> None:
        if ws.request is None or ws.request.path != WS_PATH:
            await ws.close(1008, f"the chat is at {WS_PATH}")
            return
        history = None if self.link is None else await self.link.history()
        client = self.arrive(ws, history)
        try:
            async for message in ws:
                if not self.receive(client, message):
                    break
        except ConnectionClosed:
            pass
        finally:
            self.leave(client)
