"""schemas.frozen: the cheaper __init__ and the payload builder make the instances the
dataclass's own __init__ makes, for every event and command type."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from schemas import codec
from schemas.commands import COMMAND_TYPES
from schemas.events import EVENT_TYPES
from schemas.frozen import builder, fast_init

TYPES = EVENT_TYPES + COMMAND_TYPES


def sample(cls):
    """An instance whose fields all hold different values (a swap of two would show)."""
    return cls(**{f.name: f"value of {f.name}" for f in dataclasses.fields(cls)})


def _point(kw_only: bool = False) -> type:
    """The same frozen, slotted dataclass each call (a new class): one is left as the
    dataclass made it, the other given the fast __init__. Keyword-only like the events and
    commands, or not; with a keyword-only field of its own either way."""

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=kw_only)
    class Point:
        a: str
        b: int
        c: int | None = None
        d: str = "d"
        _: dataclasses.KW_ONLY
        e: int = 5

    return Point


_Plain, _Fast = _point(), fast_init(_point())
_PlainKw, _FastKw = _point(kw_only=True), fast_init(_point(kw_only=True))


def _outcome(make):
    try:
        value = make()
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("error", type(exc), str(exc))
    return ("value", tuple(getattr(value, f.name) for f in dataclasses.fields(value)))


@pytest.mark.parametrize("args, kwargs", [
    (("x", 1), {}), (("x", 1, 2), {}), (("x", 1, 2, "e"), {}), (("x",), {"b": 1, "d": "z"}),
    ((), {"a": "x", "b": 1}), (("x",), {}), ((), {}), (("x", 1, 2, "e", 5), {}),
    (("x", 1), {"a": "y"}), (("x", 1), {"e": 1}), (("x", 1), {"f": 1}),
    ((), {"a": "x", "b": 1, "e": 7}), ((), {"a": "x", "b": 1, "c": 2, "d": "z", "e": 7}),
])
@pytest.mark.parametrize("plain, fast", [(_Plain, _Fast), (_PlainKw, _FastKw)],
                         ids=["positional-or-keyword", "kw_only"])
def test_fast_init_binds_arguments_as_the_dataclass_does(plain, fast, args, kwargs):
    assert _outcome(lambda: fast(*args, **kwargs)) == _outcome(lambda: plain(*args, **kwargs))


def test_a_fast_instance_is_still_frozen_and_the_dataclass_s_in_every_other_way():
    fast = _Fast("x", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = "y"  # type: ignore[misc]
    assert repr(fast) == f"{_Fast.__qualname__}(a='x', b=1, c=None, d='d', e=5)" == repr(_Plain("x", 1))
    assert fast == _Fast("x", 1, None, "d") and hash(fast) == hash(_Fast("x", 1))
    assert dataclasses.replace(fast, b=2) == _Fast("x", 2)


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.TYPE)
def test_every_message_type_has_the_fast_init_and_makes_what_the_dataclass_made(cls):
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    assert "_set0" in cls.__init__.__code__.co_names  # the generated one, not the dataclass's
    message = sample(cls)
    values = {f.name: getattr(message, f.name) for f in dataclasses.fields(cls)}
    # The same instance by keywords, through the codec and through pickle; never positionally
    # (messages are built by keyword: a field that moves cannot take another's value).
    assert cls(**values) == message
    with pytest.raises(TypeError, match="positional argument"):
        cls(*values.values())
    assert codec.decode(codec.encode(message)) == message
    assert pickle.loads(pickle.dumps(message)) == message
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.TYPE)
def test_the_builder_sets_every_slot(cls):
    message = sample(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    built = builder(cls, lambda payload: tuple(payload[n] for n in names))(codec.to_dict(message))
    assert type(built) is cls and built == message and repr(built) == repr(message)


def test_what_the_fast_init_refuses():
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class Empty:
        pass

    for cls, why in ((NoSlots, "not a frozen, slotted"), (NotFrozen, "not a frozen, slotted"),
                     (Factory, "a default factory"), (PostInit, "__post_init__"),
                     (Empty, "no fields")):
        with pytest.raises(TypeError, match=why):
            fast_init(cls)
    with pytest.raises(TypeError, match="no fields"):
        builder(Empty, lambda payload: ())
