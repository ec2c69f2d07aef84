"""Value parsers for the options table: each takes the raw text of one source and returns the typed value.

A parser raises ValueError whose message is what is allowed; :func:`.settings.resolve_value` adds the option, the
value and its source, so every bad value reads the same one line whichever option it was. A row of the table names
its parser by its name here (``"positive_int"``), so this module loads only when a session resolves its settings, not
on every pytest start-up; still, a parser that needs more (the registries, the model classes, the DCGM grammar)
imports it when a value is parsed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def choice(choices: Sequence[str] | Callable[[], Sequence[str]]) -> Callable[[str], str]:
    """A parser that accepts one of ``choices`` (or of what the callable returns when a value is parsed)."""

    def parse(raw: str) -> str:
        allowed = choices() if callable(choices) else choices
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(", ".join(allowed))
        return value

    return parse


def backend(raw: str) -> str:
    """--backend: a backend registered now (ours, or another package's entry point), read when a value is parsed."""
    from pytest_aienergyscore.config.registry import registered_backends

    return choice(registered_backends)(raw)


def meter(raw: str) -> str:
    """--energy-meter: a registered meter name (or auto), read when a value is parsed."""
    from pytest_aienergyscore.config.registry import registered_meters

    return choice(registered_meters)(raw)


def cpu_scope(raw: str) -> str:
    """--energy-cpu-scope: the row's own choices, which --help shows too."""
    from pytest_aienergyscore.config.options import CPU_SCOPES

    return choice(CPU_SCOPES)(raw)


def positive_float(raw: str) -> float:
    """Watts, seconds, percentages: zero, negatives, NaN and infinity are all meaningless there."""
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError("a positive number")
    return value


def positive_int(raw: str) -> int:
    """Counts that must run at least once (samples, repeats, requests in flight)."""
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("a whole number >= 1")
    return value


def non_negative_int(raw: str) -> int:
    """Counts where none is a valid choice (warm-up runs)."""
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("a whole number >= 0")
    return value


def gpu_list(raw: str) -> tuple[int, ...]:
    """CUDA device ordinals as the process sees them (after CUDA_VISIBLE_DEVICES), e.g. ``0`` or ``0,1``."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError("comma-separated CUDA device ordinals such as 0 or 0,1")
    ordinals = tuple(int(p) for p in parts)
    if len(set(ordinals)) != len(ordinals):
        raise ValueError("comma-separated CUDA device ordinals without repeats")
    return ordinals


def boolean(raw: str) -> bool:
    """The spellings people put in environment variables and ini files; anything else is refused, not taken as off."""
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError("one of " + ", ".join(TRUE[:2] + FALSE[:2]))


def text(raw: str) -> str:
    """Free text (paths, URLs, names) whose check belongs to whoever uses it."""
    return raw.strip()


def env_name(raw: str) -> str:
    """The name of an environment variable (never a value: a secret must not travel through options)."""
    value = raw.strip()
    if not value.isascii() or not value.replace("_", "a").isalnum() or value[0].isdigit():
        raise ValueError("an environment variable name such as VLLM_API_KEY (letters, digits, _)")
    return value


def _flag_or_path(raw: str, allowed: str, *, folder: bool) -> bool | str | None:
    """An option that is a flag or takes a path (``--energy-save-baseline``, ``--energy-autosave``): True for its
    default place, None for "off", else the path.

    A bare flag swallows the next argument, so a value that looks like a test path (or, for a file, a folder) is
    refused rather than silently becoming the file or folder while the tests it named are not run.
    """
    value = raw.strip()
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return None
    if value.endswith(".py") or "::" in value or (not folder and os.path.isdir(value)):
        raise ValueError(allowed)
    return value


def baseline_target(raw: str) -> bool | str | None:
    """Where --energy-save-baseline writes: True for the default path, None for "do not save", else a file path."""
    allowed = "a file path for the baseline (write --energy-save-baseline=PATH, or put the bare flag last)"
    return _flag_or_path(raw, allowed, folder=False)


def history_folder(raw: str) -> bool | str | None:
    """Where --energy-autosave keeps every session: True for the default folder (``.energy`` under the rootdir), None
    for "do not keep", else a folder."""
    allowed = "a folder for the saved runs (write --energy-autosave=DIR, or put the bare flag last)"
    return _flag_or_path(raw, allowed, folder=True)


def saved_run(raw: str) -> str:
    """Which saved run --energy-compare takes: ``latest``, a run number (``3`` or ``0003``) or a saved run's file."""
    value = raw.strip()
    if value.lower() in ("", "latest", "last") or value.lower() in TRUE:
        return "latest"
    if value.isdigit() or value.endswith(".json"):
        return value
    raise ValueError("latest, a saved run's number (as in .energy/<machine>/0003_...json) or a saved run's .json file")


def url_list(raw: str) -> tuple[str, ...]:
    """URLs separated by commas or whitespace, so that an ini value may also hold one per line."""
    urls = tuple(url for url in re.split(r"[,\s]+", raw) if url)
    if not urls:
        raise ValueError("one or more URLs, separated by commas (or one per line in the ini file)")
    return urls


def dcgm_gpus(raw: str) -> str:
    """Checked here so that a typo is a usage error at start-up, not a failed benchmark later; the grammar is the one
    the dcgm meter selects with (:mod:`.dcgm_selector`), imported only when a selector is given."""
    from pytest_aienergyscore.config.dcgm_selector import GRAMMAR, parse_selector

    selector = parse_selector(raw)
    if not selector.normalized:  # given but blank: a blank term, not "every GPU"
        raise ValueError(GRAMMAR)
    return selector.normalized


def model_class(raw: str) -> str:
    """A, B or C in either case: people write the leaderboard's classes both ways. The classes are the rules' own,
    imported when a class is given rather than on every start-up."""
    from pytest_aienergyscore.rules.model_class import MODEL_CLASSES

    value = raw.strip().upper()
    if value not in MODEL_CLASSES:
        raise ValueError(", ".join(MODEL_CLASSES))
    return value


def shard(raw: str) -> tuple[int | None, int]:
    """--energy-shard: ``INDEX/COUNT`` with 0 <= INDEX < COUNT, or ``auto/COUNT`` (index None: the scheduler's
    variable is read when the session starts, where its name can be given in the error)."""
    index_text, slash, count_text = raw.strip().partition("/")
    allowed = "INDEX/COUNT with 0 <= INDEX < COUNT (e.g. 2/8), or auto/COUNT"
    if not slash or not count_text.strip().isdigit() or int(count_text) < 1:
        raise ValueError(allowed)
    count = int(count_text)
    if index_text.strip().lower() == "auto":
        return None, count
    if not index_text.strip().isdigit() or int(index_text) >= count:
        raise ValueError(allowed)
    return int(index_text), count


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def run_id(raw: str) -> str:
    """--energy-run-id: a folder name every shard agrees on, so nothing that could climb out of the output folder."""
    value = raw.strip()
    if not _RUN_ID.fullmatch(value):
        raise ValueError("1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value
