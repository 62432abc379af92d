"""Fuzz `ServerConnection.receive_data` after the handshake: no
compression, whole-message mode.

The input and the invariants: `_common.server_frames` and
`_common.FrameChecker` (documented events only, never an exception,
messages within the limit and valid UTF-8, a pong per ping, a failure ends
the connection with a close frame carrying an RFC code), and chunking
invariance.
"""

from __future__ import annotations

from _common import main, server_frames


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    server_frames(data, streaming=False)


if __name__ == "__main__":
    main(TestOneInput)
