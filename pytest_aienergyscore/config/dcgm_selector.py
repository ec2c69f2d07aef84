"""The grammar of ``--energy-dcgm-gpus``, written once: the option parser checks it at start-up and the dcgm meter
matches GPUs with what it returns, so the two can never accept different things.

A selector is either one Prometheus label selector ``{...}`` (handed to Prometheus as it is) or comma-separated terms,
any of which selects a GPU: a UUID (``GPU-...``/``MIG-...``), an index on every host (``0``), ``host:index``
(``node-1:0``) or ``label=value`` (``modelName=NVIDIA H100 80GB HBM3``). A term is classified by the one pattern
below, so a host named ``gpu-node-1`` in ``gpu-node-1:0`` is a host, not the start of a UUID.

Standard library only, and imported only when a selector is parsed: it is not part of every pytest start-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

GRAMMAR = (
    "comma-separated GPU UUIDs (GPU-...), indices (0), host:index (node-1:0) or label=value "
    '(modelName=NVIDIA H100 80GB HBM3), or one Prometheus label selector such as {Hostname="node-1"}'
)

# One term; alternatives are tried in order, and fullmatch falls through to the next one where a term does not fit.
_TERM = re.compile(
    r"(?P<uuid>(?i:GPU|MIG)-[0-9A-Za-z/-]+)"
    r"|(?P<index>\d+)"
    r"|(?P<host>[^\s,=]+):(?P<host_index>\d+)"
    r"|(?P<label>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^,]+)"
)


class SelectorError(ValueError):
    """A term outside the grammar. ``str()`` is the grammar (what is allowed); ``term`` is the offending text."""

    def __init__(self, term: str) -> None:
        super().__init__(GRAMMAR)
        self.term = term


class Term(NamedTuple):
    """One term: ``kind`` is uuid, index or label; ``host`` narrows an index to one host."""

    text: str
    kind: str
    value: str
    host: str | None = None
    label: str | None = None

    def matches(self, *, uuid: str, index: str, host: str, labels: Mapping[str, str]) -> bool:
        """Whether a GPU with these properties is selected (UUIDs compare in any case, as NVIDIA prints both)."""
        if self.kind == "uuid":
            return uuid.lower() == self.value.lower()
        if self.kind == "index":
            return index == self.value and self.host in (None, host)
        return self.label is not None and labels.get(self.label) == self.value


class Selector(NamedTuple):
    """Which GPUs to meter: a PromQL label selector for Prometheus, or terms matched against labels; empty: all."""

    text: str = ""
    promql: str = ""
    terms: tuple[Term, ...] = ()

    @property
    def normalized(self) -> str:
        """The selector as Settings keeps it: the PromQL text, or the terms without the spaces around them."""
        return self.promql or ",".join(term.text for term in self.terms)


def parse_selector(text: str | None) -> Selector:
    """The selector in ``text``; SelectorError for the first term outside the grammar. Blank selects every GPU."""
    text = (text or "").strip()
    if not text:
        return Selector()
    if text.startswith("{") and text.endswith("}"):
        return Selector(text, promql=text)
    return Selector(text, terms=tuple(parse_term(part.strip()) for part in text.split(",")))


def parse_term(text: str) -> Term:
    """One stripped term, classified by which alternative of the grammar it matches."""
    match = _TERM.fullmatch(text)
    if match is None:
        raise SelectorError(text)
    if match["uuid"]:
        return Term(text, "uuid", text)
    if match["index"]:
        return Term(text, "index", match["index"])
    if match["host"]:
        return Term(text, "index", match["host_index"], host=match["host"])
    return Term(text, "label", match["value"], label=match["label"])
