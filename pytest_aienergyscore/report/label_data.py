"""What an energy label shows, read from a run's own files (a run folder, or the submission zip made from one).

Kept apart from the drawing (:mod:`.label`) because it needs no Pillow and reads files that may come from someone
else: ``aienergyscore label`` accepts any zip, so the JSON is read capped and the archive passes :mod:`.safe_zip`'s
checks first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aienergyscore.report.safe_zip import checked_members, open_archive, read_small
from pytest_aienergyscore.rules.tasks import UnknownTask, get_task


@dataclass(frozen=True)
class LabelData:
    """What a label shows, taken from a run's files."""

    model: str
    provider: str
    task: str
    model_class: str | None
    date: str
    hardware: str
    measured: str
    wh_per_1k: float | None
    stars: int | None
    indicative: bool
    stars_note: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)
    edition: str | None = None
    estimate: bool = False

    @property
    def official(self) -> bool:
        """Whether the label may look like an official AI Energy Score label: a comparable, measured figure. Anything
        else is drawn so that no crop of it passes for one (hollow stars, the words across them)."""
        return not self.indicative and not self.estimate


def _model_and_provider(model: str | None) -> tuple[str, str]:
    """Hub ids read as provider/name; a local folder shows its name and says it is local."""
    if not model:
        return "unknown model", "unknown"
    if model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1:
        return Path(model).name or model, "local model"
    provider, _, name = model.rpartition("/")
    return name, provider or "unknown"


def _task_title(task: str | None) -> str:
    try:
        return get_task(task).title if task else "unknown task"
    except UnknownTask:
        return str(task)


def _hardware(summary: dict[str, Any]) -> str:
    hardware = summary.get("hardware") or {}
    if summary.get("device") == "gpu":
        names = [str(g.get("name") or "unknown GPU") for g in hardware.get("gpus") or []]
        if not names:
            return "unknown GPU"
        counts = {name: names.count(name) for name in dict.fromkeys(names)}
        return ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items())
    return f"CPU: {hardware.get('cpu') or 'unknown'}"


def _measured(summary: dict[str, Any]) -> str:
    meter = str(summary.get("meter") or "unknown")
    how = {
        "nvml": "NVML energy counter",
        "nvml-power": "NVML power sampling",
        "rapl": "RAPL counters",
        "estimate": "CPU-time estimate",
    }.get(meter, meter)
    queries = summary.get("queries")
    return f"{how}, {queries:,} queries" if isinstance(queries, int) else how


def _date(summary: dict[str, Any], report: dict[str, Any] | None) -> str:
    if summary.get("scored_at"):
        return str(summary["scored_at"])
    finished = (report or {}).get("finished_at")
    return time.strftime("%Y-%m-%d", time.localtime(finished if finished else time.time()))


def label_data(summary: dict[str, Any], report: dict[str, Any] | None = None) -> LabelData:
    """The label's content from GPU_ENERGY_SUMMARY.json (and benchmark_report.json, for older summaries)."""
    name, provider = _model_and_provider(summary.get("model"))
    stars = summary.get("stars")
    bins = summary.get("star_bins") or {}
    return LabelData(
        model=name,
        provider=provider,
        task=_task_title(summary.get("task")),
        model_class=summary.get("model_class"),
        date=_date(summary, report),
        hardware=_hardware(summary),
        measured=_measured(summary),
        wh_per_1k=summary.get("wh_per_1000_queries"),
        stars=int(stars) if isinstance(stars, int) else None,
        indicative=not summary.get("comparable", False),
        stars_note=summary.get("stars_note"),
        reasons=tuple(summary.get("not_comparable_reasons") or ()),
        edition=bins.get("edition"),
        estimate=_is_estimate(summary),
    )


def _is_estimate(summary: dict[str, Any]) -> bool:
    """An estimate by either key: a zip from someone else may say comparable yet carry an estimated figure."""
    return summary.get("energy_kind") == "estimate" or "estimate" in str(summary.get("meter") or "").split(",")


RUN_JSON_LIMIT = 64 << 20  # a summary or report larger than this is not one this plugin wrote


def read_run(source: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(summary, report) of a run folder or of a submission zip made from one; ValueError (one line) for anything
    else. A zip may come from someone else: it passes :mod:`.safe_zip`'s checks and its JSON is read capped."""
    if source.is_dir():
        report_path = source / "benchmark_report.json"
        summary = _run_json("GPU_ENERGY_SUMMARY.json", _read_capped_file(source / "GPU_ENERGY_SUMMARY.json"))
        report = _run_json(report_path.name, _read_capped_file(report_path)) if report_path.is_file() else None
        return summary, report
    with open_archive(source) as zf:
        members = {info.filename: info for info in checked_members(zf)}
        found = [n for n in members if n.rsplit("/", 1)[-1] == "GPU_ENERGY_SUMMARY.json"]
        if len(found) != 1:
            raise ValueError(f"{source}: expected one GPU_ENERGY_SUMMARY.json in the archive, found {len(found)}")
        summary = _run_json(found[0], read_small(zf, members[found[0]], RUN_JSON_LIMIT))
        report_name = found[0].rsplit("/", 1)[0] + "/benchmark_report.json" if "/" in found[0] else ""
        info = members.get(report_name)
        report = _run_json(report_name, read_small(zf, info, RUN_JSON_LIMIT)) if info is not None else None
    return summary, report


def _read_capped_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > RUN_JSON_LIMIT:
        raise ValueError(f"{path.name} holds {size} bytes, more than the {RUN_JSON_LIMIT} expected")
    return path.read_bytes()


def _run_json(name: str, data: bytes) -> dict[str, Any]:
    """A JSON object, or ValueError naming the file: not JSON, nested beyond what a parser follows, or no object."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply to be a run's file") from None
    except ValueError as err:
        raise ValueError(f"{name} is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} holds a {type(value).__name__}, not the JSON object a run writes")
    return value
