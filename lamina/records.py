"""Data classes that cost nothing to define: the part of :mod:`dataclasses` lamina uses.

``@dataclass`` here takes the same arguments and gives the same classes as the standard
decorator for what lamina writes: ``frozen``, ``kw_only``, ``order``, ``eq``, ``repr``,
:func:`field` with ``default`` / ``default_factory`` / ``repr`` / ``compare`` / ``kw_only``,
``__post_init__``, inheritance, ``ClassVar`` annotations (not fields), and :func:`replace`,
:func:`fields`, :func:`asdict`.

Why not :mod:`dataclasses`: it writes each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` as source text and compiles them when the
class is defined -- about 1 ms a class on this machine, and importing it pulls in
:mod:`inspect` (another 4-5 ms).  A ``lamina`` command imports 40-90 such classes and uses a
handful, so a third of a cached ``lamina build`` went to defining classes.  Here a class's
first instances are made by a shared ``__init__`` that reads the field list, and the class's
own ``__init__`` (the same code the standard decorator writes: keyword defaults,
``default_factory`` calls, ``object.__setattr__`` for frozen classes) is compiled once the
class has made :data:`_SHARED_INIT_USES` instances -- compiling one costs a command about as
much as that many shared calls, and most classes make a few instances per command -- or at the
first call the shared ``__init__`` would not accept, so that a wrong call raises the compiled
function's own ``TypeError``.  The other methods are shared functions that read the field list.

Not supported (a ``TypeError`` at definition says so): ``slots``, ``init=False`` classes,
``InitVar``, ``unsafe_hash``, ``match_args=False``, ``weakref_slot``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dataclass", "field", "fields", "replace", "asdict", "compile_inits", "compile_loaded_inits", "Field", "FrozenInstanceError",
           "MISSING"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance (as :class:`dataclasses.FrozenInstanceError`)."""


class Field:
    """One field: its name, default or default factory, and whether it is shown, compared
    and keyword-only."""

    __slots__ = ("name", "default", "default_factory", "repr", "compare", "kw_only")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool, kw_only: Any) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r}, "
                f"repr={self.repr}, compare={self.compare}, kw_only={self.kw_only})")


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING, repr: bool = True,
          compare: bool = True, kw_only: Any = MISSING) -> Any:
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, compare, kw_only)


def _is_class_variable(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))
    return repr(annotation).startswith("typing.ClassVar")


def dataclass(cls: type | None = None, /, *, init: bool = True, repr: bool = True, eq: bool = True,
              order: bool = False, unsafe_hash: bool = False, frozen: bool = False, match_args: bool = True,
              kw_only: bool = False, slots: bool = False, weakref_slot: bool = False) -> Any:
    if not init or unsafe_hash or slots or weakref_slot or not match_args:
        raise TypeError("lamina.records.dataclass: init=False, unsafe_hash, slots, weakref_slot and "
                        "match_args=False are not supported")

    def wrap(cls: type) -> type:
        return _process(cls, repr=repr, eq=eq, order=order, frozen=frozen, kw_only=kw_only)

    return wrap if cls is None else wrap(cls)


def _process(cls: type, *, repr: bool, eq: bool, order: bool, frozen: bool, kw_only: bool) -> type:
    all_fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited = base.__dict__.get("__record_fields__")
        if inherited:
            for item in inherited:
                all_fields[item.name] = item
            if base.__dict__.get("__record_frozen__") != frozen:
                raise TypeError(f"{cls.__name__}: cannot inherit {'non-' if frozen else ''}frozen "
                                f"record {base.__name__} in a {'' if frozen else 'non-'}frozen one")
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_class_variable(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        if isinstance(value, Field):
            item = value
            if item.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, item.default)
        else:
            item = Field(value, MISSING, True, True, MISSING)
        item.name = name
        if item.kw_only is MISSING:
            item.kw_only = kw_only
        if isinstance(item.default, (list, dict, set)):
            raise ValueError(f"mutable default {type(item.default)} for field {name} is not allowed: "
                             f"use default_factory")
        all_fields.pop(name, None)
        all_fields[name] = item
    record_fields = tuple(all_fields.values())
    positional = [item for item in record_fields if not item.kw_only]
    seen_default = False
    for item in positional:
        if item.default is not MISSING or item.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {item.name!r} follows default argument")
    cls.__record_fields__ = record_fields  # type: ignore[attr-defined]
    cls.__record_frozen__ = frozen  # type: ignore[attr-defined]
    cls.__match_args__ = tuple(item.name for item in positional)  # type: ignore[attr-defined]
    own = cls.__dict__
    if "__init__" not in own:
        cls.__init__ = _first_init  # type: ignore[misc]
    if repr and "__repr__" not in own:
        cls.__repr__ = _repr  # type: ignore[assignment]
    if eq and "__eq__" not in own:
        cls.__eq__ = _eq  # type: ignore[assignment]
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in own:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
        cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign,assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign,assignment]
    if "__hash__" not in own or own["__hash__"] is None and eq:
        # the standard rules: eq and frozen hash the fields; eq alone makes instances unhashable
        if eq and frozen:
            cls.__hash__ = _hash  # type: ignore[assignment]
        elif eq:
            cls.__hash__ = None  # type: ignore[assignment]
    if order:
        for name, function in (("__lt__", _lt), ("__le__", _le), ("__gt__", _gt), ("__ge__", _ge)):
            if name in own:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
            setattr(cls, name, function)
    return cls


# -- __init__: shared for the first instances, then compiled -------------------------------------


#: instances a class makes with the shared __init__ before its own is compiled
_SHARED_INIT_USES = 16


def _first_init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    owner = next(klass for klass in cls.__mro__ if klass.__dict__.get("__init__") is _first_init)
    uses = owner.__dict__.get("__record_init_uses__", 0)
    if uses < _SHARED_INIT_USES and _shared_init(owner, self, args, kwargs):
        owner.__record_init_uses__ = uses + 1  # type: ignore[attr-defined]
        return
    owner.__init__ = _compile_init(owner)  # type: ignore[misc]
    owner.__init__(self, *args, **kwargs)  # type: ignore[misc]


def _shared_init(owner: type, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """What ``owner``'s compiled ``__init__`` does for a call it accepts (the same values set in
    the same order, then ``__post_init__``); False, with nothing done, for any other call."""
    record_fields: tuple[Field, ...] = owner.__record_fields__  # type: ignore[attr-defined]
    positional = [item.name for item in record_fields if not item.kw_only]
    if len(args) > len(positional):
        return False
    given = dict(zip(positional, args))
    for name in kwargs:
        if name in given or not any(item.name == name for item in record_fields):
            return False
    given.update(kwargs)
    values = []
    for item in record_fields:
        value = given.get(item.name, _NOT_GIVEN)
        if value is _NOT_GIVEN:
            if item.default_factory is not MISSING:
                value = MISSING  # the compiled parameter's default: the factory is called below
            elif item.default is not MISSING:
                value = item.default
            else:
                return False  # a required argument is missing
        values.append(value)
    assign = object.__setattr__ if owner.__record_frozen__ else setattr  # type: ignore[attr-defined]
    for item, value in zip(record_fields, values):
        if item.default_factory is not MISSING and value is MISSING:
            value = item.default_factory()
        assign(self, item.name, value)
    if hasattr(owner, "__post_init__"):
        self.__post_init__()
    return True


_NOT_GIVEN = object()


def compile_inits(classes: Any) -> None:
    """Compile now the ``__init__`` of those ``classes`` that are records and have not been
    instantiated yet (a process that forks many children, the monitor template, does it once
    for all of them instead of each child compiling its own)."""
    for cls in classes:
        if isinstance(cls, type) and cls.__dict__.get("__init__") is _first_init:
            cls.__init__ = _compile_init(cls)  # type: ignore[misc]


def compile_loaded_inits() -> None:
    """:func:`compile_inits` for the classes of every loaded ``lamina`` module: what a process
    that forks many children (the monitor template, the engine cache's fork server) does once
    before it forks, rather than each child with its first instances."""
    for name, module in list(sys.modules.items()):
        if name.startswith("lamina."):
            compile_inits(list(vars(module).values()))


def _compile_init(cls: type) -> Callable[..., None]:
    record_fields: tuple[Field, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    frozen = cls.__record_frozen__  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"MISSING": MISSING, "_object_setattr": object.__setattr__}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for index, item in enumerate(record_fields):
        parameter = item.name
        if item.default_factory is not MISSING:
            namespace[f"_factory_{index}"] = item.default_factory
            declaration = f"{parameter}=MISSING"
            value = f"_factory_{index}() if {parameter} is MISSING else {parameter}"
        elif item.default is not MISSING:
            namespace[f"_default_{index}"] = item.default
            declaration = f"{parameter}=_default_{index}"
            value = parameter
        else:
            declaration = parameter
            value = parameter
        (keyword if item.kw_only else positional).append(declaration)
        if frozen:
            body.append(f"    _object_setattr(self, {item.name!r}, {value})")
        else:
            body.append(f"    self.{item.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    parameters = ["self", *positional]
    if keyword:
        parameters += ["*", *keyword]
    source = f"def __init__({', '.join(parameters)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # noqa: S102 - the standard dataclasses do exactly this
    function = namespace["__init__"]
    function.__qualname__ = f"{cls.__qualname__}.__init__"
    return function  # type: ignore[no-any-return]


# -- the shared methods --------------------------------------------------------------------------


def _compared(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, item.name) for item in self.__record_fields__ if item.compare)


def _repr(self: Any) -> str:
    shown = ", ".join(f"{item.name}={getattr(self, item.name)!r}" for item in self.__record_fields__ if item.repr)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_compared(self))


def _lt(self: Any, other: object) -> bool:
    return _compared(self) < _compared(other) if other.__class__ is self.__class__ else NotImplemented


def _le(self: Any, other: object) -> bool:
    return _compared(self) <= _compared(other) if other.__class__ is self.__class__ else NotImplemented


def _gt(self: Any, other: object) -> bool:
    return _compared(self) > _compared(other) if other.__class__ is self.__class__ else NotImplemented


def _ge(self: Any, other: object) -> bool:
    return _compared(self) >= _compared(other) if other.__class__ is self.__class__ else NotImplemented


def _frozen(self: Any, name: str) -> bool:
    # as dataclasses: any attribute of an instance of the frozen class itself, and the fields
    # of instances of (non-record) subclasses
    cls = type(self)
    return "__record_fields__" in cls.__dict__ or any(item.name == name for item in cls.__record_fields__)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    if _frozen(self, name):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    if _frozen(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


# -- functions on instances ----------------------------------------------------------------------


def _check(instance: object) -> tuple[Field, ...]:
    record_fields = getattr(type(instance), "__record_fields__", None)
    if record_fields is None or isinstance(instance, type):
        raise TypeError("replace(), fields() and asdict() take a record instance")
    return record_fields  # type: ignore[no-any-return]


def fields(instance_or_class: Any) -> tuple[Field, ...]:
    if isinstance(instance_or_class, type) and hasattr(instance_or_class, "__record_fields__"):
        return instance_or_class.__record_fields__  # type: ignore[no-any-return]
    return _check(instance_or_class)


def replace(instance: Any, /, **changes: Any) -> Any:
    """A copy of ``instance`` with ``changes`` (``__post_init__`` runs again, as in dataclasses)."""
    for item in _check(instance):
        if item.name not in changes:
            changes[item.name] = getattr(instance, item.name)
    return type(instance)(**changes)


def asdict(instance: Any) -> dict[str, Any]:
    """Fields as a dict, recursing into records, lists, tuples and dicts (as dataclasses.asdict)."""
    _check(instance)
    return _as_plain(instance)  # type: ignore[no-any-return]


def _as_plain(value: Any) -> Any:
    record_fields = getattr(type(value), "__record_fields__", None)
    if record_fields is not None and not isinstance(value, type):
        return {item.name: _as_plain(getattr(value, item.name)) for item in record_fields}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[_as_plain(item) for item in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_as_plain(item) for item in value)
    if isinstance(value, dict):
        return type(value)((_as_plain(key), _as_plain(item)) for key, item in value.items())
    return value
