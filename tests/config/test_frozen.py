"""Frozen: the start-up-cheap record type of the option table and Settings behaves as the NamedTuple it replaced."""

from __future__ import annotations

import pytest

from pytest_aienergyscore.config.frozen import Frozen
from pytest_aienergyscore.config.settings import Settings


class Point(Frozen):
    x: int
    y: int = 0
    label: str | None = None


def test_fields_are_the_annotated_names_in_order_and_take_positions_keywords_and_defaults() -> None:
    assert Point.__field_names__ == ("x", "y", "label")
    assert Point(1, 2) == Point(x=1, y=2, label=None)
    assert Point(1).y == 0 and Point(1, label="a").label == "a"


def test_a_missing_unknown_or_repeated_field_is_one_line_naming_it() -> None:
    with pytest.raises(TypeError, match="field 'x' is required"):
        Point()
    with pytest.raises(TypeError, match="unknown field 'z'; fields: x, y, label"):
        Point(1, z=3)
    with pytest.raises(TypeError, match="repeated field 'x'"):
        Point(1, x=2)
    with pytest.raises(TypeError, match="takes 3 fields, got 4"):
        Point(1, 2, "a", 4)


def test_it_is_frozen_and_replace_makes_a_changed_copy() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError, match="frozen"):
        point.x = 5  # type: ignore[misc]
    moved = point._replace(y=7)
    assert (point.y, moved.y, moved.x) == (2, 7, 1)
    assert moved._asdict() == {"x": 1, "y": 7, "label": None}


def test_equal_values_are_equal_and_hash_alike_and_other_types_are_not_equal() -> None:
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(2, 1)

    class Other(Frozen):
        x: int
        y: int = 0
        label: str | None = None

    assert Point(1) != Other(1)
    assert repr(Point(1)) == "Point(x=1, y=0, label=None)"


def test_default_settings_equal_settings_built_with_every_default_spelled_out() -> None:
    spelled = Settings(**{name: getattr(Settings, name) for name in Settings.__field_names__})
    assert spelled == Settings() and spelled.backend == "optimum" and Settings().source_of("backend") == "default"
