"""The reader's event constructors: the C one and the Python one give the
very objects the public constructors give."""

from __future__ import annotations

import dataclasses
import gc
import pickle
import types
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from wsproto_core import events
from wsproto_core.events import BytesFragment, BytesMessage, TextFragment, TextMessage

MAKERS: list[Callable[..., Callable[..., Any]]] = [events.python_constructor]
if events.c_constructor is not None:
    MAKERS.append(events.c_constructor)

CASES: list[tuple[type, tuple[str, ...], tuple[object, ...]]] = [
    (TextMessage, ("data",), ("héllo",)),
    (BytesMessage, ("data",), (b"\x00\xff",)),
    (TextFragment, ("data", "final"), ("part", False)),
    (BytesFragment, ("data", "final"), (b"part", True)),
]


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize(("cls", "fields", "values"), CASES)
def test_same_object_as_the_public_constructor(
    make: Callable[..., Callable[..., Any]],
    cls: type,
    fields: tuple[str, ...],
    values: tuple[object, ...],
) -> None:
    made = make(cls, *fields)(*values)
    public = cls(**dict(zip(fields, values, strict=True)))
    assert type(made) is cls
    assert made == public
    assert hash(made) == hash(public)
    assert repr(made) == repr(public)
    assert dataclasses.astuple(made) == values
    assert pickle.loads(pickle.dumps(made)) == public


@pytest.mark.parametrize("make", MAKERS)
def test_what_it_makes_is_still_frozen(make: Callable[..., Callable[..., Any]]) -> None:
    message = make(TextMessage, "data")("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.data = "y"


@pytest.mark.parametrize("make", MAKERS)
def test_wrong_number_of_values_is_a_type_error(make: Callable[..., Callable[..., Any]]) -> None:
    with pytest.raises(TypeError):
        make(TextFragment, "data", "final")("only one")


@pytest.mark.skipif(events.c_constructor is None, reason="the C accelerator was not built")
def test_the_c_constructor_refuses_what_it_cannot_set() -> None:
    make = events.c_constructor
    assert make is not None

    class Plain:
        a = 1

    refused: list[tuple[Any, ...]] = [
        (TextMessage, "__doc__"),  # a class attribute, not a slot
        (TextMessage,),
        ("not a class", "data"),
        (TextFragment, "data", "data"),  # one slot given twice
        (types.FrameType, "f_trace"),  # no way to make one: tp_new is NULL
        (BytesMessage, "__class__"),  # a getset descriptor, not a slot
        (BytesMessage, "__init__"),  # a function
        (TextMessage, "data", "final", "more"),
        (Plain, "a"),
        (TextMessage, 42),
    ]
    for args in refused:
        with pytest.raises(TypeError):
            make(*args)
    with pytest.raises(TypeError):
        make(TextMessage, "data")(data="keyword")
    with pytest.raises(AttributeError):
        make(TextMessage, "nope")


@pytest.mark.skipif(events.c_constructor is None, reason="the C accelerator was not built")
def test_the_c_constructor_takes_no_slot_of_another_class() -> None:
    """A member descriptor of an unrelated class would write at its offset."""
    make = events.c_constructor
    assert make is not None

    class Other:
        __slots__ = ("data",)

    class Victim:
        __slots__ = ("x",)
        data = Other.data  # the other class's descriptor, reachable by name

    with pytest.raises(TypeError):
        make(Victim, "data")


@pytest.mark.skipif(events.c_constructor is None, reason="the C accelerator was not built")
def test_a_class_and_its_c_constructor_can_be_collected() -> None:
    """It holds the class: without GC support a cycle through it would
    never be freed."""
    make = events.c_constructor
    assert make is not None

    @dataclasses.dataclass(frozen=True, slots=True)
    class Passing:
        data: str

    constructor = make(Passing, "data")
    Passing.maker = constructor  # type: ignore[attr-defined]  # the cycle
    alive = weakref.ref(Passing)
    del Passing, constructor
    gc.collect()
    assert alive() is None


def test_every_field_is_given_in_order() -> None:
    for fields in [(), ("final",), ("final", "data"), ("data",)]:
        with pytest.raises(TypeError):
            events._constructor(TextFragment, *fields)


def test_the_reader_uses_the_fastest_constructor_there_is() -> None:
    """The C one unless it was not built or WSPROTO_CORE_PURE_PYTHON is set
    (the same rule as the mask accelerator's)."""
    from wsproto_core import masking

    c_in_use = masking.apply_mask is masking.apply_mask_c
    assert isinstance(events.new_text_message, events.c_constructor or ()) == c_in_use  # type: ignore[arg-type]


def test_a_wrong_number_of_values_names_the_type_and_the_count() -> None:
    with pytest.raises(TypeError) as raised:
        events.python_constructor(TextFragment, "data", "final")("only one")
    assert str(raised.value) == "TextFragment constructor takes 2 positional arguments"


def test_fields_out_of_order_are_named_in_the_error() -> None:
    with pytest.raises(TypeError) as raised:
        events._constructor(TextFragment, "final", "data")
    assert str(raised.value) == "TextFragment's fields are not ('final', 'data')"


@pytest.mark.parametrize(("cls", "fields", "values"), CASES)
def test_every_field_in_order_makes_a_constructor_of_that_type(
    cls: type, fields: tuple[str, ...], values: tuple[object, ...]
) -> None:
    made = events._constructor(cls, *fields)(*values)
    assert type(made) is cls
    assert made == cls(**dict(zip(fields, values, strict=True)))


class StandInC:
    """Records what `_constructor` asks of the C constructor."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> Callable[..., Any]:
        self.calls.append(args)
        return events.python_constructor(*args)


@pytest.mark.parametrize(
    ("built", "pure_python", "uses_c"),
    [(True, None, True), (True, "1", False), (False, None, False), (False, "1", False)],
)
def test_the_c_constructor_serves_when_built_and_not_refused(
    monkeypatch: pytest.MonkeyPatch, built: bool, pure_python: str | None, uses_c: bool
) -> None:
    stand_in = StandInC()
    monkeypatch.setattr(events, "c_constructor", stand_in if built else None)
    if pure_python is None:
        monkeypatch.delenv("WSPROTO_CORE_PURE_PYTHON", raising=False)
    else:
        monkeypatch.setenv("WSPROTO_CORE_PURE_PYTHON", pure_python)
    make = events._constructor(TextFragment, "data", "final")
    assert stand_in.calls == ([(TextFragment, "data", "final")] if uses_c else [])
    assert make("x", True) == TextFragment(data="x", final=True)
