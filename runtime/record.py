"""Small record classes for the modules on the master's start-up path, without dataclasses.

Importing `dataclasses` imports `inspect`, and with it `ast`, `dis`, `tokenize` and
`enum`: about a fifth of what the master may spend between its launch and forking its
workers (bench/RESULTS.md, "Start-up"). The modules that run before the first fork
(`spec`, `config`, `sockets`, `spawn`, `early`, `relay`, `logfmt`) declare their records
with `@record` instead; the rest of the master uses dataclasses as usual.

`@record` reads the class's annotations in order, as `@dataclass` does, and adds
`__init__` (positional or keyword arguments, defaults, `field(default_factory=...)`),
`__repr__`, `__eq__`, `__match_args__`, and for frozen records (the default)
`__hash__` and an `__setattr__` that refuses. Type checkers see it as a dataclass
transform (PEP 681), so arguments, defaults and frozenness are checked as for a dataclass.
Inheritance and `ClassVar` fields are not supported (none of these records needs them).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from typing_extensions import dataclass_transform

    T = TypeVar("T")

    def field(*, default_factory: Callable[[], T]) -> T: ...

    @overload
    def record(cls: type[T], /) -> type[T]: ...

    @overload
    def record(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...

    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def record(cls: Any = None, /, *, frozen: bool = True) -> Any: ...

    def replace(obj: T, /, **changes: Any) -> T: ...

    def fields(cls: type[object]) -> tuple[str, ...]: ...

else:

    class _Factory:
        __slots__ = ("make",)

        def __init__(self, make):
            self.make = make

    def field(*, default_factory):
        """A default made fresh for each instance, as in dataclasses."""
        return _Factory(default_factory)

    def record(cls=None, /, *, frozen=True):
        """Make `cls` a record: `@record` (frozen) or `@record(frozen=False)`."""

        def wrap(cls):
            return _build(cls, frozen)

        return wrap if cls is None else wrap(cls)

    def fields(cls):
        """The field names of a record class, in declaration order."""
        return cls.__record_fields__

    def replace(obj, /, **changes):
        """A copy of record `obj` with some fields changed."""
        values = {name: getattr(obj, name) for name in obj.__record_fields__}
        values.update(changes)
        return type(obj)(**values)

    def _build(cls, frozen):
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (no inspect)
        names = tuple(annotations)
        if any(str(annotations[n]).startswith(("ClassVar", "typing.ClassVar")) for n in names):
            raise TypeError(f"{cls.__name__}: ClassVar fields are not supported")
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
        for i, name in enumerate(names[:-1]):
            if name in defaults and names[i + 1] not in defaults:
                raise TypeError(f"{cls.__name__}: {names[i + 1]} without a default follows one")
        for name, default in defaults.items():
            if isinstance(default, _Factory):
                delattr(cls, name)
        cls.__record_fields__ = names
        cls.__match_args__ = names
        cls.__init__ = _make_init(cls.__name__, names, defaults)
        cls.__repr__ = _repr
        cls.__eq__ = _eq
        if frozen:
            cls.__hash__ = _hash
            cls.__setattr__ = _refuse
            cls.__delattr__ = _refuse
        else:
            cls.__hash__ = None
        return cls

    def _make_init(class_name, names, defaults):
        count = len(names)
        known = frozenset(names)
        set_field = object.__setattr__

        def __init__(self, *args, **kwargs):
            if len(args) > count:
                raise TypeError(f"{class_name}() takes {count} arguments, got {len(args)}")
            values = dict(zip(names, args, strict=False))
            for key, value in kwargs.items():
                if key not in known:
                    raise TypeError(f"{class_name}() got an unexpected argument {key!r}")
                if key in values:
                    raise TypeError(f"{class_name}() got multiple values for {key!r}")
                values[key] = value
            for name in names:
                if name in values:
                    set_field(self, name, values[name])
                elif name in defaults:
                    default = defaults[name]
                    is_factory = isinstance(default, _Factory)
                    set_field(self, name, default.make() if is_factory else default)
                else:
                    raise TypeError(f"{class_name}() missing argument {name!r}")

        __init__.__qualname__ = f"{class_name}.__init__"
        return __init__

    def _values(obj):
        return tuple(getattr(obj, name) for name in obj.__record_fields__)

    def _repr(self):
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_fields__)
        return f"{type(self).__qualname__}({inner})"

    def _eq(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    def _hash(self):
        return hash(_values(self))

    def _refuse(self, name, *_value):
        raise AttributeError(f"cannot assign to field {name!r} of a frozen record")
