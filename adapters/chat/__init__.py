"""The broadcast chat: one sans-IO room (`room.py`), served by any of the
three adapters (`run_asyncio.py`, `run_trio.py`, `run_blocking.py`), with
its page at / and, optionally, Redis to share the room between processes.
See `protocol.py` for the JSON messages the page and the server exchange.

- `room.py`, `protocol.py`, `ratelimit.py`: the room, sans-IO: events in,
  actions out; the wire schema; the per-address limits.
- `chat_process.py`: this process's chat: the room, the clients connected
  here and the Redis link, with the room's actions carried out on them.
- `resp.py`, `redis_session.py`, `redis_link.py`: Redis: the wire codec,
  the conversation on one pair of connections (sans-IO), and the link that
  keeps such a pair up, all but its I/O.
- `run_asyncio.py`, `run_trio.py`, `run_blocking.py`: each backend's I/O:
  its Redis link's sockets, its connection handler, its background tasks.
- `settings.py` (the settings and the server options they make),
  `origin.py` (the default Origin policy), `page.py` (the page's files),
  `log.py` (the logger and throttled log lines).
- `cli.py`: the `wschat` command and its worker processes.
"""
