"""The chat's wire schema: small JSON objects with a `type`, both ways.

Client to server:

    {"type": "join", "nick": "ann"}          take a nickname (again to rename)
    {"type": "message", "text": "hello"}     say something (after joining)

Server to client:

    {"type": "welcome", "history": [<message>...], "online": 3, "max_text": 2000}
    {"type": "you", "nick": "ann"}           your join or rename went through
    {"type": "message", "nick": "ann", "text": "hello", "time": 1763750000.0}
    {"type": "presence", "online": 42,       people online, across workers, and
     "joined": ["ann", "bob"], "joined_more": 37,      who came, went or took
     "left": ["cyd"],                                  another name since the
     "renamed": [["dan", "dave"]]}                     last one (at most one a second)
    {"type": "error", "code": "...", "text": "...", "retry_after": 1.5}

A presence update lists at most `MAX_NAMES` names in each of "joined",
"left" and "renamed" (pairs: from, to); "<list>_more" counts the rest. A
list that is empty is left out, and so is a "_more" of 0: the update of a
count alone is {"type": "presence", "online": 4}. However many people
arrive at once, one update per second of bounded size goes to each client.

Error codes: "invalid_json", "unknown_type", "invalid_nick", "nick_taken",
"not_joined", "empty", "too_long", "invalid_text" (a character that the
chat does not carry: see `text_problem`), "rate_limited" (with
`retry_after`, in seconds; for messages, and for joins and renames, per
client address), "nick_pending" (a join or rename while the last one is
still being checked with the other workers), "nick_lost" (the nickname was
taken by someone on another worker while Redis was away: choose another).
The page shows every error as a notice.

Between workers, through Redis (the channel is open to anyone who can
publish on it, so `parse_envelope` checks every field again):

    {"worker": "host:pid", "event": <message>}
    {"worker": "host:pid", "event": {"type": "presence", "count": 3,
                                     "joined": [...], "joined_more": 0,
                                     "left": [...], "renamed": [...]}}

A worker's presence announcement (once a second) carries its client count
and the joins, leaves and renames of its own clients since its last one,
with the same optional, bounded lists as the clients' presence update.

and the shared history is a Redis list of <message> events.

Everything that is accepted here (a nickname, a text, an event) is text
that every later step can encode as UTF-8, store, frame and show: the
checks happen once, where the input enters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

MAX_NICK = 24
MAX_TEXT = 2000
MAX_MARKS = 8  # combining marks in a row in a text: more is "Zalgo", drawn over other lines
MAX_NICK_MARKS = 3  # combining marks on one letter of a nickname
MAX_COUNT = 1_000_000  # clients a worker may claim to have
MAX_WORKER = 256  # characters in a worker's name (hostname:pid)
MAX_TIME = 1e11  # seconds since 1970 (the year 5138): a larger `time` is not one
MAX_NAMES = 20  # names listed in each list of a presence update; the rest are counted
PRESENCE_LISTS = ("joined", "left", "renamed")

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt):
# characters that render as nothing at all (joiners, variation selectors,
# Hangul fillers, tags, bidi controls, the soft hyphen...).
_IGNORABLE: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# What a text may never hold:
_FORBIDDEN_IN_TEXT: Final = (
    (0x00, 0x08),  # C0 controls but for \t and \n
    (0x0B, 0x1F),  # (\r too: the page sends \n)
    (0x7F, 0x9F),  # DEL and the C1 controls
    (0xD800, 0xDFFF),  # lone surrogates: not encodable as UTF-8 at all
    (0x202A, 0x202E),  # bidi embeddings and overrides: they reorder what
    (0x2066, 0x2069),  # follows them, so a text could pass for another
    (0x2028, 0x2029),  # line and paragraph separators: \n is the newline
    (0xFFF9, 0xFFFB),  # interlinear annotation controls
    (0xFDD0, 0xFDEF),  # noncharacters (and the two at the end of each plane)
    *((plane + 0xFFFE, plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000)),
)
_BLANK: Final = ((0x2800, 0x2800),)  # the Braille blank: a letter-like space


def _char_class(ranges: tuple[tuple[int, int], ...], *, but: str = "") -> str:
    """A regex character class of code point ranges; with `but`, the class
    of everything except those ranges and `but`."""
    parts = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges)
    return f"[^{but}{parts}]" if but else f"[{parts}]"


_FORBIDDEN_RE: Final = re.compile(_char_class(_FORBIDDEN_IN_TEXT))
# A visible character: not white space, not ignorable, not blank.
_VISIBLE_RE: Final = re.compile(_char_class(_IGNORABLE + _BLANK, but=r"\s"))
_IGNORABLE_RE: Final = re.compile(_char_class(_IGNORABLE))


def _table(pairs: str) -> dict[int, str]:
    """A str.translate table from "aA bB ..." (each pair: from, to)."""
    return {ord(pair[0]): pair[1] for pair in pairs.split()}


# Look-alikes of Latin letters in Cyrillic, Greek and IPA (from Unicode's
# confusables.txt, the common ones). Lower case only: applied after casefold.
_CONFUSABLE_LOWER: Final = _table(
    "аa еe оo рp сc уy хx іi јj ѕs ԁd ԛq ԝw һh ӏl үy кk ǀl ɡg ɑa "  # noqa: RUF001
    "οo αa ιi κk νv ρp υu χx γy ϲc ϳj ıi ɩi"  # noqa: RUF001
)
# Case kept: the upper-case look-alikes too, and the Latin letters and
# digits that pass for each other in common fonts (I, l and 1; O and 0).
_CONFUSABLE_CASED: Final = _table(
    "АA ВB ЕE КK МM НH ОO РP СC ТT ХX УY ЅS Іl ЈJ ҮY Ӏl "  # noqa: RUF001
    "ΑA ΒB ΕE ΖZ ΗH Ιl ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX Il 1l 0O "  # noqa: RUF001
    "аa еe оo рp сc уy хx іi јj ѕs ԁd ԛq ԝw һh ӏl үy ǀl ɡg ɑa "  # noqa: RUF001
    "οo αa ιi κk νv ρp υu χx ϲc ıi ɩi"  # noqa: RUF001
)


@dataclass(frozen=True, slots=True)
class Join:
    nick: str


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Invalid:
    code: str
    text: str


Command = Join | Say | Invalid


@dataclass(frozen=True, slots=True)
class Envelope:
    """A room event from a worker, checked: `event` holds exactly the
    fields of its type, in their canonical order."""

    worker: str
    event: dict[str, object]


_NOT_JSON: Final = object()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def load_json(raw: str | bytes) -> object:
    """`json.loads` that never raises: `_NOT_JSON` for anything that is not
    strict JSON in UTF-8, including nesting deep enough to exhaust the
    parser's recursion (a RecursionError, which would otherwise escape as
    a traceback per message), NaN and Infinity, and integers too long to
    convert."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError, TypeError):
        return _NOT_JSON


def parse_command(raw: str | bytes, *, max_text: int = MAX_TEXT) -> Command:
    """Turn one client message into a command, or say why it is not one.
    Never raises, whatever `raw` holds."""
    data = load_json(raw)
    if not isinstance(data, dict):
        return Invalid("invalid_json", "messages are JSON objects")
    kind = data.get("type")
    if kind == "join":
        nick = data.get("nick")
        problem = nick_problem(nick)
        if problem is not None:
            return Invalid("invalid_nick", problem)
        assert isinstance(nick, str)
        return Join(normalize_nick(nick))
    if kind == "message":
        text = data.get("text")
        refused = text_problem(text, max_text=max_text)
        if refused is not None:
            return refused
        assert isinstance(text, str)
        return Say(text)
    return Invalid("unknown_type", "type must be 'join' or 'message'")


# -- texts -------------------------------------------------------------------------


def text_problem(text: object, *, max_text: int = MAX_TEXT) -> Invalid | None:
    """Why `text` cannot be a message, or None.

    Refused: anything but a string; a text with nothing visible in it
    ("empty"); over `max_text` characters ("too_long"); and ("invalid_text")
    lone surrogates (they cannot be encoded, so the text could never be
    sent), control characters but for tab and newline, noncharacters, the
    bidi embedding, override and isolate controls (they make a text read
    as something else), line and paragraph separators, and more than
    `MAX_MARKS` combining marks in a row (they pile up over other lines).
    Ordinary invisible helpers (zero-width joiners in emoji, variation
    selectors, LRM/RLM in right-to-left text) are fine.
    """
    if not isinstance(text, str) or not _VISIBLE_RE.search(text):
        return Invalid("empty", "a message needs some text")
    if len(text) > max_text:
        return Invalid("too_long", f"messages are limited to {max_text} characters")
    bad = _FORBIDDEN_RE.search(text)
    if bad is not None:
        return Invalid("invalid_text", f"messages cannot contain {_describe(bad.group())}")
    if not text.isascii() and _longest_marks(text) > MAX_MARKS:
        return Invalid("invalid_text", f"at most {MAX_MARKS} combining marks in a row")
    return None


def _longest_marks(text: str) -> int:
    """The longest run of non-spacing or enclosing marks in `text`."""
    longest = run = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me"):
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    return longest


def _describe(char: str) -> str:
    """A character for an error message, readable and always encodable."""
    if " " < char <= "~":
        return repr(char)
    return f"U+{ord(char):04X}"


# -- nicknames ---------------------------------------------------------------------


def normalize_nick(nick: str) -> str:
    """The form a nickname is kept and shown in: NFKC (so fullwidth,
    decomposed and compatibility forms become the ordinary letters), runs
    of white space as one space, none at the ends."""
    return " ".join(unicodedata.normalize("NFKC", nick).split())


def nick_problem(nick: object) -> str | None:
    """Why `nick` is not a valid nickname, or None.

    Once normalized (`normalize_nick`): 1-24 characters; letters and digits
    of any script, spaces and - _ . ; at least one letter or digit;
    combining marks only on a letter or digit, at most `MAX_NICK_MARKS`
    each. Never: control characters, default-ignorable code points (the
    invisible ones: joiners, variation selectors, Hangul fillers, the
    combining grapheme joiner...), format characters, symbols, lone
    surrogates. So two nicknames that look the same differ in visible
    letters, which `nick_keys` then compares.
    """
    if not isinstance(nick, str):
        return "a nickname is a string"
    if len(nick) > 4 * MAX_NICK:
        return f"a nickname has 1 to {MAX_NICK} characters"
    for char in nick:  # before NFKC, to name the character that was sent
        if unicodedata.category(char) in ("Cc", "Cs"):
            return f"a nickname cannot contain {_describe(char)}"
        if _IGNORABLE_RE.match(char):
            return f"a nickname cannot contain invisible characters ({_describe(char)})"
    nick = normalize_nick(nick)
    if not 1 <= len(nick) <= MAX_NICK:
        return f"a nickname has 1 to {MAX_NICK} characters"
    marks = -1  # marks on the current letter; -1: no letter to put one on
    for char in nick:
        if _IGNORABLE_RE.match(char):
            return f"a nickname cannot contain invisible characters ({_describe(char)})"
        kind = unicodedata.category(char)
        if kind[0] in "LN":
            marks = 0
        elif kind in ("Mn", "Mc"):
            if marks < 0 or marks >= MAX_NICK_MARKS:
                return "a combining mark must follow a letter, at most 3 on each"
            marks += 1
        elif char in " -_.":
            marks = -1
        else:
            return f"a nickname cannot contain {_describe(char)}"
    if not any(unicodedata.category(char)[0] in "LN" for char in nick):
        return "a nickname needs a letter or a digit"
    return None


def is_clean_nick(nick: object) -> bool:
    """A nickname exactly as this server would have kept it: valid and
    already normalized (what another worker must publish)."""
    return isinstance(nick, str) and nick_problem(nick) is None and normalize_nick(nick) == nick


def nick_keys(nick: str) -> tuple[str, str]:
    """Two keys: nicknames that share either look alike, and only one of
    them may be in a room at a time.

    The first is case-insensitive (casefold) with Cyrillic and Greek
    look-alikes mapped to the Latin letters they pass for, so "Ann",
    "ANN" and "\u0430nn" (with a Cyrillic a) clash. The second keeps case but
    maps I, l and 1 to l, O and 0 to O, "rn" to "m" and "vv" to "w", and
    the upper-case Cyrillic and Greek look-alikes to Latin, so "Ian" and
    "lan", "B0B" and "BOB", "\u0410NN" and "ANN" clash. Mapping instead of
    refusing mixed-script names keeps names like "Иван_2" or "Zoë"
    possible; a false clash only asks someone to pick another name. (The
    nickname itself is NFKC already, so decomposed letters and fullwidth
    forms clash with the ordinary ones.)
    """
    nick = normalize_nick(nick)
    folded = nick.casefold().translate(_CONFUSABLE_LOWER)
    cased = nick.translate(_CONFUSABLE_CASED).replace("rn", "m").replace("vv", "w")
    return folded, cased


# -- between workers ---------------------------------------------------------------

_EVENT_FIELDS: Final = {
    "message": ("type", "nick", "text", "time"),
    "presence": ("type", "count"),  # and the optional lists (see `_parse_batch`)
}
# A presence event's optional fields, in their canonical order.
_BATCH_FIELDS: Final = tuple(f for name in PRESENCE_LISTS for f in (name, f"{name}_more"))


def max_envelope(max_text: int = MAX_TEXT) -> int:
    """The longest envelope worth parsing, in characters: a `max_text`
    message even if every character were escaped (`\\ud83d\\ude00`)."""
    return 12 * max_text + 1024


def parse_envelope(raw: str, *, max_text: int = MAX_TEXT) -> Envelope | Invalid:
    """An envelope from the hub, checked field by field (never raises).
    Refused with a reason: too long, not JSON (or nested too deep), not
    exactly {"worker", "event"}, a worker name that is not a short
    string, or an event that `parse_event` refuses."""
    if not isinstance(raw, str) or len(raw) > max_envelope(max_text):
        return Invalid("too_long", "envelope over the size limit")
    data = load_json(raw)
    if not isinstance(data, dict) or set(data) != {"worker", "event"}:
        return Invalid("invalid_json", "not an envelope")
    worker = data["worker"]
    if not isinstance(worker, str) or not 1 <= len(worker) <= MAX_WORKER:
        return Invalid("invalid_json", "the worker is not a short string")
    event = parse_event(data["event"], max_text=max_text)
    if isinstance(event, Invalid):
        return event
    return Envelope(worker, event)


def parse_event(data: object, *, max_text: int = MAX_TEXT) -> dict[str, object] | Invalid:
    """A room event as the server itself would have made it, rebuilt from
    the checked fields (so what is sent on is our own encoding), or why
    not: exactly the fields of its type; nicknames valid and normalized;
    texts that `text_problem` accepts; `time` a finite number of seconds;
    `count` an integer from 0 to `MAX_COUNT`; a presence's lists bounded
    (`_parse_batch`)."""
    if not isinstance(data, dict):
        return Invalid("invalid_json", "the event is not an object")
    kind = data.get("type")
    fields = _EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
    extra = [f for f in data if f not in _BATCH_FIELDS] if kind == "presence" else data
    if fields is None or len(extra) != len(fields) or not all(f in data for f in fields):
        return Invalid("unknown_type", "not the fields of a room event")
    event = {field: data[field] for field in fields}
    if kind == "presence":
        batch = _parse_batch(data)
        if isinstance(batch, Invalid):
            return batch
        event.update(batch)
    for field in ("nick",):
        if field in event and not is_clean_nick(event[field]):
            return Invalid("invalid_nick", f"invalid {field}")
    if "text" in event:
        refused = text_problem(event["text"], max_text=max_text)
        if refused is not None:
            return refused
    if "time" in event:
        stamp = event["time"]
        # (NaN fails the comparison; bool is an int to Python, not here)
        if not isinstance(stamp, int | float) or isinstance(stamp, bool):
            return Invalid("invalid_json", "time is not a number")
        if not 0 <= stamp <= MAX_TIME:
            return Invalid("invalid_json", "time is out of range")
        event["time"] = float(stamp)
    if "count" in event:
        count = event["count"]
        if type(count) is not int or not 0 <= count <= MAX_COUNT:
            return Invalid("invalid_json", "count is not a count")
    return event


def _parse_batch(data: dict[str, object]) -> dict[str, object] | Invalid:
    """The optional lists of a presence event, checked: at most `MAX_NAMES`
    clean nicknames in "joined" and "left", as many [from, to] pairs of them
    in "renamed", and each "_more" a count from 0 to `MAX_COUNT`. Empty
    lists and zero counts are dropped (the canonical form leaves them out)."""
    batch: dict[str, object] = {}
    for name in PRESENCE_LISTS:
        items = data.get(name, [])
        if not isinstance(items, list) or len(items) > MAX_NAMES:
            return Invalid("invalid_json", f"{name} is not a short list")
        checked: list[object] = []
        for item in items:
            if name == "renamed":
                if not isinstance(item, list) or len(item) != 2:
                    return Invalid("invalid_json", "a rename is not a pair")
                if not all(is_clean_nick(nick) for nick in item):
                    return Invalid("invalid_nick", f"invalid nick in {name}")
                checked.append([item[0], item[1]])
            elif is_clean_nick(item):
                checked.append(item)
            else:
                return Invalid("invalid_nick", f"invalid nick in {name}")
        more = data.get(f"{name}_more", 0)
        if type(more) is not int or not 0 <= more <= MAX_COUNT:
            return Invalid("invalid_json", f"{name}_more is not a count")
        if checked:
            batch[name] = checked
        if more:
            batch[f"{name}_more"] = more
    return batch


def parse_stored(raw: object, *, max_text: int = MAX_TEXT) -> str | None:
    """One item of the shared history, re-encoded as our own canonical
    <message>, or None if it is anything else (the list is in Redis:
    anyone who can write there can put anything in it)."""
    if not isinstance(raw, str) or len(raw) > max_envelope(max_text):
        return None
    event = parse_event(load_json(raw), max_text=max_text)
    if isinstance(event, Invalid) or event["type"] != "message":
        return None
    return encode(event)


def encode(event: dict[str, object]) -> str:
    """Compact JSON: the same event is framed once and sent to everyone."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def error(code: str, text: str, **extra: object) -> str:
    return encode({"type": "error", "code": code, "text": text, **extra})
