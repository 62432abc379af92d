"""Fuzz `ClientConnection.receive_data` after the handshake: the server's
frames, unmasked.

The input (see `_common`): mode byte (bits 0-1: max_message_size from
`MESSAGE_LIMITS`; bit 2: streaming mode; bit 3: permessage-deflate
negotiated, server window 12), chunking seed, then the server's frames.
Invariants: those of `_common.FrameChecker` for the client role (a masked
frame from the server is a protocol error, what the client sends is
masked, a close received leaves closing TCP to the server) and chunking
invariance.
"""

from __future__ import annotations

import functools

from _common import MESSAGE_LIMITS, check_frames, main, opened_client, split_input


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    limit = MESSAGE_LIMITS[given.mode & 3]
    streaming = bool(given.mode & 4)
    deflate = bool(given.mode & 8)
    make = functools.partial(
        opened_client, streaming=streaming, max_message_size=limit, deflate=deflate
    )
    check_frames(
        given.payload,
        given.chunk_seed,
        make,
        streaming=streaming,
        max_message_size=limit,
    )


if __name__ == "__main__":
    main(TestOneInput)
