"""GPU energy of other machines, from the total-energy counter that NVIDIA's DCGM exporter publishes per GPU.

A vLLM server usually runs on other hosts than the client (tensor-parallel over several GPUs, or replicas behind a
router), so the local NVML counter meters nothing there. GPU clusters already run dcgm-exporter, which publishes
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ, the same NVML counter) labelled by GPU index, UUID and host. This meter
reads it over HTTP at the edges of each window, from each host's exporter or from a Prometheus server that scrapes
them (see :mod:`.dcgm_sources`), and turns it into per-device joules like every other meter.

Why the care:
- A remote value can be old: the exporter refreshes it every collect interval, Prometheus every scrape. Each read
  keeps the sample's time and age where the source gives one (Prometheus always, exporters only with timestamps) and
  how long the value has stood still. A window that read an old value, or lost a GPU's series, or saw a counter
  stand still longer than it could on a powered GPU (which always draws tens of watts), is invalid with the reason:
  never a silent zero.
- A counter that goes down was restarted (driver reload, GPU reset, a new exporter on another DCGM): resets are
  counted so that the base class invalidates windows across them. A 64-bit wrap of the mJ counter would take half a
  million years at 1 kW, so every drop is a reset.
- Joules are exact integers of mJ relative to the first reading, as for NVML.
- The same GPU given twice (two URLs for one exporter, or a Prometheus job scraping it twice) would count its energy
  twice, so it is refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pytest_aienergyscore.config.dcgm_selector import Selector, SelectorError, Term, parse_selector
from pytest_aienergyscore.meters.base import Meter, MeterUnavailable, Reading, now
from pytest_aienergyscore.meters.dcgm.sources import (
    DEFAULT_TIMEOUT_S,
    EXPORTER,
    METRIC,
    Series,
    Source,
    SourceError,
    make_source,
)
from pytest_aienergyscore.records.figures import MeterInfo

EXPORTER_PERIOD_S = 1.0  # what the README asks dcgm-exporter to collect at (-c 1000)
PROMETHEUS_DEFAULT_SCRAPE_S = 60.0  # Prometheus's own default scrape interval, when the samples cannot tell
FROZEN_UPDATES = 2  # a counter that did not move over more updates than this is stale
MIN_LOOKBACK_S = 300.0
READ_LOG_SIZE = 64
FACT_LABELS = ("pci_bus_id", "namespace", "pod", "container")


def _parse_selector(text: str | None) -> Selector:
    """``--energy-dcgm-gpus`` parsed by config's grammar (the one the option was checked with at start-up); a meter
    built directly, not through Settings, gets a MeterUnavailable that names the bad term."""
    try:
        return parse_selector(text)
    except SelectorError as err:
        raise MeterUnavailable(
            f"--energy-dcgm-gpus: {err.term!r} is no GPU UUID (GPU-...), index (0), host:index (node-1:0) "
            "or label=value"
        ) from None


@dataclass(frozen=True)
class Gpu:
    """One metered GPU: the source that publishes it (by position in the URL list) and its series at set-up."""

    key: str
    source_index: int
    source: Source
    first: Series

    @property
    def labels(self) -> Mapping[str, str]:
        return self.first.labels

    @property
    def host(self) -> str:
        return gpu_host(self.labels, self.source)

    @property
    def index(self) -> str:
        return self.labels.get("gpu", "?")

    @property
    def uuid(self) -> str:
        return self.labels.get("UUID") or self.labels.get("uuid") or ""

    @property
    def identity(self) -> str:
        return gpu_identity(self.labels, self.source)


def gpu_host(labels: Mapping[str, str], source: Source) -> str:
    """dcgm-exporter's ``Hostname`` label, else Prometheus's ``instance``, else the host in the URL."""
    return labels.get("Hostname") or labels.get("instance") or urlsplit(source.request_url).hostname or "?"


def gpu_identity(labels: Mapping[str, str], source: Source) -> str:
    """What makes a GPU the same GPU in every read and every source: its UUID (host and index where it has none)."""
    uuid = labels.get("UUID") or labels.get("uuid")
    return uuid if uuid else f"{gpu_host(labels, source)}/gpu{labels.get('gpu', '?')}"


def select_gpus(found: Sequence[tuple[Source, Sequence[Series]]], selector: Selector) -> tuple[Gpu, ...]:
    """The GPUs to meter, keyed ``host/gpuN``; MeterUnavailable for a term matching nothing or a GPU given twice."""
    candidates = [Gpu("", position, source, series) for position, (source, many) in enumerate(found) for series in many]
    chosen = candidates
    if selector.terms:
        unmatched = [t.text for t in selector.terms if not any(_selects(t, g) for g in candidates)]
        if unmatched:
            raise MeterUnavailable(
                f"--energy-dcgm-gpus {selector.text!r}: {', '.join(map(repr, unmatched))} matches no GPU; the URLs "
                f"publish {_listing(candidates)}"
            )
        chosen = [g for g in candidates if any(_selects(t, g) for t in selector.terms)]
    chosen = _one_series_per_counter(chosen)
    _refuse_duplicates(chosen)
    return _with_keys(chosen)


def _selects(term: Term, gpu: Gpu) -> bool:
    return term.matches(uuid=gpu.uuid, index=gpu.index, host=gpu.host, labels=gpu.labels)


def _one_series_per_counter(gpus: Sequence[Gpu]) -> list[Gpu]:
    """One GPU's counter repeated by one source with equal values is the same counter, labelled twice: a MIG GPU
    (one series per instance, ``GPU_I_ID``) or a GPU shared by pods. The counter is the whole GPU's; keep it once."""
    kept: list[Gpu] = []
    for gpu in gpus:
        same = (g for g in kept if g.source_index == gpu.source_index and g.identity == gpu.identity)
        if not any(g.first.value_mj == gpu.first.value_mj for g in same):
            kept.append(gpu)
    return kept


def _refuse_duplicates(gpus: Sequence[Gpu]) -> None:
    seen: dict[str, Gpu] = {}
    for gpu in gpus:
        first = seen.setdefault(gpu.identity, gpu)
        if first is gpu:
            continue
        where = (
            f"twice by {gpu.source.public} (two series differing in {_differing_labels(first, gpu)})"
            if first.source_index == gpu.source_index
            else f"by both {first.source.public} and {gpu.source.public}"
        )
        raise MeterUnavailable(
            f"GPU {gpu.identity} ({gpu.host} gpu {gpu.index}) is published {where}: its energy would count twice; "
            "give each exporter once, or narrow --energy-dcgm-gpus"
        )


def _differing_labels(a: Gpu, b: Gpu) -> str:
    names = sorted(k for k in set(a.labels) | set(b.labels) if a.labels.get(k) != b.labels.get(k))
    return ", ".join(names) or "nothing"


def _with_keys(gpus: Sequence[Gpu]) -> tuple[Gpu, ...]:
    """``host/gpuN`` as the device key; the UUID is added only where two GPUs would otherwise share a key."""
    plain = [f"{g.host}/gpu{g.index}" for g in gpus]
    return tuple(
        dataclasses.replace(g, key=key if plain.count(key) == 1 else f"{key}/{g.identity}")
        for g, key in zip(gpus, plain, strict=True)
    )


def _listing(gpus: Sequence[Gpu], limit: int = 16) -> str:
    if not gpus:
        return "no GPU"
    shown = [f"{g.host}:{g.index} ({g.uuid or 'no UUID'})" for g in gpus[:limit]]
    more = f" and {len(gpus) - limit} more" if len(gpus) > limit else ""
    return ", ".join(shown) + more


@dataclass(frozen=True)
class CounterSample:
    """What one read saw of one GPU's counter, and what was wrong with it (``problem``: not read at all)."""

    counter_mj: int | None
    sample_time: float | None
    age_s: float | None
    unchanged_s: float
    resets: int
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "counter_mj": self.counter_mj,
            "sample_time": rounded(self.sample_time),
            "age_s": rounded(self.age_s),
            "unchanged_s": rounded(self.unchanged_s),
            "resets": self.resets,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class DcgmReading(Reading):
    """A reading that also keeps, per device, the sample it came from (for :meth:`DcgmMeter.validate_window`)."""

    samples: Mapping[str, CounterSample] = field(default_factory=dict)


@dataclass
class _Counter:
    """Running state of one GPU's counter: exact mJ since the first read, and when the value last moved."""

    last_mj: int
    last_time: float | None
    changed_at: float
    total_mj: int = 0
    resets: int = 0

    def advance(self, series: Series, mono: float) -> None:
        since = self.last_time
        newer = [mj for stamp, mj in series.samples if stamp is None or since is None or stamp > since]
        if not newer:
            return  # the source has nothing since the last read
        rise, drops = increase([self.last_mj, *newer])
        self.total_mj += rise
        self.resets += drops
        if rise or drops:
            self.changed_at = mono
        self.last_mj = newer[-1]
        self.last_time = series.timestamp


def increase(values: Sequence[int]) -> tuple[int, int]:
    """Energy over successive counter values and the number of resets: a drop means the counter restarted at zero."""
    rise, drops = 0, 0
    for before, after in itertools.pairwise(values):
        if after >= before:
            rise += after - before
        else:
            rise += max(after, 0)
            drops += 1
    return rise, drops


class DcgmMeter(Meter):
    """Measured energy of remote GPUs, from dcgm-exporters or a Prometheus server scraping them."""

    name = "dcgm"
    kind = "measured"
    counter_period_s = EXPORTER_PERIOD_S

    def __init__(
        self,
        urls: Sequence[str],
        selector: str | None = None,
        max_age_s: float = 30.0,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        counter_period_s: float | None = None,
    ) -> None:
        super().__init__()
        _require_parser()
        if not urls:
            raise MeterUnavailable("no DCGM source: give --energy-dcgm-url URL (an exporter's /metrics or Prometheus)")
        self.sources = tuple(_source(url) for url in urls)
        self.selector = _parse_selector(selector)
        self._refuse_promql_for_exporters()
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.lookback_s = max(MIN_LOOKBACK_S, 4 * max_age_s)
        mono, wall = now()
        found = [(source, self._fetch_or_fail(source)) for source in self.sources]
        self.gpus = select_gpus(found, self.selector)
        first = {gpu.key: gpu.first for gpu in self.gpus}
        self.counter_period_s = counter_period_s or self._learned_period(first)
        self._counters = {
            key: _Counter(series.value_mj, series.timestamp, changed_at=mono) for key, series in first.items()
        }
        self._log: deque[dict[str, Any]] = deque(maxlen=READ_LOG_SIZE)
        self._log.append(self._log_entry(wall, {key: self._sample(key, first[key], mono, wall) for key in first}))

    # -- set-up ---------------------------------------------------------------------------------------------
    def _refuse_promql_for_exporters(self) -> None:
        if self.selector.promql and any(s.kind == EXPORTER for s in self.sources):
            raise MeterUnavailable(
                f"--energy-dcgm-gpus {self.selector.text}: a {{...}} selector is a Prometheus query and works with "
                "Prometheus URLs only; for exporters use UUIDs, host:index or label=value terms"
            )

    def _fetch(self, source: Source) -> list[Series]:
        return source.fetch(self.selector.promql, self.lookback_s, self.timeout_s)

    def _fetch_or_fail(self, source: Source) -> list[Series]:
        try:
            return self._fetch(source)
        except SourceError as err:
            raise MeterUnavailable(f"--energy-dcgm-url {source.public}: {err}") from None

    def _learned_period(self, first: Mapping[str, Series]) -> float:
        """The slowest update period among the GPUs: exporters are assumed at 1 s, Prometheus shows its interval."""
        periods = [EXPORTER_PERIOD_S]
        for gpu in self.gpus:
            if gpu.source.kind == EXPORTER:
                continue
            stamps = [s for s, _ in first[gpu.key].samples if s is not None]
            gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
            scrape = statistics.median(gaps) if gaps else PROMETHEUS_DEFAULT_SCRAPE_S
            if gaps and scrape >= self.max_age_s:
                raise MeterUnavailable(
                    f"--energy-dcgm-url {gpu.source.public}: Prometheus scrapes {gpu.key} every {scrape:g} s, not "
                    f"less than --energy-dcgm-max-age {self.max_age_s:g} s, so every window would read a stale "
                    "value; raise --energy-dcgm-max-age to at least twice the scrape interval, or scrape faster"
                )
            periods.append(scrape)
        return max(periods)

    # -- reading --------------------------------------------------------------------------------------------
    def read(self) -> Reading:
        mono, wall = now()
        fetched = [self._fetch_or_reason(source) for source in self.sources]
        samples = {gpu.key: self._observe(gpu, fetched[gpu.source_index], mono, wall) for gpu in self.gpus}
        self._log.append(self._log_entry(wall, samples))
        joules = {key: counter.total_mj / 1000.0 for key, counter in self._counters.items()}
        resets = sum(counter.resets for counter in self._counters.values())
        return DcgmReading(mono, wall, joules, resets=resets, samples=samples)

    def _fetch_or_reason(self, source: Source) -> list[Series] | str:
        """During a run a failing source must not crash the benchmark: its windows become invalid instead."""
        try:
            return self._fetch(source)
        except SourceError as err:
            return f"{source.public} {err}"

    def _observe(self, gpu: Gpu, fetched: list[Series] | str, mono: float, wall: float) -> CounterSample:
        counter = self._counters[gpu.key]
        if isinstance(fetched, str):
            return self._missing(counter, mono, fetched)
        series = self._series_of(gpu, fetched)
        if series is None:
            return self._missing(counter, mono, f"no longer published by {gpu.source.public}")
        counter.advance(series, mono)
        return self._sample(gpu.key, series, mono, wall)

    @staticmethod
    def _series_of(gpu: Gpu, fetched: Sequence[Series]) -> Series | None:
        return next((s for s in fetched if gpu_identity(s.labels, gpu.source) == gpu.identity), None)

    def _sample(self, key: str, series: Series, mono: float, wall: float) -> CounterSample:
        counter = self._counters.get(key)
        stamp = series.timestamp
        return CounterSample(
            counter_mj=series.value_mj,
            sample_time=stamp,
            age_s=None if stamp is None else wall - stamp,
            unchanged_s=0.0 if counter is None else mono - counter.changed_at,
            resets=0 if counter is None else counter.resets,
        )

    @staticmethod
    def _missing(counter: _Counter, mono: float, reason: str) -> CounterSample:
        return CounterSample(None, None, None, mono - counter.changed_at, counter.resets, problem=reason)

    @staticmethod
    def _log_entry(wall: float, samples: Mapping[str, CounterSample]) -> dict[str, Any]:
        return {"wall": round(wall, 3), "devices": {key: sample.to_dict() for key, sample in samples.items()}}

    # -- validity -------------------------------------------------------------------------------------------
    def validate_window(self, start: Reading, end: Reading) -> list[str]:
        if not isinstance(start, DcgmReading) or not isinstance(end, DcgmReading):
            return []
        duration = end.monotonic - start.monotonic
        problems = []
        for key in self._counters:
            reason = self._window_problem(start.samples.get(key), end.samples.get(key), duration)
            if reason:
                problems.append(f"{key}: {reason}")
        return problems

    def _window_problem(self, first: CounterSample | None, last: CounterSample | None, duration: float) -> str | None:
        for edge, sample in (("begin", first), ("end", last)):
            reason = self._sample_problem(sample)
            if reason:
                return f"{reason} at the window's {edge}"
        if first is None or last is None:  # already refused above; says so to the type checker
            return "not read"
        if last.resets != first.resets:
            return "the counter went down during the window (driver reload, GPU reset or another DCGM): not usable"
        if last.counter_mj == first.counter_mj and duration > FROZEN_UPDATES * self.counter_period_s:
            return (
                f"the counter did not advance in {duration:.1f} s (over {FROZEN_UPDATES} updates of "
                f"{self.counter_period_s:g} s) though a powered GPU always draws energy: the source served an old value"
            )
        return None

    def _sample_problem(self, sample: CounterSample | None) -> str | None:
        if sample is None:
            return "not read"
        if sample.problem:
            return sample.problem
        if sample.age_s is not None and sample.age_s > self.max_age_s:
            return f"the counter sample was {sample.age_s:.1f} s old (over --energy-dcgm-max-age {self.max_age_s:g} s)"
        if sample.unchanged_s > self.max_age_s:
            return (
                f"the counter had not changed for {sample.unchanged_s:.1f} s (over --energy-dcgm-max-age "
                f"{self.max_age_s:g} s): the source is serving an old value"
            )
        return None

    # -- description ----------------------------------------------------------------------------------------
    def device_scopes(self) -> dict[str, str]:
        return {gpu.key: "gpu" for gpu in self.gpus}

    def device_facts(self) -> tuple[dict[str, Any], ...]:
        facts = []
        for gpu in self.gpus:
            fact: dict[str, Any] = {
                "device": gpu.key,
                "scope": "gpu",
                "host": gpu.host,
                "gpu": gpu.index,
                "uuid": gpu.uuid or None,
                "name": gpu.labels.get("modelName"),
                "driver": gpu.labels.get("DCGM_FI_DRIVER_VERSION"),
                "source": gpu.source.public,
                "source_kind": gpu.source.kind,
                "counter": f"{METRIC} (mJ)",
            }
            fact.update({label: gpu.labels[label] for label in FACT_LABELS if gpu.labels.get(label)})
            facts.append(fact)
        return tuple(facts)

    def info(self) -> MeterInfo:
        details = {
            "metric": METRIC,
            "sources": [{"url": s.public, "kind": s.kind} for s in self.sources],
            "selector": self.selector.text or None,
            "max_age_s": self.max_age_s,
            "hosts": self.hosts(),
            "reads": list(self._log),
        }
        return dataclasses.replace(super().info(), details=details)

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(gpu.host for gpu in self.gpus))

    def summary(self) -> str:
        """One line for the terminal header: how many GPUs on which hosts, from how many sources."""
        kinds = sorted({s.kind for s in self.sources})
        return (
            f"{len(self.gpus)} GPU(s) on {', '.join(self.hosts())} from {len(self.sources)} "
            f"{'/'.join(kinds)} URL(s), counter update about every {self.counter_period_s:g} s"
        )


def _source(url: str) -> Source:
    try:
        return make_source(url)
    except SourceError as err:
        raise MeterUnavailable(f"--energy-dcgm-url {err}") from None


def _require_parser() -> None:
    try:
        import prometheus_client.parser  # noqa: F401
    except ImportError:
        raise MeterUnavailable(
            "prometheus-client is not installed (pip install 'pytest-aienergyscore[dcgm]')"
        ) from None
