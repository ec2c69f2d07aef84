"""One row of the options table: how a setting is spelled in each source, how it is parsed, and its help text.

Kept apart from the table (:mod:`.options`) so that the table holds rows only. Both load on every pytest start-up,
so this module imports nothing but the standard library.
"""

from __future__ import annotations

from typing import Any


def _as_written(default: Any) -> str:
    """A default as a user would write it on the command line (``0,1``, ``120``, ``results``): help that shows a
    Python repr (``(0,)``, ``120.0``, ``PosixPath('results')``) is a value nobody can paste back."""
    if isinstance(default, (tuple, list)):
        return ",".join(_as_written(item) for item in default)
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


class OptionSpec:
    """One setting: how it is spelled in each source, how it is parsed, and its help text (shared by all sources).

    A plain class with slots and a written-out ``__init__``: this module loads on every pytest start-up, where a
    dataclass or NamedTuple would generate code when defined (measured with callgrind: a NamedTuple of Settings' 31
    fields costs about 4 M instructions, a third of the plugin's start-up bar).
    """

    __slots__ = (
        "attr",
        "choices",
        "const",
        "default",
        "dest",
        "env",
        "flag",
        "help",
        "is_flag",
        "metavar",
        "multiple",
        "parse",
        "twin",
    )

    def __init__(
        self,
        dest: str,
        attr: str,
        flag: str,
        help: str,
        parse: str,  # the name of a function of config/parsers.py that turns the raw text into the value
        default: Any = None,
        env: str | None = None,
        metavar: str | None = None,
        choices: tuple[str, ...] | None = None,
        is_flag: bool = False,
        multiple: bool = False,  # the flag may be repeated; its values are joined with commas before parsing
        const: str | None = None,  # an optional value: the flag alone stands for this value (argparse nargs="?")
        twin: str | None = None,  # a namespaced spelling, always ours; ``flag`` then yields to a conftest's own
    ) -> None:
        self.dest, self.attr, self.flag, self.help, self.parse = dest, attr, flag, help, parse
        self.default, self.env, self.metavar, self.choices = default, env, metavar, choices
        self.is_flag, self.multiple, self.const, self.twin = is_flag, multiple, const, twin

    def __repr__(self) -> str:
        return f"OptionSpec({self.flag})"

    @property
    def ini(self) -> str:
        return self.dest

    def help_text(self) -> str:
        extra = []
        if self.env:
            extra.append(f"env {self.env}")
        extra.append(f"ini {self.ini}")
        if self.default not in (None, False, ()):
            extra.append(f"default {_as_written(self.default)}")
        return f"{self.help} ({'; '.join(extra)})"

    def twin_help(self) -> str:
        """Help for the namespaced twin: says that the short spelling is ours only where nobody else claims it."""
        return f"{self.help_text()} Also {self.flag}, unless a conftest or another plugin defines its own {self.flag}."
