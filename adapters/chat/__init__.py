"""The broadcast chat: one sans-IO room (`room.py`), served by any of the
three adapters (`run_asyncio.py`, `run_trio.py`, `run_blocking.py`), with
its page at / and, optionally, Redis to share the room between processes.
See `protocol.py` for the JSON messages the page and the server exchange."""
