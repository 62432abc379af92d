"""The nickname commands: both keys of each holder, named under NICK_KEY,
with the holder's value and the expiry in milliseconds (the scripts
themselves run against a real redis-server in test_redis.py and
test_chat_ops_hostile.py)."""

from __future__ import annotations

from adapters.chat.nick_hub import GIVE_UP, TAKE, NickCommands
from adapters.chat.resp import command
from adapters.chat.settings import NICK_KEY, NICK_TTL


def test_take_names_both_keys_of_each_holder_in_order() -> None:
    nicks = NickCommands("host:1:abcd")
    data = nicks.take([(7, ("f:ann", "c:Ann")), (9, ("f:bob", "c:Bob"))])
    keys = [NICK_KEY + key for key in ("f:ann", "c:Ann", "f:bob", "c:Bob")]
    ttl = round(NICK_TTL * 1000)
    assert data == command("EVAL", TAKE, 4, *keys, ttl, 2, "host:1:abcd:7", "host:1:abcd:9")


def test_give_up_names_the_holder_of_the_client() -> None:
    nicks = NickCommands("w")
    assert nicks.holder(3) == "w:3"
    data = nicks.give_up(3, ("f:ann", "c:Ann"))
    assert data == command("EVAL", GIVE_UP, 2, NICK_KEY + "f:ann", NICK_KEY + "c:Ann", "w:3")
