"""lamina.records behaves as the standard dataclasses for everything lamina uses.

Each case defines the same class twice, with :func:`dataclasses.dataclass` and with
:func:`lamina.records.dataclass`, and checks that both behave the same.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina import records


def twins(make):
    """The class ``make(decorator, field)`` builds, once per implementation."""
    return make(dataclasses.dataclass, dataclasses.field), make(records.dataclass, records.field)


def _point(decorator, field):
    @decorator(frozen=True)
    class Point:
        x: int
        y: int = 0
        tags: tuple[str, ...] = ()
        label: str = field(default="p", compare=False)
        kind: ClassVar[str] = "point"

        def norm(self) -> int:
            return abs(self.x) + abs(self.y)

    return Point


def _base_and_child(decorator, field):
    @decorator(frozen=True, kw_only=True)
    class Base:
        original: str
        line: int = 0
        flags: tuple[str, ...] = ()

    @decorator(frozen=True, kw_only=True)
    class Child(Base):
        keyword: ClassVar[str] = "child"
        name: str
        extra: list[str] = field(default_factory=list)

    return Base, Child


def _mutable(decorator, field):
    @decorator
    class Counter:
        name: str
        values: list[int] = field(default_factory=list)
        seen: int = field(default=0, repr=False, compare=False)

        def __post_init__(self) -> None:
            self.seen = len(self.values)

    return Counter


@given(st.integers(), st.integers(), st.lists(st.text(max_size=3), max_size=3), st.text(max_size=3))
def test_frozen_records_compare_hash_and_show_like_dataclasses(x, y, tags, label) -> None:
    standard, ours = twins(_point)
    a, b = standard(x, y, tuple(tags), label), ours(x, y, tuple(tags), label)
    assert repr(a) == repr(b).replace("records", "dataclasses")
    assert hash(b) == hash(ours(x, y, tuple(tags), "other"))  # label is not compared
    assert b == ours(x, y=y, tags=tuple(tags), label="other")
    assert (b == ours(x + 1, y, tuple(tags))) is False
    assert b.norm() == a.norm() and ours.kind == "point" and "kind" not in repr(b)
    assert records.replace(b, x=x + 1) == ours(x + 1, y, tuple(tags))
    assert records.asdict(b) == dataclasses.asdict(a)
    assert ours.__match_args__ == standard.__match_args__
    assert [item.name for item in records.fields(ours)] == [item.name for item in dataclasses.fields(standard)]


def test_frozen_records_refuse_assignment_and_deletion() -> None:
    _, ours = twins(_point)
    point = ours(1)
    with pytest.raises(records.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(records.FrozenInstanceError):
        del point.y  # type: ignore[misc]
    with pytest.raises(records.FrozenInstanceError):
        point.other = 1  # type: ignore[attr-defined]
    assert isinstance(records.FrozenInstanceError(), AttributeError)


def test_keyword_only_inheritance_defaults_and_factories() -> None:
    (standard_base, standard_child), (base, child) = twins(_base_and_child)
    made = child(original="X", name="n")
    assert made == child(original="X", name="n", line=0, flags=(), extra=[])
    assert made.extra == [] and made.extra is not child(original="X", name="n").extra
    assert repr(made).endswith("Child(original='X', line=0, flags=(), name='n', extra=[])")
    assert made != base(original="X")
    for cls in (child, standard_child):
        with pytest.raises(TypeError):
            cls("X", name="n")  # keyword-only
        with pytest.raises(TypeError):
            cls(original="X")  # name is missing
        with pytest.raises(TypeError):
            cls(original="X", name="n", unknown=1)
    assert records.replace(made, name="m").name == "m"


def test_mutable_records_run_post_init_and_are_unhashable() -> None:
    standard, ours = twins(_mutable)
    counter = ours("c", [1, 2])
    assert counter.seen == 2 and standard("c", [1, 2]).seen == 2
    counter.values.append(3)
    counter.name = "d"
    assert counter == ours("d", [1, 2, 3]) and repr(counter).endswith("Counter(name='d', values=[1, 2, 3])")
    with pytest.raises(TypeError):
        hash(counter)
    assert records.replace(counter, values=[]).seen == 0


def test_order_compares_fields_as_tuples() -> None:
    @records.dataclass(frozen=True, order=True)
    class Version:
        major: int
        minor: int = 0

    assert sorted([Version(1, 2), Version(1), Version(0, 9)]) == [Version(0, 9), Version(1), Version(1, 2)]
    assert Version(1) <= Version(1) and Version(2) > Version(1, 5)


def test_definition_errors_match_dataclasses() -> None:
    with pytest.raises(TypeError, match="non-default argument"):
        @records.dataclass
        class Bad:
            a: int = 0
            b: int

    with pytest.raises(ValueError, match="mutable default"):
        @records.dataclass
        class Mutable:
            a: list = []  # noqa: RUF012

    with pytest.raises(TypeError, match="not supported"):
        records.dataclass(slots=True)

    with pytest.raises(TypeError, match="frozen"):
        @records.dataclass(frozen=True)
        class Frozen:
            a: int = 0

        @records.dataclass
        class Thawed(Frozen):
            b: int = 0


def test_an_explicit_init_repr_or_eq_is_kept() -> None:
    @records.dataclass(frozen=True)
    class Custom:
        a: int

        def __repr__(self) -> str:
            return "custom"

        def __eq__(self, other: object) -> bool:
            return True

    assert repr(Custom(1)) == "custom" and Custom(1) == Custom(2) and hash(Custom(1)) == hash(Custom(1))


def _shapes(frozen: bool):
    """Two copies of a record class (with a subclass), one whose __init__ is compiled now."""
    made = [_shape(frozen), _shape(frozen)]
    records.compile_inits([made[1][0], made[1][1]])
    return made


def _shape(frozen: bool):
    log: list[str] = []

    @records.dataclass(frozen=frozen)
    class Base:
        a: int
        b: str = "b"
        c: list[int] = records.field(default_factory=lambda: log.append("c") or [1])
        d: int = records.field(default=4, kw_only=True)

    @records.dataclass(frozen=frozen)
    class Child(Base):
        e: tuple[int, ...] = ()
        f: dict[str, int] = records.field(default_factory=dict, kw_only=True)
        g: int = records.field(kw_only=True)  # required, after a factory

        def __post_init__(self) -> None:
            log.append(f"post {self.a}")

    return Base, Child, log


_ARGUMENTS = st.tuples(
    st.lists(st.sampled_from([0, 1, "x", records.MISSING, [2]]), max_size=5).map(tuple),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]),
                    st.sampled_from([0, 1, "x", records.MISSING, [2]]), max_size=4))


@given(st.booleans(), st.lists(st.tuples(st.booleans(), _ARGUMENTS), max_size=24))
def test_the_shared_init_does_what_the_compiled_one_does(frozen: bool, calls) -> None:
    """The first instances of a class are made by a shared __init__: every call gives what the
    compiled __init__ gives (values, factory and __post_init__ calls, the TypeError of a wrong
    call), and after records._SHARED_INIT_USES instances the class has its compiled one."""
    (shared_base, shared_child, shared_log), (compiled_base, compiled_child, compiled_log) = _shapes(frozen)
    for child, (args, kwargs) in calls:
        outcomes = []
        for cls in ((shared_child, compiled_child) if child else (shared_base, compiled_base)):
            try:
                instance = cls(*args, **kwargs)
            except TypeError as exc:
                outcomes.append(("error", str(exc)))
            else:
                outcomes.append(("made", records.asdict(instance)))
        assert outcomes[0] == outcomes[1], (args, kwargs)
        assert shared_log == compiled_log
    for cls, arguments in ((shared_base, {}), (shared_child, {"g": 1})):
        while cls.__dict__["__init__"] is records._first_init:
            cls(1, **arguments)
        assert cls.__dict__.get("__record_init_uses__", 0) <= records._SHARED_INIT_USES
