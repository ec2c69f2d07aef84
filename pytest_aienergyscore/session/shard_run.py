"""One shard of a fleet sweep: which share it is, where its results go, and its ``shard.json``.

Why it works this way:
- The scheduler says which share a process is (``JOB_COMPLETION_INDEX`` in a Kubernetes Indexed Job,
  ``SLURM_ARRAY_TASK_ID`` in a Slurm array), so one manifest serves every share; the count is ours to give, since
  neither variable carries it reliably.
- Every shard writes under ``<output>/<run id>/shard-<i>-of-<n>/``: a folder name, not a timestamp, so that
  ``aienergyscore merge <output>/<run id>`` finds each share once and a missing one is a visible gap.
- ``shard.json`` is written as the shard starts (``finished`` false) and completed as it ends, so a shard that
  died (pod evicted, node lost, time limit) is told apart from one that ran and measured nothing.
- A rerun of a share: refused when that share finished (its results must not be doubled or overwritten silently:
  remove the folder, or pick a new run id); allowed when it did not, since Kubernetes and Slurm retry a failed index
  under the same index, and that retry must run. The dead attempt's records are kept beside, under a name that
  readers of results ignore, so the merged sweep holds each benchmark once.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.records.atomic import write_json
from pytest_aienergyscore.records.store import RECORDS_FILE
from pytest_aienergyscore.report.merge_shards import SHARD_FILE  # named once, where merge reads it
from pytest_aienergyscore.session.shards import Benchmark, DurationsError, Selection, read_durations, select_share

INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")  # Kubernetes Indexed Job, Slurm job array
FINISHED_EXIT_STATUSES = (0, 1, 5)  # all passed, some failed, nothing collected: the share's work was done
XDIST_CONTROLLER = "dsession"  # the name pytest-xdist registers its controller's plugin under
FIRST_WORKER = "gw0"


class ShardError(ValueError):
    """A shard that cannot run as asked; one line naming the value and what is allowed."""


@dataclass(frozen=True)
class ShardPlan:
    """This process's share: its index and the share count, where the index came from, and the sweep's run id
    (None only for a single share with no run id, which is a plain session)."""

    index: int
    count: int
    index_source: str
    run_id: str | None

    def folder(self, output_dir: Path) -> Path | None:
        """``<output>/<run id>/shard-<i>-of-<n>``, or None for a plain session (one share, no run id)."""
        if self.run_id is None:
            return None
        return output_dir / self.run_id / f"shard-{self.index}-of-{self.count}"


def plan_shard(shard: tuple[int | None, int], run_id: str | None, environ: Mapping[str, str]) -> ShardPlan:
    """The share this process runs, from ``--energy-shard`` and ``--energy-run-id`` and the scheduler's variables."""
    index, count = shard
    source = "--energy-shard"
    if index is None:
        index, source = scheduler_index(count, environ)
    return ShardPlan(index, count, source, sweep_run_id(run_id, count, environ))


def scheduler_index(count: int, environ: Mapping[str, str]) -> tuple[int, str]:
    """(index, variable name) from the first scheduler variable that is set, taken as it is: an array of COUNT shares
    is ``--array=0-<COUNT-1>``, so that a task run again on its own (``sbatch --array=3``) still runs share 3."""
    allowed = f"0 to {count - 1} for --energy-shard auto/{count}"
    for name in INDEX_VARIABLES:
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        if not raw.isdigit():
            raise ShardError(f"{name}={raw!r} is not a share index; allowed: whole numbers {allowed}")
        if not int(raw) < count:
            raise ShardError(f"{name}={raw} is not a share of {count}; allowed: {allowed}")
        return int(raw), name
    raise ShardError(
        f"--energy-shard auto/{count}: neither {' nor '.join(INDEX_VARIABLES)} is set; run under a Kubernetes "
        f"Indexed Job or a Slurm array, or give the index: --energy-shard INDEX/{count}"
    )


def sweep_run_id(run_id: str | None, count: int, environ: Mapping[str, str]) -> str | None:
    """The name every shard of the sweep writes under: --energy-run-id, else Slurm's array job id (the same in
    every task of the array). A single share without either is a plain session (None): nothing to merge it with."""
    if run_id is not None:
        return run_id
    slurm = environ.get("SLURM_ARRAY_JOB_ID", "").strip()
    if slurm:
        from pytest_aienergyscore.config.parsers import run_id as parse_run_id

        try:
            return parse_run_id(slurm)
        except ValueError as err:
            raise ShardError(f"SLURM_ARRAY_JOB_ID={slurm!r} cannot name the sweep; allowed: {err}") from None
    if count == 1:
        return None
    raise ShardError(
        f"--energy-shard with {count} shares needs --energy-run-id ID (or AIENERGYSCORE_RUN_ID): the name every "
        "shard of the sweep writes under, the same in each"
    )


# -- shard.json -------------------------------------------------------------------------------------------------------


def read_shard_json(folder: Path) -> dict[str, Any] | None:
    """The folder's shard.json, or None when it has none or it cannot be read (a torn file is not a finished shard)."""
    try:
        data = json.loads((folder / SHARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_rerun(folder: Path) -> None:
    """Refuse to run a share whose folder says it finished: its results stand until someone removes them."""
    previous = read_shard_json(folder)
    if previous is not None and previous.get("finished") is True:
        raise ShardError(
            f"{folder} already holds a finished shard (finished_at {previous.get('finished_at')}, exit status "
            f"{previous.get('exitstatus')}); remove that folder to run this share again, or use a new --energy-run-id"
        )


def start_shard(
    folder: Path, plan: ShardPlan, assigned: list[str], expected_cost: float, partition: str = ""
) -> dict[str, Any]:
    """Create the shard's folder and write shard.json (not finished yet). A dead attempt's records are moved aside
    first, so this attempt's records.jsonl holds only what this attempt measured. ``partition`` is the fingerprint
    of the whole partition: every shard of a sweep must show the same one."""
    prepare_folder(folder)
    return write_started(folder, plan, sorted(assigned), expected_cost, partition)


def prepare_folder(folder: Path) -> None:
    """Refuse a share that finished, create its folder and move a dead attempt's records aside: done once, by the
    process that writes the records, before any test runs."""
    check_rerun(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _set_aside_dead_attempt(folder)


def write_started(
    folder: Path, plan: ShardPlan, assigned: list[str] | None, expected_cost: float | None, partition: str | None
) -> dict[str, Any]:
    """shard.json of a share that started and has not finished. ``assigned`` None: not known yet (an xdist
    controller, whose workers collect; the first of them fills it in)."""
    state: dict[str, Any] = {
        "run_id": plan.run_id,
        "index": plan.index,
        "count": plan.count,
        "host": socket.gethostname(),
        "assigned": assigned,
        "expected_cost": expected_cost,
        "partition": partition,
        "started_at": _now(),
        "finished": False,
        "finished_at": None,
        "exitstatus": None,
    }
    write_json(folder / SHARD_FILE, state, durable=True)
    return state


def finish_shard(folder: Path, state: dict[str, Any], exitstatus: int) -> dict[str, Any]:
    """Complete shard.json as the session ends. Finished means the share's work was done (tests may have failed:
    those are results); an interrupted or broken session stays unfinished, so its share may be run again."""
    done = {**state, "finished": int(exitstatus) in FINISHED_EXIT_STATUSES, "finished_at": _now()}
    done["exitstatus"] = int(exitstatus)
    write_json(folder / SHARD_FILE, done, durable=True)
    return done


def _set_aside_dead_attempt(folder: Path) -> None:
    """records.jsonl of an attempt that died -> records.attempt-<k>.jsonl (readers look for records.jsonl only)."""
    store = folder / RECORDS_FILE
    if not store.exists():
        return
    attempt = 1 + sum(1 for _ in folder.glob("records.attempt-*.jsonl"))
    os.replace(store, folder / f"records.attempt-{attempt}.jsonl")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- the pytest side: deselect the other shares, write shard.json -----------------------------------------------------


def benchmark_of(item: pytest.Item) -> Benchmark:
    """Model and task of a benchmark as collection shows them: the ``energy`` marker's keywords, else the test's
    parameters named ``model`` and ``task``, else (for the task) a task name the test function is named after, as
    in ``test_text_generation``. Only ``energy_star`` benchmarks run a protocol that says what a query costs."""
    from pytest_aienergyscore.rules.protocol import PROTOCOLS

    marker = item.get_closest_marker("energy")
    given = dict(marker.kwargs) if marker else {}
    params = getattr(getattr(item, "callspec", None), "params", {})
    model, task = (given.get(key, params.get(key)) for key in ("model", "task"))
    if task is None:
        name = str(getattr(item, "originalname", item.name))
        task = next((t for t in sorted(PROTOCOLS, key=len, reverse=True) if t in name), None)
    sizable = "energy_star" in getattr(item, "fixturenames", ())
    return Benchmark(item.nodeid, _text(model), _text(task), sizable)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class ShardRun:
    """Registered by the plugin only when --energy-shard is given: keeps this process's share of the collected tests
    (after -k, -m and other plugins chose theirs, so every shard partitions the same set) and, outside xdist
    workers, writes the shard's shard.json as it starts and as it ends."""

    def __init__(self, plan: ShardPlan, folder: Path | None, durations: Path | None, metered: Sequence[str]) -> None:
        self.plan = plan
        self.folder = folder
        self.durations = durations
        self.metered = tuple(metered)  # the fixtures that make a test a benchmark
        self.header = ""
        self.state: dict[str, Any] | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        selection = self.select(items)
        kept = [item for item in items if item.nodeid in selection.keep]
        dropped = [item for item in items if item.nodeid not in selection.keep]
        items[:] = kept
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        self.header = self.describe(selection)
        # a --collect-only run lists the share without running it, so it starts nothing
        if self.folder is None or config.option.collectonly:
            return
        mine = [item.nodeid for item in kept if self._is_benchmark(item)]
        worker = getattr(config, "workerinput", None)
        if worker is not None:  # under xdist the controller started the shard; its first worker says what it holds
            if worker.get("workerid") == FIRST_WORKER:
                self._fill_in_share(mine, selection)
            return
        try:
            self.state = start_shard(self.folder, self.plan, mine, selection.cost, selection.fingerprint)
        except (ShardError, OSError) as err:  # a share finished meanwhile, or the folder cannot be written
            raise pytest.UsageError(_one_line(err, self.folder)) from None

    def _fill_in_share(self, mine: list[str], selection: Selection) -> None:
        """The controller's shard.json, with this share's benchmarks and cost (every worker collects the same
        share; a restarted first worker finds them filled in and leaves the file as it is)."""
        assert self.folder is not None
        started = read_shard_json(self.folder)
        if started is None or started.get("assigned") is not None:
            return
        filled = {
            **started,
            "assigned": sorted(mine),
            "expected_cost": selection.cost,
            "partition": selection.fingerprint,
        }
        write_json(self.folder / SHARD_FILE, filled, durable=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """An xdist controller collects nothing, so the share starts here, before its workers do: the folder is
        checked and prepared, and shard.json says started, benchmarks not known yet."""
        config = session.config
        if self.folder is None or config.option.collectonly or not config.pluginmanager.has_plugin(XDIST_CONTROLLER):
            return
        try:
            prepare_folder(self.folder)
            self.state = write_started(self.folder, self.plan, None, None, None)
        except (ShardError, OSError) as err:
            raise pytest.UsageError(_one_line(err, self.folder)) from None

    def select(self, items: list[pytest.Item]) -> Selection:
        durations = None
        if self.durations is not None:
            try:
                durations = read_durations(self.durations)
            except DurationsError as err:
                raise pytest.UsageError(str(err)) from None
        benchmarks = [benchmark_of(item) for item in items if self._is_benchmark(item)]
        others = [item.nodeid for item in items if not self._is_benchmark(item)]
        return select_share(benchmarks, others, self.plan.index, self.plan.count, durations)

    def _is_benchmark(self, item: pytest.Item) -> bool:
        return any(name in getattr(item, "fixturenames", ()) for name in self.metered)

    def describe(self, selection: Selection) -> str:
        """The header line: which share, where its index came from, and what part of the sweep it carries."""
        index = self.plan.index
        return (
            f"energy shard {index}/{self.plan.count} (index {index} from {self.plan.index_source}): "
            f"{selection.benchmarks} of {selection.total_benchmarks} benchmarks, expected cost "
            f"{selection.cost_share:.0%} of the sweep" + (f", results in {self.folder}" if self.folder else "")
        )

    def pytest_report_collectionfinish(self, config: pytest.Config) -> str:
        return self.header

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
        """After every other sessionfinish (our files are written by then): the shard is complete."""
        result = yield
        if self.state is not None and self.folder is not None:
            if self.state["assigned"] is None:  # an xdist controller: its first worker filled in the share on disk
                on_disk = read_shard_json(self.folder)
                if on_disk is not None and on_disk.get("started_at") == self.state["started_at"]:
                    self.state = on_disk
            try:
                self.state = finish_shard(self.folder, self.state, int(exitstatus))
            except OSError as err:  # the results stand; the shard reads as unfinished, so it may be run again
                sys.stderr.write(f"aienergyscore: {_one_line(err, self.folder)}\n")
        return result


def _one_line(err: BaseException, folder: Path) -> str:
    if isinstance(err, OSError):
        return f"cannot write {folder / SHARD_FILE}: {err.strerror or err}"
    return str(err)
