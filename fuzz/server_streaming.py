"""Fuzz `ServerConnection.receive_data` after the handshake: no
compression, streaming mode (TextFragment/BytesFragment).

The input (see `_common`): mode byte (bits 0-1 pick max_message_size from
`MESSAGE_LIMITS`), chunking seed, then the bytes a client sends after its
upgrade request. Invariants: those of `_common.FrameChecker` (documented
events only, never an exception, messages within the limit and valid
UTF-8, a pong per ping, a failure ends the connection with a close frame
carrying an RFC code) and chunking invariance.
"""

from __future__ import annotations

import functools

from _common import MESSAGE_LIMITS, check_frames, main, opened_server, split_input

STREAMING = True


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    limit = MESSAGE_LIMITS[given.mode & 3]
    make = functools.partial(
        opened_server, streaming=STREAMING, max_message_size=limit, deflate=None
    )
    check_frames(given.payload, given.chunk_seed, make, streaming=STREAMING, max_message_size=limit)


if __name__ == "__main__":
    main(TestOneInput)
