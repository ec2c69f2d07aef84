"""AI Energy Score star ratings, recomputed from the published leaderboard data.

The AI Energy Score leaderboard gives every model 1-5 stars for GPU energy per task. The stars are not an absolute
scale: for each task (and, for text generation and reasoning, each model class) the range [min, max] of the published
``total_gpu_energy`` values is cut into five bins of equal width, and 5 stars go to the lowest-energy bin. To rate a
model we measure, we therefore need the published values themselves, which ship with this package under
``pytest_aienergyscore/data/leaderboard/`` (see ``SOURCES.md`` there for where each file comes from).

Boundary rule, checked against every published row (all 246 rows, both editions): the number of stars is
``5 - (number of inner edges strictly below the value)``, i.e. the bins are 5 = [low, e1], 4 = (e1, e2],
3 = (e2, e3], 2 = (e3, e4], 1 = (e4, high]. The task minimum always gets 5 stars and the maximum 1 (both sit exactly on
the outer edges). No published value lies exactly on an inner edge (the closest, a swinv2-tiny image classification
row, is 0.045 % of a bin width above one), so the data cannot tell which side an inner edge belongs to; we give an
edge value the higher star, the ``pandas.cut`` convention (right-closed bins, lowest value included). Values outside
[low, high] are clamped: below ``low`` is 5 stars, above ``high`` is 1 star.

Editions: a row's edition is the measurement round whose bins gave its stars. The Dec 2025 text generation file also
lists the Feb 2025 models (``test date`` "Feb 25") with their Feb 2025 stars, and the Dec 2025 bins span only the rows
measured in Dec 2025; with the old rows included, ``microsoft/phi-4`` (published 1 star) would get 4. So those rows
belong to edition "2025-02" here, and a Dec 2025 table holds only the Dec 2025 measurements.

Units: ``total_gpu_energy`` is kWh per 1,000 queries (numerically the same as Wh per query). This plugin reports Wh
per 1,000 queries, hence the factor of 1,000 in :func:`stars_for`.

Known flaws in the published files, cleaned here so they never reach a report:

* duplicate rows: ``microsoft/swinv2-large-patch4-window12-192-22k`` (image classification) and
  ``facebook/detr-resnet-50-dc5`` (object detection) are each listed twice with different energies; the first listed
  row is kept. The Dec 2025 ``text_generation.csv`` also re-lists all 40 Feb 2025 rows (``test date`` "Feb 25"),
  rounded to 6 decimals, with their Feb 2025 stars; the full-precision Feb 2025 file wins.
* a stray ``*`` in ``ibm-granite/*granite-4.0-h-tiny``: removed.
* reasoning effort written into reasoning model names (``openai/gpt-oss-120b high``): split off into
  :attr:`PublishedResult.reasoning_effort`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from pytest_aienergyscore.rules.model_class import MODEL_CLASSES
from pytest_aienergyscore.rules.tasks import CLASSED_TASKS
from pytest_aienergyscore.rules.tasks import TASKS as TASK_TABLE

EDITIONS: tuple[str, ...] = ("2025-02", "2025-12")
"""Leaderboard editions we ship, oldest first (the loading order matters for de-duplication)."""

REASONING_EFFORTS: tuple[str, ...] = ("low", "medium", "high")
"""Effort levels that the Dec 2025 reasoning file appends to model names."""

_LEADERBOARD_TASKS: tuple[str, ...] = tuple(
    spec.leaderboard_task for spec in TASK_TABLE.values() if spec.leaderboard_task
)
"""The leaderboard's tasks, in the task table's order (the one list of task names, :mod:`.rules.tasks`)."""

_FEB_2025_TASKS: tuple[str, ...] = tuple(
    spec.leaderboard_task for spec in TASK_TABLE.values() if spec.leaderboard_task and not spec.reasoning
)
"""The Feb 2025 edition published every task but reasoning, whose rows began in Dec 2025."""


def _file_name(task: str) -> str:
    """The leaderboard names the speech recognition file ``asr.csv``; every other file is named after its task."""
    return "asr.csv" if task == "automatic_speech_recognition" else f"{task}.csv"


EDITION_FILES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "2025-02": MappingProxyType({task: f"2025-02/{_file_name(task)}" for task in _FEB_2025_TASKS}),
        "2025-12": MappingProxyType(
            {
                "text_generation": "2025-12/text_generation.csv",
                "reasoning": "2025-12/reasoning.csv",
            }
        ),
    }
)
"""Edition -> task -> CSV path relative to ``pytest_aienergyscore/data/leaderboard/``, for every file we ship."""

CURRENT_EDITION: Mapping[str, str] = MappingProxyType(
    {task: edition for edition in EDITIONS for task in EDITION_FILES[edition]}
)
"""Task -> newest edition that published it: Dec 2025 for text generation and reasoning, Feb 2025 for the rest."""

TASK_FILES: Mapping[str, str] = MappingProxyType(
    {task: EDITION_FILES[CURRENT_EDITION[task]][task] for task in _LEADERBOARD_TASKS}
)
"""Our task name -> CSV of the task's current edition, relative to ``pytest_aienergyscore/data/leaderboard/``."""

TASKS: tuple[str, ...] = tuple(TASK_FILES)
"""All task names accepted by this module."""

_TEST_DATE_EDITION: Mapping[str, str] = MappingProxyType({"Feb 25": "2025-02", "Dec 25": "2025-12"})
"""The Dec 2025 files say per row when it was measured; the stars of a row come from that round's bins."""

# Hugging Face model ids never contain whitespace, so anything after the first run of whitespace is an annotation.
_ANNOTATED_NAME = re.compile(r"^(?P<model>\S+)\s+(?P<note>.+)$")


@dataclass(frozen=True)
class PublishedResult:
    """One leaderboard row, cleaned.

    ``edition`` is the measurement round whose bins produced ``stars``. That is the file's edition, except for the
    Feb 2025 rows that the Dec 2025 text generation file re-lists: those keep their Feb 2025 stars, so their edition
    is "2025-02". ``kwh_per_1k`` is the leaderboard's ``total_gpu_energy``: kWh per 1,000 queries.
    """

    task: str
    model: str
    provider: str
    model_class: str | None
    kwh_per_1k: float
    stars: int
    edition: str
    reasoning_effort: str | None
    raw_model: str

    @property
    def wh_per_1k(self) -> float:
        """Energy in this plugin's unit, Wh per 1,000 queries, so it can sit next to our own measurements."""
        return self.kwh_per_1k * 1000.0


@dataclass(frozen=True)
class StarBins:
    """Five equal-width bins over [low, high] (kWh per 1,000 queries); ``edges`` are the four inner edges."""

    low: float
    high: float
    edges: tuple[float, float, float, float]

    @classmethod
    def from_range(cls, low: float, high: float) -> StarBins:
        """Cut [low, high] into five equal-width bins, as the leaderboard does."""
        if not (math.isfinite(low) and math.isfinite(high)) or high < low:
            raise ValueError(f"invalid energy range [{low!r}, {high!r}]: need finite low <= high")
        width = (high - low) / 5.0
        edges = (low + width, low + 2.0 * width, low + 3.0 * width, low + 4.0 * width)
        return cls(low=low, high=high, edges=edges)

    def stars(self, kwh_per_1k: float) -> int:
        """Stars for an energy in kWh per 1,000 queries: 5 - (inner edges strictly below it).

        A value on an inner edge gets the higher star, the lowest value 5 and the highest 1, which reproduces every
        published star. Values outside [low, high] clamp to 5 (below) or 1 (above), because a model more efficient
        than every published one is still a 5-star model.
        """
        if math.isnan(kwh_per_1k) or kwh_per_1k < 0:
            raise ValueError(f"energy must be a non-negative number, got {kwh_per_1k!r}")
        return 5 - sum(1 for edge in self.edges if kwh_per_1k > edge)


def _check_task(task: str) -> str:
    """Reject unknown task names early, listing the accepted ones, since a typo would otherwise look like no data."""
    if task not in TASK_FILES:
        raise ValueError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    return task


def _check_edition(task: str, edition: str | None) -> str:
    """Resolve the default (current) edition and reject editions that did not publish this task."""
    if edition is None:
        return CURRENT_EDITION[task]
    available = _editions_with_rows(task)
    if edition not in available:
        raise ValueError(f"no {task} results in edition {edition!r}; available editions: {', '.join(available)}")
    return edition


def _check_class(task: str, model_class: str | None) -> str | None:
    """Text generation and reasoning need a class; other tasks have none, so passing one is a caller mistake."""
    if task in CLASSED_TASKS:
        normalized = model_class.strip().upper() if isinstance(model_class, str) else None
        if normalized not in MODEL_CLASSES:
            raise ValueError(
                f"{task} stars are binned per model class: pass model_class as one of "
                f"{', '.join(MODEL_CLASSES)} (got {model_class!r})"
            )
        return normalized
    if model_class is not None:
        raise ValueError(f"{task} stars are not binned per model class; pass model_class=None (got {model_class!r})")
    return None


def _read_data_file(relpath: str) -> str:
    """Read a packaged CSV through importlib.resources so it also works from a wheel or zip import."""
    node = resources.files("pytest_aienergyscore").joinpath("data").joinpath("leaderboard")
    for part in relpath.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def _clean_model(raw_model: str) -> tuple[str, str | None]:
    """Split a published model name into (model id, reasoning effort), dropping the stray ``*``.

    Names like ``openai/gpt-oss-120b high`` (or ``... (high)``) carry the reasoning effort; an unknown annotation is
    an error rather than a silently wrong model id.
    """
    name = raw_model.replace("*", "").strip()
    match = _ANNOTATED_NAME.match(name)
    if match is None:
        return name, None
    effort = match.group("note").strip().strip("()[]").strip().lower()
    if effort not in REASONING_EFFORTS:
        raise ValueError(f"unexpected annotation {match.group('note')!r} in published model name {raw_model!r}")
    return match.group("model"), effort


def _parse_file(task: str, file_edition: str, relpath: str) -> list[PublishedResult]:
    """Parse one leaderboard CSV (CRLF or LF, with or without a final newline) into rows, as filed."""
    rows: list[PublishedResult] = []
    for record in csv.DictReader(io.StringIO(_read_data_file(relpath), newline="")):
        raw_model = record["model"]
        model, effort = _clean_model(raw_model)
        test_date = record.get("test date")
        if test_date is None:
            edition = file_edition
        elif test_date.strip() in _TEST_DATE_EDITION:
            edition = _TEST_DATE_EDITION[test_date.strip()]
        else:
            raise ValueError(f"unknown test date {test_date!r} for {raw_model!r} in {relpath}")
        raw_class = record.get("class")
        model_class = raw_class.strip().upper() if task in CLASSED_TASKS and raw_class else None
        rows.append(
            PublishedResult(
                task=task,
                model=model,
                provider=model.split("/", 1)[0] if "/" in model else "",
                model_class=model_class,
                kwh_per_1k=float(record["total_gpu_energy"]),
                stars=int(record["energy_score"]),
                edition=edition,
                reasoning_effort=effort,
                raw_model=raw_model,
            )
        )
    return rows


@cache
def _raw_rows() -> tuple[PublishedResult, ...]:
    """Every row of every shipped file, oldest edition first, duplicates included."""
    rows: list[PublishedResult] = []
    for edition in EDITIONS:
        for task, relpath in EDITION_FILES[edition].items():
            rows.extend(_parse_file(task, edition, relpath))
    return tuple(rows)


@cache
def _deduplicated() -> Mapping[tuple[str, str], tuple[PublishedResult, ...]]:
    """(task, edition) -> rows with one row per (task, edition, model, class, effort), the first one filed.

    Files are read oldest edition first, so a Feb 2025 row re-listed (rounded) in a Dec 2025 file yields to the
    full-precision original.
    """
    seen: set[tuple[str, str, str, str | None, str | None]] = set()
    grouped: dict[tuple[str, str], list[PublishedResult]] = {}
    for row in _raw_rows():
        key = (row.task, row.edition, row.model, row.model_class, row.reasoning_effort)
        if key in seen:
            continue
        seen.add(key)
        grouped.setdefault((row.task, row.edition), []).append(row)
    return MappingProxyType({group: tuple(rows) for group, rows in grouped.items()})


def _editions_with_rows(task: str) -> tuple[str, ...]:
    """Editions holding at least one row for the task, oldest first."""
    return tuple(edition for edition in EDITIONS if (task, edition) in _deduplicated())


def raw_published_rows() -> tuple[PublishedResult, ...]:
    """All 246 published rows as filed (duplicates and re-listings included), with names cleaned.

    Meant for auditing: recomputing each row's star checks our bin rule against everything the leaderboard published.
    """
    return _raw_rows()


def published_results(task: str, edition: str | None = None) -> list[PublishedResult]:
    """De-duplicated published results for a task, from its current edition unless ``edition`` is given."""
    task = _check_task(task)
    return list(_deduplicated()[(task, _check_edition(task, edition))])


@cache
def _star_bins(task: str, model_class: str | None, edition: str) -> StarBins:
    """Bins from the de-duplicated rows of one (task, class, edition); cached because the data never changes."""
    values = [row.kwh_per_1k for row in _deduplicated()[(task, edition)] if row.model_class == model_class]
    if not values:
        raise ValueError(f"no published {task} results for class {model_class!r} in edition {edition!r}")
    return StarBins.from_range(min(values), max(values))


def star_bins(task: str, model_class: str | None = None, edition: str | None = None) -> StarBins:
    """The five star bins for a task (and model class, for text generation and reasoning) in one edition."""
    task = _check_task(task)
    resolved_class = _check_class(task, model_class)
    return _star_bins(task, resolved_class, _check_edition(task, edition))


def stars_for(
    task: str, wh_per_1k_queries: float, model_class: str | None = None, *, edition: str | None = None
) -> int:
    """Stars for our measurement, given in Wh per 1,000 queries, against the task's current published bins.

    The leaderboard publishes kWh per 1,000 queries, so the value is divided by 1,000 before binning.
    """
    bins = star_bins(task, model_class, edition)
    return bins.stars(wh_per_1k_queries / 1000.0)
