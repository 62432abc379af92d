"""Fuzz the chat's JSON parsers: `parse_command` (a client's message),
`parse_envelope` (another worker's event, through Redis) and
`parse_stored` (an item of the shared history, in Redis).

The input (see `_common`): mode byte (bits 0-1 pick the parser, with bit 2
`max_text` is 10 instead of the default so that the length limits are
reached; bit 3 hands parse_command a str instead of bytes), two bytes
unused here, then the raw message. A str is decoded with surrogateescape,
so it may hold lone surrogates, as a str from a careless caller could.

Invariants: none of them raises; whatever they accept is text that encodes
as UTF-8, within the limits, in the canonical form: a Join's nick is clean
(valid and normalized), a Say's text passes `text_problem`; re-encoding an
accepted command, envelope or stored item and parsing it again gives the
same result (the canonical form is a fixed point).
"""

from __future__ import annotations

import json

from _common import INSTRUMENT, main, split_input

if INSTRUMENT:
    import atheris

    with atheris.instrument_imports():
        from adapters.chat import protocol
else:
    from adapters.chat import protocol


def _check_command(raw: str | bytes, max_text: int) -> None:
    command = protocol.parse_command(raw, max_text=max_text)
    if isinstance(command, protocol.Invalid):
        assert isinstance(command.code, str)
        assert isinstance(command.text, str)
        command.text.encode("utf-8")
        return
    if isinstance(command, protocol.Join):
        assert protocol.is_clean_nick(command.nick), command
        command.nick.encode("utf-8")
        again = json.dumps({"type": "join", "nick": command.nick})
    else:
        assert isinstance(command, protocol.Say), command
        assert protocol.text_problem(command.text, max_text=max_text) is None
        assert len(command.text) <= max_text
        command.text.encode("utf-8")
        again = json.dumps({"type": "message", "text": command.text}, ensure_ascii=False)
    assert protocol.parse_command(again, max_text=max_text) == command
    assert protocol.parse_command(again.encode("utf-8"), max_text=max_text) == command


def _check_event(event: dict[str, object], max_text: int) -> None:
    kind = event["type"]
    assert kind in ("message", "presence"), event
    if kind == "message":
        assert list(event) == ["type", "nick", "text", "time"], event
        assert protocol.is_clean_nick(event["nick"])
        assert protocol.text_problem(event["text"], max_text=max_text) is None
        assert type(event["time"]) is float
        assert 0 <= event["time"] <= protocol.MAX_TIME
    else:
        assert list(event)[:2] == ["type", "count"], event
        assert type(event["count"]) is int
        assert 0 <= event["count"] <= protocol.MAX_COUNT
        for name in protocol.PRESENCE_LISTS:
            items = event.get(name)
            assert items is None or (isinstance(items, list) and 0 < len(items) <= 20)
            more = event.get(f"{name}_more")
            assert more is None or (type(more) is int and 0 < more <= protocol.MAX_COUNT)
    protocol.encode(event).encode("utf-8")


def _check_envelope(raw: str, max_text: int) -> None:
    envelope = protocol.parse_envelope(raw, max_text=max_text)
    if isinstance(envelope, protocol.Invalid):
        return
    assert 1 <= len(envelope.worker) <= protocol.MAX_WORKER
    _check_event(envelope.event, max_text)
    again = json.dumps({"worker": envelope.worker, "event": envelope.event}, ensure_ascii=False)
    assert protocol.parse_envelope(again, max_text=max_text) == envelope


def _check_stored(raw: str, max_text: int) -> None:
    stored = protocol.parse_stored(raw, max_text=max_text)
    if stored is None:
        return
    event = json.loads(stored)
    _check_event(event, max_text)
    assert event["type"] == "message"
    assert protocol.parse_stored(stored, max_text=max_text) == stored


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    max_text = 10 if given.mode & 4 else protocol.MAX_TEXT
    text = given.payload.decode("utf-8", "surrogateescape")
    which = given.mode & 3
    if which == 0:
        _check_command(text if given.mode & 8 else given.payload, max_text)
    elif which == 1:
        _check_envelope(text, max_text)
    elif which == 2:
        _check_stored(text, max_text)
    else:  # all three on the same text: a message that is valid as one is often near another
        _check_command(given.payload, max_text)
        _check_envelope(text, max_text)
        _check_stored(text, max_text)


if __name__ == "__main__":
    main(TestOneInput)
