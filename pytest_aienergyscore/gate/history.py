"""Saved runs (``--energy-autosave``): every session kept as the next numbered run of its machine fingerprint, read
back as the baseline ``--energy-compare`` gates against, and as the history the drift rule (:mod:`.drift`) needs.

Why it is shaped this way:
- pytest-benchmark users know ``.benchmarks/<machine>/0001_<commit>_<date>.json``; we keep the same layout under
  ``.energy``, so that "compare with the last run of this machine" is a habit, not a file passed around.
- Energy from another machine is not evidence of a regression, so runs are filed by a machine id derived from the
  fingerprint facts the gate already compares (:func:`.baselines.fingerprint`): a readable prefix and a hash.
- A run file holds every benchmark's full record, as ``records.jsonl`` has it, so nothing measured is lost and the
  figures are derived by the same code as a live session's (:func:`.baselines.benchmark_entry`).
- Two sessions saving at once must not take the same number: a number is claimed by creating ``.numbers/NNNN``
  with O_EXCL (portable, unlike a file lock), and the run file is then written whole under its name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.gate.baselines import Baseline, benchmark_entry, fingerprint
from pytest_aienergyscore.gate.drift import WINDOW
from pytest_aienergyscore.records.record import Record

if TYPE_CHECKING:
    from pytest_aienergyscore.config.settings import Settings

RUN_SCHEMA = "pytest-aienergyscore/run"
RUN_VERSION = 1
DEFAULT_FOLDER = ".energy"
CLAIMS = ".numbers"
RUN_NAME = re.compile(r"^(\d{4,})_.+\.json$")
MAX_CLAIM_TRIES = 100
MAX_SCANNED = 50  # saved runs read for the drift history, newest first: enough for WINDOW runs of each benchmark
# The settings that shape a session's figures: kept in a saved run's header, so a change between runs can be seen.
SHAPING_SETTINGS = (
    "backend", "meter", "gpus", "cpu_watts", "cpu_scope", "dataset", "samples", "repeat", "warmup", "concurrency",
    "model_class",
)  # fmt: skip


class HistoryError(ValueError):
    """A saved run that cannot be used, or one that is not there, in one line naming it."""


# -- the machine a run was measured on -------------------------------------------------------------------------------


def machine_facts(records: Iterable[Record]) -> dict[str, Any]:
    """What identifies the machine (and how it was metered): the operating system and each distinct fingerprint."""
    records = list(records)
    prints = {json.dumps(fingerprint(r), sort_keys=True, default=str) for r in records}
    system = str((records[0].environment.get("os") or "unknown") if records else "unknown").split("-")[0]
    return {"system": system, "fingerprints": [json.loads(p) for p in sorted(prints)]}


def machine_id(facts: Mapping[str, Any]) -> str:
    """A short, stable folder name: readable (``NVIDIA_H100_80GB_HBM3-nvml``, ``Linux-cpu-estimate``) and then an
    8-hex hash of every fact, so two machines that read alike still get folders of their own."""
    prints = facts.get("fingerprints") or [{}]
    first = prints[0]
    meter = str(first.get("meter") or "none").split(" ")[0]
    gpus = first.get("gpu_models") or []
    device = _safe(str(gpus[0])) if gpus else f"{_safe(str(facts.get('system') or 'unknown'))}-cpu"
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{device}-{_safe(meter)}-{digest}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_.")[:48] or "unknown"


def git_commit(folder: Path) -> str:
    """``git rev-parse --short HEAD`` of ``folder``, ``-dirty`` when tracked files changed (the results and .energy
    folders a session writes are untracked and do not count), ``nocommit`` outside a git checkout."""
    try:
        head = _git(folder, "rev-parse", "--short", "HEAD")
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "nocommit"
    return f"{head}-dirty" if changed else head


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


# -- saving -------------------------------------------------------------------------------------------------------


def run_document(
    records: Sequence[Record], number: int, commit: str, date: str, settings: Settings | None, session_id: str
) -> dict[str, Any]:
    """A saved run: a small header, then every record whole."""
    facts = machine_facts(records)
    shaping = {name: getattr(settings, name, None) for name in SHAPING_SETTINGS} if settings is not None else {}
    return {
        "schema": RUN_SCHEMA,
        "version": RUN_VERSION,
        "number": number,
        "commit": commit,
        "date": date,
        "session": session_id,
        "machine": {"id": machine_id(facts), **facts},
        "settings": shaping,
        "records": [r.to_dict() for r in records],
    }


def claim_number(folder: Path) -> int:
    """The next run number of ``folder``, claimed for this process alone: the highest number seen (claimed or
    saved) + 1, created with O_EXCL so that a session saving at the same time takes the one after."""
    claims = folder / CLAIMS
    claims.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_CLAIM_TRIES):
        taken = [int(p.name) for p in claims.iterdir() if p.name.isdigit()] + [n for n, _ in list_runs(folder)]
        number = max(taken, default=0) + 1
        try:
            os.close(os.open(claims / f"{number:04d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue  # another session claimed it between our look and our create: look again
        return number
    raise OSError(f"cannot claim a run number in {folder}: {MAX_CLAIM_TRIES} tries all raced with other sessions")


def save_run(
    records: Sequence[Record],
    history: Path,
    rootdir: Path,
    session_id: str,
    settings: Settings | None = None,
    now: float | None = None,
) -> Path:
    """Save the session as the next run of its machine under ``history``; returns the file written (whole, synced:
    a saved run is the only copy of its figures once the results folder is cleaned)."""
    from pytest_aienergyscore.records.atomic import write_json

    folder = history / machine_id(machine_facts(records))
    number = claim_number(folder)
    commit = git_commit(rootdir)
    date = time.strftime("%Y%m%d_%H%M%S", time.gmtime(now))
    document = run_document(records, number, commit, date, settings, session_id)
    return write_json(folder / f"{number:04d}_{_safe(commit)}_{date}.json", document, durable=True)


# -- reading ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedRun:
    """One saved run read back: where it is, its number, its header, and its records."""

    path: Path
    number: int
    header: Mapping[str, Any]
    records: list[Record] = field(default_factory=list)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Each benchmark's figures as the gate compares them (the ones that passed: partial work is no baseline)."""
        return {r.nodeid: benchmark_entry(r) for r in self.records if r.outcome == "passed"}

    def label(self) -> str:
        return f"{self.number:04d}"


def list_runs(folder: Path) -> list[tuple[int, Path]]:
    """The saved runs of one machine folder, by number; an absent folder has none."""
    try:
        names = [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return []
    found = [(int(m.group(1)), p) for p in names if (m := RUN_NAME.match(p.name))]
    return sorted(found)


def load_run(path: Path) -> SavedRun:
    """Read and check a saved run; HistoryError (one line) for anything missing, unreadable or foreign."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HistoryError(f"{path}: no such saved run") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise HistoryError(f"{path}: not a readable saved run ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(data, dict) or data.get("schema") != RUN_SCHEMA:
        raise HistoryError(f'{path}: not a saved run; expected "schema": "{RUN_SCHEMA}", as --energy-autosave writes')
    version, number = data.get("version"), data.get("number")
    if not isinstance(version, int) or not 1 <= version <= RUN_VERSION:
        raise HistoryError(f"{path}: saved run version {version!r}; this pytest-aienergyscore reads 1 to {RUN_VERSION}")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise HistoryError(f"{path}: corrupted, 'number' must be a whole number >= 1, not {number!r}")
    try:
        records = [Record.from_dict(r) for r in data["records"]]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise HistoryError(f"{path}: corrupted, its records cannot be read ({err})") from None
    header = {k: v for k, v in data.items() if k != "records"}
    return SavedRun(path, number, header, records)


def as_baseline(run: SavedRun) -> Baseline:
    """The saved run as the gate's baseline, exactly as a --energy-baseline file would be."""
    entries = run.entries()
    first = next(iter(entries.values()), None)
    return Baseline(run.path, entries, first["fingerprint"] if first else {}, str(run.header.get("date") or ""))


def select_run(which: str, folder: Path, cwd: Path) -> Path | None:
    """The saved run --energy-compare names: ``latest`` (None when the machine has no saved run), a number of this
    machine's folder, or a file (relative to ``cwd``). HistoryError for a number or file that is not there."""
    if which.endswith(".json"):
        path = Path(which) if Path(which).is_absolute() else cwd / which
        if not path.is_file():
            raise HistoryError(f"{path}: no such saved run (--energy-compare takes latest, a number or a run's file)")
        return path
    runs = list_runs(folder)
    if which == "latest":
        return runs[-1][1] if runs else None
    wanted = int(which)
    for number, path in runs:
        if number == wanted:
            return path
    have = ", ".join(f"{n:04d}" for n, _ in runs[-5:]) or "none"
    raise HistoryError(f"no saved run {wanted:04d} in {folder} (the latest there: {have})")


def history_entries(run: SavedRun, tests: Iterable[str]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Per test id, its entries in the runs of ``run``'s folder up to ``run`` itself, oldest first, and a line per
    saved run that could not be read (it costs only itself). Reads newest first and stops once every test has
    WINDOW entries, or after MAX_SCANNED runs."""
    wanted = set(tests)
    found: dict[str, list[dict[str, Any]]] = {test: [] for test in wanted}
    skipped: list[str] = []
    earlier = [p for n, p in reversed(list_runs(run.path.parent)) if n <= run.number and p != run.path]
    for path in [run.path, *earlier][:MAX_SCANNED]:
        try:
            past = run if path == run.path else load_run(path)
        except HistoryError as err:
            skipped.append(f"saved run skipped: {err}")
            continue
        for test, entry in past.entries().items():
            if test in wanted and len(found[test]) < WINDOW:
                found[test].insert(0, entry)
        if all(len(v) >= WINDOW for v in found.values()):
            break
    return {test: entries for test, entries in found.items() if entries}, skipped
