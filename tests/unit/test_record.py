"""runtime.record: the dataclass subset the start-up path uses, without importing dataclasses."""

from __future__ import annotations

import pytest

from runtime.record import field, fields, record, replace


@record
class Point:
    """A frozen record."""

    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@record(frozen=False)
class Box:
    """A mutable record."""

    size: int
    items: dict[str, int] = field(default_factory=dict)


def test_positional_keyword_and_defaults() -> None:
    """Arguments bind in declaration order or by name; missing ones take their default."""
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2, tags=[])
    assert Point(1).y == 0


def test_default_factory_is_fresh_per_instance() -> None:
    """`field(default_factory=...)` makes a new value for every instance."""
    a, b = Point(1), Point(2)
    a.tags.append("t")
    assert b.tags == []
    assert "tags" not in vars(Point)  # the factory itself is not left on the class


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Point(), "missing argument 'x'"),
        (lambda: Point(1, 2, [], 4), "takes 3 arguments, got 4"),
        (lambda: Point(1, z=2), "unexpected argument 'z'"),
        (lambda: Point(1, x=2), "multiple values for 'x'"),
    ],
    ids=["missing", "too-many", "unknown", "twice"],
)
def test_bad_arguments_raise_type_error(call, message: str) -> None:
    """Wrong calls fail as a normal function call would, naming the argument."""
    with pytest.raises(TypeError, match=message):
        call()


def test_repr_eq_and_hash() -> None:
    """repr shows every field; equal fields make equal, equally hashed records of one class."""
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"
    assert Point(1, 2, ()) == Point(1, 2, ())  # type: ignore[arg-type]
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))  # type: ignore[arg-type]
    assert Point(1) != Point(2)
    assert Point(1) != Box(1)


def test_frozen_refuses_assignment_and_deletion() -> None:
    """A frozen record cannot be changed after it is made."""
    p = Point(1)
    with pytest.raises(AttributeError, match="frozen"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del p.x  # type: ignore[misc]
    assert p.x == 1


def test_mutable_record_changes_and_is_unhashable() -> None:
    """`frozen=False` allows assignment; like a dataclass with eq, it is not hashable."""
    b = Box(1)
    b.size = 2
    assert b == Box(2)
    with pytest.raises(TypeError):
        hash(b)


def test_replace_and_fields() -> None:
    """`replace` copies with changes (keeping the class); `fields` lists names in order."""
    p = Point(1, 2, ["a"])
    q = replace(p, y=5)
    assert q == Point(1, 5, ["a"])
    assert p.y == 2
    assert fields(Point) == ("x", "y", "tags")
    assert Point.__match_args__ == ("x", "y", "tags")


def test_match_statement_uses_field_order() -> None:
    """Positional patterns match fields in declaration order."""
    match Point(3, 4):
        case Point(x, y):
            assert (x, y) == (3, 4)
        case _:
            pytest.fail("no match")


def test_field_without_default_after_one_is_refused() -> None:
    """The same ordering rule as dataclasses, checked when the class is made."""
    with pytest.raises(TypeError, match="b without a default follows one"):

        @record
        class Bad:
            a: int = 0
            b: int
