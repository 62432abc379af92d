"""Fuzz `ServerConnection.receive_data` with permessage-deflate negotiated.

The input (see `_common`): mode byte (bits 0-1: max_message_size from
`MESSAGE_LIMITS`; bit 2: streaming mode; bits 3-4: which offer of
`DEFLATE_OFFERS` was accepted, hence the window and whether the context
resets per message), chunking seed, then the client's frames. Invariants:
those of `_common.FrameChecker`, where the size limit now bounds the
*decompressed* message (a deflate bomb must end in 1009, not in memory),
and chunking invariance.
"""

from __future__ import annotations

import functools

from _common import MESSAGE_LIMITS, check_frames, main, opened_server, split_input


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    limit = MESSAGE_LIMITS[given.mode & 3]
    streaming = bool(given.mode & 4)
    offer = (given.mode >> 3) & 3
    make = functools.partial(
        opened_server, streaming=streaming, max_message_size=limit, deflate=offer
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
