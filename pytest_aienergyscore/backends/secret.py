"""Credentials in memory, and the one function that takes them out of any text a server sent back.

Why both: a key is only ever sent as a header, but a server may repeat the request in its error body (some proxies
do, with the ``Authorization`` header), and that text goes into records, logs, archives, JUnit XML and the terminal.
:class:`Secret` keeps the key out of every ``repr`` (``pytest -l`` prints the locals of failing frames), and
:func:`redact` is applied to every server-derived text before it is kept anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
MIN_PARTIAL = 6  # a secret's beginning cut off by a length limit is masked too, from this many characters on
_CUT_MARKS = "'\"….) "  # what a cut may leave after the cut-off part: a closing quote, an ellipsis


class Secret:
    """A credential: its value comes out only through :meth:`reveal`; ``repr``, ``str`` and formatting say ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)


def _spellings(secret: str) -> set[str]:
    """The forms a server may echo a value in: as is, JSON-escaped, URL-encoded, or escaped as in a bytes repr."""
    forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), repr(secret.encode())[2:-1]}
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """``text`` with every known secret masked, in any spelling, and a secret's beginning left at the end of a text
    that a length limit cut (``"...Bearer sk-ab…"``) masked too."""
    for item in secrets:
        value = item.reveal() if isinstance(item, Secret) else item
        if not value:
            continue
        for form in sorted(_spellings(value), key=len, reverse=True):
            text = text.replace(form, MASK)
        text = _mask_cut_tail(text, value)
    return text


def _mask_cut_tail(text: str, secret: str) -> str:
    """Mask the end of ``text`` when it is the first characters of ``secret`` (and at most a quote or an ellipsis)."""
    if len(secret) < MIN_PARTIAL:
        return text
    start = text.rfind(secret[:MIN_PARTIAL])
    while start >= 0:
        core = text[start:].rstrip(_CUT_MARKS)
        if len(text) - start - len(core) <= 3 and secret.startswith(core):
            return text[:start] + MASK + text[start + len(core) :]
        start = text.rfind(secret[:MIN_PARTIAL], 0, start)
    return text
