"""Which share of a sweep this process runs: every benchmark in exactly one share, shares balanced by expected cost.

Why it works this way:
- Every shard process (a Kubernetes pod, a Slurm array task) collects the same tests and must pick the same
  partition with no talking to the others, so the partition is a pure function of the collected test ids and their
  costs: greedy longest-first onto the least-loaded share, ties broken by test id and share number.
- Benchmarks differ in cost by orders of magnitude (a 7B model generating 100 tokens against a 135M classifier), so
  counting tests balances nothing. A benchmark's expected cost is its model's parameters (read from config or
  safetensors headers, never by loading it) times the passes its task makes per query; or, when a previous run is
  given, how long it took then. What cannot be sized (custom ``energy_meter`` code, a model whose name and files
  do not tell) counts as the median known cost: neither free nor the most expensive.
- Tests that are not benchmarks cost next to nothing: they are dealt round-robin in test id order.
- Every input must read the same on every host, or two shards would partition differently and a benchmark would
  run twice or never. So a Hub id is sized by the size in its name (``Llama-3.1-8B``, ``SmolLM2-135M``), never by
  whatever one host's Hub cache happens to hold; a model folder (a path, on a shared volume as the run needs) by
  its files. A fingerprint of the partition goes into each shard.json, so a mismatch would show at merge.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_aienergyscore.records.atomic import is_temporary
from pytest_aienergyscore.records.store import RECORDS_FILE, read_store

SUMMARY_JSON = "summary.json"


@dataclass(frozen=True)
class Benchmark:
    """What collection tells about one benchmark: its test id, and model and task when they can be read without
    running it. ``sizable`` is False for custom ``energy_meter`` code, whose work no protocol describes."""

    nodeid: str
    model: str | None = None
    task: str | None = None
    sizable: bool = True


@dataclass
class ModelSizer:
    """Parameters of a model id or folder, counted once per model per process: a sweep of 40 checkpoints x 10 tasks
    asks 400 times about 40 models, and each count may read safetensors headers."""

    counted: dict[str, int | None] = field(default_factory=dict)

    def parameters(self, model: str) -> int | None:
        if model not in self.counted:
            self.counted[model] = _count(model)
        return self.counted[model]


def _count(model: str) -> int | None:
    """A model folder's parameters from its files (backends/models.py's rule, no weights loaded); a Hub id's from
    the size in its name; None when neither tells."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return parameters_from_name(model)
    from pytest_aienergyscore.backends.models import count_parameters

    counted = count_parameters(folder)
    return counted[0] if counted else None


_SIZE_TAG = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([mb])(?![a-z0-9])", re.IGNORECASE)


def parameters_from_name(model: str) -> int | None:
    """``8B`` in ``meta-llama/Llama-3.1-8B``, ``135M`` in ``SmolLM2-135M``, ``8x7B`` (experts x size) in Mixtral's
    name; None without such a tag (``gpt2``). Model ids say their size this way far more often than not."""
    found = _SIZE_TAG.search(model.rsplit("/", 1)[-1])
    if found is None:
        return None
    experts, size, unit = found.groups()
    return int(float(size) * (1e9 if unit.lower() == "b" else 1e6) * int(experts or 1))


def task_work(task: str) -> float | None:
    """Passes per query of a task's default protocol (rules/protocol.py), or None for a name that is not a task."""
    from pytest_aienergyscore.rules.protocol import PROTOCOLS, work_units

    protocol = PROTOCOLS.get(task)
    return work_units(protocol) if protocol is not None else None


def expected_costs(
    benchmarks: Sequence[Benchmark],
    durations: Mapping[str, float] | None = None,
    parameters: Callable[[str], int | None] | None = None,
) -> dict[str, float | None]:
    """Each benchmark's expected cost, or None where unknown. With ``durations`` (seconds from a previous run) those
    are the costs, and parameters are not looked at: mixing seconds with parameter-passes would weigh nothing right."""
    if durations is not None:
        return {b.nodeid: durations.get(b.nodeid) for b in benchmarks}
    size = parameters or ModelSizer().parameters
    return {b.nodeid: _sized(b, size) for b in benchmarks}


def _sized(benchmark: Benchmark, parameters: Callable[[str], int | None]) -> float | None:
    if not benchmark.sizable or benchmark.model is None or benchmark.task is None:
        return None
    work = task_work(benchmark.task)
    count = parameters(benchmark.model) if work is not None else None
    return float(count) * work if count and work else None


def fill_unknown(costs: Mapping[str, float | None]) -> dict[str, float]:
    """Unknown costs become the median of the known ones (1 when none is known), so each still weighs something."""
    known = [cost for cost in costs.values() if cost is not None]
    typical = statistics.median(known) if known else 1.0
    return {nodeid: typical if cost is None else cost for nodeid, cost in costs.items()}


def balanced_shares(costs: Mapping[str, float], count: int) -> list[list[str]]:
    """``count`` shares of the test ids: longest first, each onto the share with the least cost so far (the lowest
    share number on a tie), equal costs taken in test id order. Deterministic for a given set of costs."""
    shares: list[list[str]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for nodeid in sorted(costs, key=lambda n: (-costs[n], n)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        shares[lightest].append(nodeid)
        loads[lightest] += costs[nodeid]
    return shares


def round_robin(nodeids: Iterable[str], count: int) -> list[list[str]]:
    """Tests that are not benchmarks, dealt in test id order: they cost next to nothing, any spread will do."""
    shares: list[list[str]] = [[] for _ in range(count)]
    for position, nodeid in enumerate(sorted(nodeids)):
        shares[position % count].append(nodeid)
    return shares


@dataclass(frozen=True)
class Selection:
    """This process's share: the test ids it runs, and how its benchmarks weigh against the whole sweep's."""

    keep: frozenset[str]
    fingerprint: str
    benchmarks: int
    total_benchmarks: int
    cost: float
    total_cost: float

    @property
    def cost_share(self) -> float:
        return self.cost / self.total_cost if self.total_cost else 0.0


def select_share(
    benchmarks: Sequence[Benchmark],
    others: Iterable[str],
    index: int,
    count: int,
    durations: Mapping[str, float] | None = None,
    parameters: Callable[[str], int | None] | None = None,
) -> Selection:
    """Share ``index`` of ``count``: its benchmarks balanced by expected cost, its other tests by round-robin."""
    costs = fill_unknown(expected_costs(benchmarks, durations, parameters))
    shares = balanced_shares(costs, count)
    mine = shares[index]
    plain = round_robin(others, count)[index]
    return Selection(
        keep=frozenset(mine) | frozenset(plain),
        fingerprint=partition_fingerprint(shares),
        benchmarks=len(mine),
        total_benchmarks=len(costs),
        cost=sum(costs[nodeid] for nodeid in mine),
        total_cost=sum(costs.values()),
    )


def partition_fingerprint(shares: Sequence[Sequence[str]]) -> str:
    """A short hash of who runs what: equal in every shard of a sweep that partitioned alike, so a shard whose
    collection or costs differed (another checkout, a model folder missing on its host) can be told apart."""
    text = "\n".join(f"{i}\t{nodeid}" for i, share in enumerate(shares) for nodeid in sorted(share))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# -- durations of a previous run --------------------------------------------------------------------------------------


class DurationsError(ValueError):
    """--energy-shard-durations names nothing that holds a previous run's records."""


def read_durations(path: Path) -> dict[str, float]:
    """Seconds per test id from a previous run: a records.jsonl, a summary.json (its session's records.jsonl), or
    any folder above them (a session, a sweep of shards, a results root). Records hold the start and end of each
    benchmark; the summary does not, so it only points at its folder. A test run more than once keeps its latest."""
    stores = _stores(path)
    if not stores:
        raise DurationsError(f"--energy-shard-durations: {path} holds no {RECORDS_FILE} of a previous run")
    latest: dict[str, tuple[float, float]] = {}
    for store in stores:
        records, _torn = read_store(store)
        for record in records:
            seconds = record.finished_at - record.started_at
            if seconds > 0 and record.started_at >= latest.get(record.nodeid, (float("-inf"), 0.0))[0]:
                latest[record.nodeid] = (record.started_at, seconds)
    return {nodeid: seconds for nodeid, (_start, seconds) in latest.items()}


def _stores(path: Path) -> list[Path]:
    if path.is_dir():  # a store still being written, or left by a writer that died, is not a previous run
        return [s for s in sorted(path.rglob(RECORDS_FILE)) if not is_temporary(s.relative_to(path))]
    if path.name == SUMMARY_JSON:
        store = path.with_name(RECORDS_FILE)
        return [store] if store.is_file() else []
    return [path] if path.is_file() else []
