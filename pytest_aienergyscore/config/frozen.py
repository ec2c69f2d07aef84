"""A frozen record type that costs nothing to define, for the classes every pytest start-up creates.

The option table and Settings load on every pytest run once the plugin is installed, also in projects that never
meter anything. ``typing.NamedTuple`` and ``dataclasses`` both generate code when a class is defined (measured with
callgrind: about 4 M instructions for Settings' 31 fields, a third of the plugin's whole start-up bar); this base
class only reads the class's annotations. Fields are the annotated names in order, defaults are class attributes.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, TypeVar

_T = TypeVar("_T", bound="Frozen")


class Frozen:
    """Immutable, compared and hashed by value, built positionally or by keyword like a NamedTuple."""

    __field_names__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = inspect.get_annotations(cls)  # this class's own, as strings: nothing is evaluated
        cls.__field_names__ = tuple(name for name in own if not name.startswith("_"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls, names = type(self), self.__field_names__
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__} takes {len(names)} fields, got {len(args)}")
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names or name in values:
                problem = "unknown" if name not in names else "repeated"
                raise TypeError(f"{cls.__name__}: {problem} field {name!r}; fields: {', '.join(names)}")
            values[name] = value
        for name in names:
            if name not in values:
                if not hasattr(cls, name):
                    raise TypeError(f"{cls.__name__}: field {name!r} is required")
                values[name] = getattr(cls, name)
        object.__setattr__(self, "__dict__", values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: make a changed copy with _replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _replace(self: _T, **changes: Any) -> _T:
        """A copy with ``changes`` (the NamedTuple method of the same name)."""
        return type(self)(**{**self.__dict__, **changes})

    def _asdict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        return f"{type(self).__name__}({fields})"
