"""Fuzz the chat's RESP (Redis protocol) reply parser, `ReplyParser`.

The input (see `_common`): mode byte (bits 0-1 pick the parser's bounds
from `BOUNDS`), chunking seed, then the bytes "Redis" sends, fed in the
chunks the seed picks.

Invariants: `feed` raises nothing but `ProtocolError`; every reply is
within the bounds (nesting depth, elements per reply, bulk strings kept
only up to `max_bulk` and reported as `TooLarge` past it, simple strings
and errors no longer than `max_line`); chunking invariance: the replies of
a chunked feed are those of one whole feed (a prefix of them if the
chunked feed hit a bound that the whole one, holding no incomplete reply
at its end, did not), and an input that the whole feed refuses is refused
chunked too; the work done stays linear in the bytes fed.
"""

from __future__ import annotations

from typing import Any

from _common import INSTRUMENT, chunks, main, split_input

if INSTRUMENT:
    import atheris

    with atheris.instrument_imports():
        from adapters.chat import resp
else:
    from adapters.chat import resp

BOUNDS: tuple[dict[str, int], ...] = (
    {},  # the defaults
    {"max_depth": 1, "max_elements": 8, "max_bulk": 16, "max_reply": 64, "max_line": 32},
    {"max_depth": 3, "max_elements": 20, "max_bulk": 4, "max_reply": 1000, "max_line": 8},
    {"max_depth": 2, "max_elements": 100, "max_bulk": 200, "max_reply": 300, "max_line": 100},
)
_DEFAULTS = {
    "max_depth": 8,
    "max_elements": 1 << 20,
    "max_bulk": 16 << 20,
    "max_reply": 32 << 20,
    "max_line": 64 << 10,
}


def _check_reply(reply: Any, bounds: dict[str, int]) -> None:
    """Walk one reply iteratively (a recursive walk would be the very
    weakness the parser avoids), checking every value against the bounds."""
    elements = 0
    todo = [(reply, 0)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, tuple):  # a RedisError, made comparable
            assert len(value[1].encode("utf-8")) <= 3 * bounds["max_line"]
        elif isinstance(value, list):
            assert depth < bounds["max_depth"] or not value, "arrays nested too deep"
            elements += len(value)
            todo.extend((item, depth + 1) for item in value)
        elif isinstance(value, bytes):
            assert len(value) <= bounds["max_bulk"], len(value)
        elif isinstance(value, resp.TooLarge):
            assert bounds["max_bulk"] < value.size <= 512 << 20, value
        elif isinstance(value, str):
            assert len(value.encode("utf-8")) <= 3 * bounds["max_line"]  # U+FFFD per bad byte
        elif isinstance(value, int):
            assert type(value) is int
            assert abs(value) < 10**19
        else:
            assert value is None, value
    assert elements <= bounds["max_elements"], elements


def _comparable(value: Any) -> Any:
    """`value` with each RedisError as a tuple (exceptions compare by
    identity); the depth is bounded by max_depth, so recursion is safe."""
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    if isinstance(value, resp.RedisError):
        return ("error", str(value))
    return value


def _run(pieces: list[bytes], bounds: dict[str, int]) -> tuple[list[Any], bool, int]:
    parser = resp.ReplyParser(**bounds)
    replies: list[Any] = []
    for piece in pieces:
        try:
            replies += parser.feed(piece)
        except resp.ProtocolError as error:
            replies += error.replies
            return _comparable(replies), True, parser.work
    return _comparable(replies), False, parser.work


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    chosen = BOUNDS[given.mode & 3]
    bounds = {**_DEFAULTS, **chosen}
    pieces = list(chunks(given.payload, given.chunk_seed))
    replies, failed, work = _run(pieces, chosen)
    for reply in replies:
        _check_reply(reply, bounds)
    # Linear work: each byte examined about once, plus a byte re-read per
    # call (a CR that may start the CRLF) and the skipped bulk strings.
    assert work <= 2 * len(given.payload) + 2 * len(pieces) + 16, (work, len(given.payload))
    if len(pieces) > 1:
        whole, whole_failed, _ = _run([given.payload], chosen)
        assert whole[: len(replies)] == replies, (replies, whole)
        if whole_failed:
            assert failed, "the whole feed failed, the chunked one did not"
        if not failed:
            assert whole == replies
            assert not whole_failed


if __name__ == "__main__":
    main(TestOneInput)
