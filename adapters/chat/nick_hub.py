"""The nicknames' keys in Redis: the commands that claim, keep and give up
the two keys of a nickname (see `room.hub_keys`) for a holder.

Each key is `NICK_KEY` + the room's key, and its value names the holder:
`NickCommands.holder(client)`, this process run's prefix and the client.
A key expires after `NICK_TTL` unless refreshed, so the nicknames of a
worker that died free themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

from .resp import command
from .settings import NICK_KEY, NICK_TTL

# KEYS: `per` keys for each holder in turn; ARGV: ttl (ms), per, the
# holders. Each holder's keys are (re)set to it with the ttl unless one of
# them holds another's value; returns the (1-based) holders refused. So a
# claim is all or nothing, and a refresh extends what is still ours and
# takes again what expired (an outage longer than the ttl). A key that is
# not a string (anyone with access to Redis can make one) counts as held
# by another: a GET on it would abort the script, and with it the refresh
# of every holder after it in the batch.
TAKE = b"""local ttl, per, lost = ARGV[1], tonumber(ARGV[2]), {}
for h = 0, #KEYS / per - 1 do
  local holder, free = ARGV[h + 3], true
  for k = 1, per do
    local key = KEYS[h * per + k]
    local kind = redis.call('TYPE', key).ok
    if kind ~= 'none' and (kind ~= 'string' or redis.call('GET', key) ~= holder) then
      free = false
    end
  end
  if free then
    for k = 1, per do redis.call('SET', KEYS[h * per + k], holder, 'PX', ttl) end
  else
    lost[#lost + 1] = h + 1
  end
end
return lost"""
# KEYS: keys; ARGV: the holder. Deletes those of the keys it holds (and
# only strings: see TAKE).
GIVE_UP = b"""for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'string' and redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
  end
end
return 0"""
REFRESH_BATCH = 256  # holders per refresh command (a bounded size each)


class NickCommands:
    """The commands of one process run (`prefix`: unique to it)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def holder(self, client: int) -> str:
        return f"{self.prefix}:{client}"

    def take(self, held: Iterable[tuple[int, tuple[str, ...]]]) -> bytes:
        """TAKE for these (client, keys), two keys each: a claim, or a
        refresh of many."""
        keys: list[str] = []
        holders: list[str] = []
        for client, own in held:
            assert len(own) == 2
            keys += (NICK_KEY + key for key in own)
            holders.append(self.holder(client))
        ttl = round(NICK_TTL * 1000)
        return command("EVAL", TAKE, len(keys), *keys, ttl, 2, *holders)

    def give_up(self, client: int, keys: Iterable[str]) -> bytes:
        """GIVE_UP of `keys`, for those `client` still holds."""
        named = [NICK_KEY + key for key in keys]
        return command("EVAL", GIVE_UP, len(named), *named, self.holder(client))
