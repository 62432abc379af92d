"""The chat's JSON schema: what a client may send, and why not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.chat.protocol import (
    MAX_COUNT,
    MAX_NAMES,
    MAX_NICK,
    Envelope,
    Invalid,
    Join,
    Say,
    encode,
    error,
    nick_keys,
    nick_problem,
    normalize_nick,
    parse_command,
    parse_envelope,
    parse_event,
    parse_stored,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type": "join", "nick": "ann"}', Join("ann")),
        ('{"type": "join", "nick": "  Zoë_99.x-y  "}', Join("Zoë_99.x-y")),
        ('{"type": "join", "nick": "李小龍"}', Join("李小龍")),
        ('{"type": "message", "text": "hi <b>"}', Say("hi <b>")),
        (b'{"type": "message", "text": "bytes work too"}', Say("bytes work too")),
    ],
)
def test_valid_commands(raw: str | bytes, expected: object) -> None:
    assert parse_command(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ('{"type": "dance"}', "unknown_type"),
        ("{}", "unknown_type"),
        ('{"type": "join"}', "invalid_nick"),
        ('{"type": "join", "nick": 5}', "invalid_nick"),
        ('{"type": "join", "nick": "   "}', "invalid_nick"),
        ('{"type": "join", "nick": "<script>"}', "invalid_nick"),
        ('{"type": "join", "nick": "a\\u0000b"}', "invalid_nick"),
        (json.dumps({"type": "join", "nick": "x" * (MAX_NICK + 1)}), "invalid_nick"),
        ('{"type": "message"}', "empty"),
        ('{"type": "message", "text": "  \\n "}', "empty"),
        ('{"type": "message", "text": ["no"]}', "empty"),
        (json.dumps({"type": "message", "text": "x" * 2001}), "too_long"),
    ],
)
def test_invalid_commands_say_why(raw: str | bytes, code: str) -> None:
    result = parse_command(raw)
    assert isinstance(result, Invalid)
    assert result.code == code
    assert result.text


def test_the_text_limit_is_configurable() -> None:
    assert parse_command('{"type": "message", "text": "12345"}', max_text=5) == Say("12345")
    assert isinstance(parse_command('{"type": "message", "text": "123456"}', max_text=5), Invalid)


def test_nick_rules() -> None:
    assert nick_problem("ann") is None
    assert nick_problem("x" * MAX_NICK) is None
    assert nick_problem("a/b") == "a nickname cannot contain '/'"


def test_server_messages_are_compact_json() -> None:
    assert encode({"type": "message", "text": "é"}) == '{"type":"message","text":"é"}'
    assert json.loads(error("rate_limited", "slow down", retry_after=1.5)) == {
        "type": "error",
        "code": "rate_limited",
        "text": "slow down",
        "retry_after": 1.5,
    }


# -- what the parser accepts can be encoded, stored and sent (issue 9, 3) ----------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("\ud800", "invalid_text"),  # a lone surrogate: valid JSON, not UTF-8
        ("hi \udfff there", "invalid_text"),
        ("a\x00b", "invalid_text"),
        ("bell\x07", "invalid_text"),
        ("a\rb", "invalid_text"),
        ("c1 \x85 \x9b", "invalid_text"),
        ("del\x7f", "invalid_text"),
        ("evil\u202egnp.exe", "invalid_text"),  # right-to-left override
        ("\u2067isolate", "invalid_text"),
        ("line\u2028sep", "invalid_text"),
        ("non\ufdd0char", "invalid_text"),
        ("non\uffffchar", "invalid_text"),
        ("plane\U0010fffe", "invalid_text"),
        ("z" + "\u0301" * 9, "invalid_text"),  # "Zalgo": marks piled over other lines
        ("\u200b\u200d\ufe0f", "empty"),  # only invisible characters
        ("\u2800\u3164 ", "empty"),  # a Braille blank and a Hangul filler
    ],
)
def test_texts_that_could_not_be_sent_or_shown_are_refused(text: str, code: str) -> None:
    result = parse_command(json.dumps({"type": "message", "text": text}))
    assert isinstance(result, Invalid)
    assert result.code == code
    result.text.encode("utf-8")  # the error itself can be sent


ORDINARY_TEXTS = [
    "tab\tand\nnewline",
    "👍🏽 👨\u200d👩\u200d👧 ❤\ufe0f",  # joiners and variation selectors in emoji
    "שלום\u200f עולם",  # a right-to-left mark
    "e\u0301" + "\u0301" * 7,  # 8 marks in a row are fine
    "\U0001f600 astral",
]


def test_the_line_is_drawn_between_unsendable_and_ordinary_texts() -> None:
    for text in ORDINARY_TEXTS:
        assert parse_command(json.dumps({"type": "message", "text": text})) == Say(text)
    for text in ("\ud800", "\u200b"):
        assert isinstance(parse_command(json.dumps({"type": "message", "text": text})), Invalid)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_nesting_is_invalid_json_not_a_recursion_error(depth: int) -> None:
    for raw in ("[" * depth + "]" * depth, '{"type":"message","text":' + "[" * depth):
        result = parse_command(raw)
        assert isinstance(result, Invalid)
        assert result.code == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "message", "text": "x", "n": NaN}',
        '{"type": "message", "text": "x"}'.encode("utf-16"),  # bytes are UTF-8 only
    ],
)
def test_not_quite_json_is_invalid_json(raw: str | bytes) -> None:
    result = parse_command(raw)
    assert isinstance(result, Invalid)
    assert result.code == "invalid_json"


# Any text at all, surrogates and control characters included.
any_char = st.characters(codec=None, categories=None)
any_text = st.text(any_char, max_size=40) | st.text(
    st.characters(categories=["Cs", "Cc", "Cf", "Mn", "Co", "Cn", "Zl", "Zp"]), max_size=10
)


def nested(depth: int, kind: str) -> str:
    return kind[0] * depth + kind[1] * depth


@given(
    st.one_of(
        any_text,
        st.binary(max_size=60),
        st.builds(nested, st.integers(0, 5000), st.sampled_from(["[]", "{}"])),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | any_text,
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(any_text | st.just("type"), inner, max_size=3)
            ),
            max_leaves=10,
        ).map(lambda value: json.dumps(value)),
    )
)
def test_parse_command_never_raises(raw: str | bytes) -> None:
    assert isinstance(parse_command(raw), Join | Say | Invalid)


@given(any_text, st.sampled_from(["message", "join"]))
def test_whatever_is_accepted_encodes_and_round_trips(value: str, kind: str) -> None:
    field = "text" if kind == "message" else "nick"
    result = parse_command(json.dumps({"type": kind, field: value}))
    if isinstance(result, Invalid):
        result.text.encode("utf-8")
        return
    accepted = result.text if isinstance(result, Say) else result.nick
    event = {"type": "message", "nick": "ann", "text": accepted, "time": 1.5}
    wire = encode(event)
    wire.encode("utf-8")  # (strict: a lone surrogate raises here)
    assert json.loads(wire) == event
    if isinstance(result, Say):
        assert accepted == value  # texts are carried as sent
        assert parse_event(event) == event  # and another worker accepts them too
    else:
        assert nick_problem(accepted) is None
        assert normalize_nick(accepted) == accepted


# -- nicknames that look the same (issue 9) ---------------------------------------------


@pytest.mark.parametrize(
    "nick",
    [
        "a\u034fnn",  # combining grapheme joiner
        "ann\ufe0f",  # variation selector
        "an\u180bn",  # Mongolian free variation selector
        "\u3164",  # Hangul filler: a "letter" that is blank
        "ann\U000e0100",  # variation selector supplement
        "\u0301\u0301",  # only combining marks
        "a \u0301",  # a mark on a space
        "x" + "\u0301" * 4,  # more than 3 marks on a letter
        "...",  # no letter at all
        "-_-",
    ],
)
def test_invisible_and_baseless_nicknames_are_refused(nick: str) -> None:
    # (with those that were refused already: format characters, symbols)
    for sent in (nick, "a\u200bnn", "an\u00adn", "ann\u202e", "\ud800", "ann\u2800", "a\u20dd"):
        result = parse_command(json.dumps({"type": "join", "nick": sent}))
        assert isinstance(result, Invalid)
        assert result.code == "invalid_nick"
        result.text.encode("utf-8")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("\uff41\uff4e\uff4e", "ann"),  # fullwidth
        ("e\u0301mile", "émile"),  # decomposed becomes precomposed
        ("a  \u3000 b", "a b"),  # white space runs become one space
        ("ﬁsh", "fish"),  # the ligature
        ("Ⅻ", "XII"),
    ],
)
def test_nicknames_are_normalized(sent: str, kept: str) -> None:
    assert parse_command(json.dumps({"type": "join", "nick": sent})) == Join(kept)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ann", "ANN"),
        ("ann", "\u0430nn"),  # Cyrillic a
        ("ANN", "\u0410NN"),  # Cyrillic A
        ("paypal", "p\u0430yp\u0430l"),
        ("bob", "b\u03bfb"),  # Greek omicron
        ("Ian", "lan"),  # capital I, small l
        ("B0B", "BOB"),
        ("m1ke", "mlke"),
        ("modern", "modem"),  # rn and m
    ],
)
def test_look_alike_nicknames_share_a_key(one: str, other: str) -> None:
    assert clash(one, other)


@pytest.mark.parametrize(("one", "other"), [("ann", "bob"), ("zoë", "zoe"), ("Иван", "ivan")])
def test_different_nicknames_do_not_clash(one: str, other: str) -> None:
    assert not clash(one, other)


def clash(one: str, other: str) -> bool:
    """Whether a room refuses `other` while `one` is in it."""
    return any(a == b for a, b in zip(nick_keys(one), nick_keys(other), strict=True))


# -- events from other workers (issue 9, 4) -------------------------------------------


def envelope(event: object, worker: object = "w2") -> str:
    return json.dumps({"worker": worker, "event": event})


GOOD_MESSAGE = {"type": "message", "nick": "ann", "text": "hi", "time": 1.5}


@pytest.mark.parametrize(
    "event",
    [
        GOOD_MESSAGE,
        {"type": "presence", "count": 0},
        {"type": "presence", "count": MAX_COUNT},
        {"type": "presence", "count": 3, "joined": ["ann", "Zoë"], "joined_more": 1},
        {"type": "presence", "count": 3, "left": ["bob"], "renamed": [["ann", "anna"]]},
        {
            "type": "presence",
            "count": 3,
            "joined": [f"j{i}" for i in range(MAX_NAMES)],
            "joined_more": MAX_COUNT,
            "left": [f"l{i}" for i in range(MAX_NAMES)],
            "left_more": 5,
            "renamed": [[f"a{i}", f"b{i}"] for i in range(MAX_NAMES)],
            "renamed_more": 7,
        },
    ],
)
def test_room_events_from_workers_are_accepted_as_they_are(event: dict[str, object]) -> None:
    parsed = parse_envelope(envelope(event))
    assert isinstance(parsed, Envelope)
    assert parsed == Envelope("w2", event)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[" * 100_000,
        envelope({"type": "presence"}),  # no count
        envelope({"type": "presence", "count": "4"}),
        envelope({"type": "presence", "count": True}),
        envelope({"type": "presence", "count": -1}),
        envelope({"type": "presence", "count": MAX_COUNT + 1}),
        envelope({"type": "presence", "count": 1.5}),
        envelope({"type": "presence", "count": 1}, worker=["w", 2]),
        envelope({"type": "presence", "count": 1}, worker=""),
        envelope({"type": "presence", "count": 1}, worker="w" * 300),
        envelope({"type": "presence", "count": 1, "extra": 1}),
        envelope({"type": ["message"]}),
        envelope({"type": "welcome", "history": []}),
        envelope("message"),
        envelope({**GOOD_MESSAGE, "text": "\ud800"}),
        envelope({**GOOD_MESSAGE, "text": ""}),
        envelope({**GOOD_MESSAGE, "text": "x" * 2001}),
        envelope({**GOOD_MESSAGE, "nick": "<b>"}),
        envelope({**GOOD_MESSAGE, "nick": " ann"}),  # not normalized
        envelope({**GOOD_MESSAGE, "nick": "a\u034fnn"}),
        envelope({**GOOD_MESSAGE, "time": "now"}),
        envelope({**GOOD_MESSAGE, "time": None}),
        envelope({**GOOD_MESSAGE, "time": 1e300}),
        envelope({**GOOD_MESSAGE, "time": -1}),
        '{"worker": "w2", "event": {"type": "message", "nick": "ann", "text": "x", "time": NaN}}',
        envelope({"type": "renamed", "from": "ann", "to": 5}),
        json.dumps({"worker": "w2", "event": GOOD_MESSAGE, "more": 1}),
        json.dumps({"worker": "w2"}),
        envelope({**GOOD_MESSAGE, "text": "x" * 2000}) + " " * 30_000,  # over the size bound
    ],
)
def test_hostile_envelopes_are_refused(raw: str) -> None:
    assert isinstance(parse_envelope(raw), Invalid)


PRESENCE = {"type": "presence", "count": 2}


@pytest.mark.parametrize(
    "batch",
    [
        {"joined": [f"n{i}" for i in range(MAX_NAMES + 1)]},  # over the bound
        {"left": [f"n{i}" for i in range(10_000)]},
        {"renamed": [["a", "b"]] * (MAX_NAMES + 1)},
        {"joined": "ann"},
        {"joined": ["<b>"]},
        {"joined": [" ann"]},  # not normalized
        {"left": [None]},
        {"left": [["ann"]]},
        {"renamed": ["ann"]},
        {"renamed": [["ann"]]},
        {"renamed": [["ann", "bob", "cyd"]]},
        {"renamed": [["ann", "a͏nn"]]},
        {"joined_more": -1},
        {"joined_more": MAX_COUNT + 1},
        {"left_more": True},
        {"left_more": 1.0},
        {"renamed_more": "3"},
        {"others": ["ann"]},
        {"nick": "ann"},
    ],
)
def test_hostile_presence_batches_are_refused(batch: dict[str, object]) -> None:
    assert isinstance(parse_envelope(envelope({**PRESENCE, **batch})), Invalid)


def test_a_presence_batch_is_re_encoded_without_its_empty_parts() -> None:
    raw = envelope({**PRESENCE, "joined": [], "joined_more": 0, "left": ["ann"], "left_more": 0})
    assert parse_envelope(raw) == Envelope("w2", {**PRESENCE, "left": ["ann"]})


def test_stored_history_items_are_checked_and_re_encoded() -> None:
    loose = '{ "time": 1.5, "text": "hi", "nick": "ann", "type": "message" }'
    assert parse_stored(loose) == encode(GOOD_MESSAGE)
    assert parse_stored(json.dumps({**GOOD_MESSAGE, "time": 2})) == encode(
        {**GOOD_MESSAGE, "time": 2.0}
    )
    for bad in [
        "x",
        '{"type":"joined","nick":"ann"}',
        json.dumps({**GOOD_MESSAGE, "text": "\ud800"}),
        "[" * 100_000,
    ]:
        assert parse_stored(bad) is None
