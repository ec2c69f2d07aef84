"""Baselines and the CI energy gate: save a session's figures, compare a later session with them, give verdicts.

Why it is shaped this way:
- A baseline is matched by test id and carries the machine fingerprint it was measured on (GPU model, driver, power
  limit, backend, meter). Energy from another machine is not evidence of a regression, so such a pair is never
  compared silently: the verdict says why it was not compared, and ``--energy-strict`` makes that a failure.
- CI must fail on real regressions, not on noise. When both sides ran ``--energy-repeat N`` with N >= 3, a rise
  fails only if it is above the threshold *and* significant: Welch's t-test (unequal variances), one-sided,
  alpha 0.05, on the per-repetition Wh per 1,000 queries. The t distribution's CDF is computed exactly, with the
  standard library only, through the regularized incomplete beta function (continued fraction). With single runs
  there is no noise estimate; the threshold alone decides and every verdict says so.
- A bad baseline file must stop the session before hours of benchmarks run, in one line: :func:`load_baseline`
  validates the schema tag, the version and every figure, and raises :class:`BaselineError`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean, variance
from typing import Any

from pytest_aienergyscore.records.record import Record

BASELINE_SCHEMA = "pytest-aienergyscore/baseline"
BASELINE_VERSION = 1
GATE_FILE = "gate.json"

ALPHA = 0.05
MIN_REPEATS = 3
# Without --energy-fail-above changes are still reported, classified against this threshold, and never fail.
REPORT_ONLY_PCT = 5.0

REGRESSION = "regression"
IMPROVEMENT = "improvement"
WITHIN_NOISE = "within noise"
WITHIN_THRESHOLD = "within threshold"
NOT_COMPARED = "not compared"
NO_BASELINE = "no baseline"

FINGERPRINT_LABELS = {
    "gpu_models": "GPU model",
    "driver": "driver",
    "power_limit_w": "power limit (W)",
    "backend": "backend",
    "meter": "meter",
    "cpu": "CPU",
}
METRIC_LABELS = {"wh_per_1000_queries": "Wh/1k queries", "total_wh": "total Wh"}


class BaselineError(ValueError):
    """A baseline file that cannot be used, in one line that names the file and the problem."""


# -- statistics -----------------------------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, evaluated with the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry on the other
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_survival(t: float, df: float) -> float:
    """P(T > t) for Student's t distribution with ``df`` (possibly fractional) degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@dataclass(frozen=True)
class Welch:
    """Welch's t statistic for current minus baseline, its degrees of freedom, and both one-sided p-values."""

    t: float
    df: float
    p_rise: float
    p_fall: float


def welch_test(current: Sequence[float], baseline: Sequence[float]) -> Welch:
    """Welch's unequal-variance t-test of mean(current) against mean(baseline); each side needs 2+ values."""
    n1, n2 = len(current), len(baseline)
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's t-test needs at least two values on each side")
    diff = fmean(current) - fmean(baseline)
    s1, s2 = variance(current) / n1, variance(baseline) / n2
    if s1 + s2 == 0.0:  # no spread at all: any difference is certain, none is no evidence
        p_rise = 0.0 if diff > 0 else 1.0
        p_fall = 0.0 if diff < 0 else 1.0
        return Welch(math.copysign(math.inf, diff) if diff else 0.0, math.inf, p_rise, p_fall)
    t = diff / math.sqrt(s1 + s2)
    df = (s1 + s2) ** 2 / ((s1 * s1 / (n1 - 1) if s1 else 0.0) + (s2 * s2 / (n2 - 1) if s2 else 0.0))
    return Welch(t, df, t_survival(t, df), t_survival(-t, df))


# -- figures of one benchmark ---------------------------------------------------------------------------------------


def repetition_totals_wh(record: Record) -> list[float]:
    """The benchmark's total Wh in each repetition, in its headline scope: outermost phases only, the windows of a
    phase added up within a repetition (:meth:`Record.repetition_totals_wh`), so their mean is the record's total."""
    return record.repetition_totals_wh()


def fingerprint(record: Record) -> dict[str, Any]:
    """What a figure depends on besides the model: comparing across different fingerprints compares machines."""
    gpus = record.environment.get("gpus") or []
    meter = f"{record.meter_name()} ({record.energy_kind()})"
    methods = sorted({str(d["method"]) for d in record.meter.get("devices", ()) if d.get("method")})
    if methods:
        meter += ": " + "; ".join(methods)
    facts: dict[str, Any] = {
        "gpu_models": sorted(str(g.get("name")) for g in gpus),
        "driver": ",".join(sorted({str(g.get("driver")) for g in gpus if g.get("driver")})) or None,
        "power_limit_w": sorted(float(g["power_limit_w"]) for g in gpus if g.get("power_limit_w") is not None),
        "backend": record.backend,
        "meter": meter,
    }
    if record.headline_scope() == "cpu":
        facts["cpu"] = record.environment.get("cpu")
    return facts


def benchmark_entry(record: Record) -> dict[str, Any]:
    """The figures of one benchmark as a baseline keeps them (and as the gate compares them)."""
    totals = repetition_totals_wh(record)
    queries = record.query_count()
    return {
        "task": record.task,
        "model": record.model,
        "backend": record.backend,
        "device": record.headline_scope(),
        "meter": record.meter_name(),
        "energy_kind": record.energy_kind(),
        "outcome": record.outcome,
        "queries": queries,
        "repetitions": len(totals),
        "total_wh": record.total_wh(),
        "wh_per_1000_queries": record.wh_per_1000_queries(),
        "repetition_total_wh": totals,
        "repetition_wh_per_1000_queries": [t / queries * 1000.0 for t in totals] if queries else None,
        "fingerprint": fingerprint(record),
    }


# -- baseline files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline file; ``exists`` is False when the file was not there (a first CI run, say)."""

    path: Path
    benchmarks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    created: str | None = None
    exists: bool = True


def baseline_document(records: Iterable[Record], session_id: str) -> dict[str, Any]:
    """The JSON document --energy-save-baseline writes. Benchmarks that did not pass are left out (partial work)."""
    entries = {r.nodeid: benchmark_entry(r) for r in records if r.outcome == "passed"}
    first = next(iter(entries.values()), None)
    return {
        "schema": BASELINE_SCHEMA,
        "version": BASELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": session_id,
        "fingerprint": first["fingerprint"] if first else {},
        "benchmarks": entries,
    }


def save_baseline(records: Iterable[Record], path: Path, session_id: str, complete: bool = True) -> Path:
    """Write a baseline whole or not at all, synced: a reader never sees half a file (even when it is the file just
    compared), and a crash right after leaves the old file or the new one.

    Only a complete session (every benchmark run to its end) replaces the file. An incomplete one (interrupted,
    stopped by -x, a selection of the tests) updates the entries of the benchmarks that passed in it and keeps
    every other entry, so that a Ctrl-C never shrinks a full baseline to the few benchmarks that had finished; the
    file it updates must be a valid baseline (BaselineError otherwise, and nothing is written).
    """
    from pytest_aienergyscore.records.atomic import WriteFailed, write_text

    document = baseline_document(records, session_id)
    if not complete and path.exists():
        earlier = load_baseline(path)
        document["benchmarks"] = {**earlier.benchmarks, **document["benchmarks"]}
        document["fingerprint"] = document["fingerprint"] or dict(earlier.fingerprint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteFailed(path, err) from None
    return write_text(path, json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", durable=True)


def load_baseline(path: Path) -> Baseline:
    """Read and validate a baseline file; BaselineError (one line) for anything unreadable, corrupted or foreign."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BaselineError(f"{path}: cannot be read ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BaselineError(f"{path}: corrupted, not valid JSON ({err})") from None
    except RecursionError:
        raise BaselineError(f"{path}: corrupted, JSON nested deeper than {MAX_BASELINE_DEPTH} levels") from None
    if _nested_deeper(data, MAX_BASELINE_DEPTH):
        raise BaselineError(f"{path}: corrupted, JSON nested deeper than {MAX_BASELINE_DEPTH} levels")
    _check_header(path, data)
    benchmarks = data.get("benchmarks")
    if not isinstance(benchmarks, dict):
        raise BaselineError(f"{path}: corrupted, 'benchmarks' is not an object of test id -> figures")
    for test, entry in benchmarks.items():
        _check_entry(path, test, entry)
    fp = data.get("fingerprint", {})
    if not isinstance(fp, dict):
        raise BaselineError(f"{path}: corrupted, 'fingerprint' is not an object")
    return Baseline(path, benchmarks, fp, str(data.get("created")) if data.get("created") else None)


MAX_BASELINE_DEPTH = 32  # a baseline nests 4 levels; anything far deeper would only exhaust the recursion later


def _nested_deeper(data: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels; iterative, so depth itself cannot overflow it."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _check_header(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("schema") != BASELINE_SCHEMA:
        hint = ""
        if isinstance(data, dict) and "machine_info" in data and "benchmarks" in data:
            hint = " (it looks like a pytest-benchmark file)"
        raise BaselineError(
            f"{path}: not a pytest-aienergyscore baseline{hint}; expected a JSON object with "
            f'"schema": "{BASELINE_SCHEMA}", as --energy-save-baseline writes'
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BaselineError(f"{path}: corrupted, 'version' must be a whole number >= 1, not {version!r}")
    if version > BASELINE_VERSION:
        raise BaselineError(
            f"{path}: baseline version {version} was written by a newer pytest-aienergyscore; "
            f"this one reads version {BASELINE_VERSION}"
        )


def _is_figure(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _check_entry(path: Path, test: str, entry: Any) -> None:
    where = f"{path}: corrupted, benchmark {test!r}"
    if not isinstance(entry, dict):
        raise BaselineError(f"{where} is not an object")
    if not _is_figure(entry.get("total_wh")):
        raise BaselineError(f"{where}: total_wh must be a number >= 0, not {entry.get('total_wh')!r}")
    per_1k = entry.get("wh_per_1000_queries")
    if per_1k is not None and not _is_figure(per_1k):
        raise BaselineError(f"{where}: wh_per_1000_queries must be a number >= 0 or null, not {per_1k!r}")
    for key in ("repetition_total_wh", "repetition_wh_per_1000_queries"):
        values = entry.get(key)
        if values is None and key == "repetition_wh_per_1000_queries":
            continue
        if not isinstance(values, list) or not values or not all(_is_figure(v) for v in values):
            raise BaselineError(f"{where}: {key} must be a non-empty list of numbers >= 0")
    if "fingerprint" in entry and not isinstance(entry["fingerprint"], dict):
        raise BaselineError(f"{where}: fingerprint is not an object")


def baseline_for_session(path: Path | None, require: bool) -> Baseline | None:
    """The session's baseline: None without --energy-baseline; a missing file is an error only when required."""
    if path is None:
        return None
    if not path.exists():
        if require:
            raise BaselineError(f"{path}: no such baseline file, and --energy-require-baseline was given")
        return Baseline(path, exists=False)
    return load_baseline(path)


# -- verdicts -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """How one benchmark compares with its baseline, and whether that fails the gate."""

    test: str
    status: str
    metric: str | None = None
    baseline: float | None = None
    current: float | None = None
    change_pct: float | None = None
    p_value: float | None = None
    noise_estimate: bool = False
    reason: str = ""
    fails: bool = False

    def label(self) -> str:
        """The verdict as the table shows it, with why or how sure."""
        if self.status in (NOT_COMPARED, NO_BASELINE):
            return f"{self.status}: {self.reason}" if self.reason else self.status
        if not self.noise_estimate:
            return f"{self.status} (no noise estimate: {self.reason or 'single runs'})"
        return f"{self.status} ({format_p(self.p_value)})"


@dataclass(frozen=True)
class GateSettings:
    """The options that shape the verdicts."""

    fail_above: float | None = None
    strict: bool = False
    require_baseline: bool = False

    @property
    def threshold(self) -> float:
        return self.fail_above if self.fail_above is not None else REPORT_ONLY_PCT


def format_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def fingerprint_differences(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each fingerprint fact that differs, worded for a person; facts one side does not record are not compared."""
    differences = []
    for key, label in FINGERPRINT_LABELS.items():
        if key in baseline and key in current and baseline[key] != current[key]:
            differences.append(f"{label} {_fact(baseline[key])} in the baseline, {_fact(current[key])} now")
    return differences


def _fact(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _series(entry: Mapping[str, Any], metric: str) -> list[float]:
    key = "repetition_wh_per_1000_queries" if metric == "wh_per_1000_queries" else "repetition_total_wh"
    return [float(v) for v in entry.get(key) or ()]


def compare_entry(test: str, current: Mapping[str, Any], base: Mapping[str, Any], gate: GateSettings) -> Verdict:
    """The verdict for one benchmark present on both sides."""
    if current.get("outcome", "passed") != "passed":
        return Verdict(test, NOT_COMPARED, reason=f"the benchmark did not pass ({current.get('outcome')})")
    differences = fingerprint_differences(base.get("fingerprint") or {}, current.get("fingerprint") or {})
    if differences:
        reason = "baseline from another machine fingerprint: " + "; ".join(differences)
        return Verdict(test, NOT_COMPARED, reason=reason, fails=gate.strict)
    metric = "wh_per_1000_queries"
    if current.get(metric) is None or base.get(metric) is None:
        metric = "total_wh"  # queries unknown on one side: whole-benchmark energy is the comparable figure
    now, before = float(current[metric]), float(base[metric])
    if before <= 0.0:
        return Verdict(test, NOT_COMPARED, metric, before, now, reason="the baseline figure is 0")
    change = (now - before) / before * 100.0
    cur_series, base_series = _series(current, metric), _series(base, metric)
    if len(cur_series) < MIN_REPEATS or len(base_series) < MIN_REPEATS:
        status = _by_threshold(change, gate.threshold)
        reason = f"{len(base_series)} vs {len(cur_series)} repetitions, need {MIN_REPEATS}+ on both sides"
        if len(cur_series) == len(base_series) == 1:
            reason = "single runs"
        return Verdict(test, status, metric, before, now, change, reason=reason, fails=_fails(status, gate))
    welch = welch_test(cur_series, base_series)
    status = _by_significance(change, gate.threshold, welch)
    p = welch.p_rise if change >= 0 else welch.p_fall
    return Verdict(test, status, metric, before, now, change, p, noise_estimate=True, fails=_fails(status, gate))


def _by_threshold(change: float, threshold: float) -> str:
    if change > threshold:
        return REGRESSION
    if change < -threshold:
        return IMPROVEMENT
    return WITHIN_THRESHOLD


def _by_significance(change: float, threshold: float, welch: Welch) -> str:
    if abs(change) <= threshold:
        return WITHIN_THRESHOLD
    if change > 0 and welch.p_rise < ALPHA:
        return REGRESSION
    if change < 0 and welch.p_fall < ALPHA:
        return IMPROVEMENT
    return WITHIN_NOISE


def _fails(status: str, gate: GateSettings) -> bool:
    return status == REGRESSION and gate.fail_above is not None


@dataclass
class GateOutcome:
    """Every verdict of the session and the notes that go with them; ``failed`` decides the exit status."""

    verdicts: list[Verdict]
    gate: GateSettings
    baseline_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(v.fails for v in self.verdicts)

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.verdicts)

    def headline(self) -> str:
        """One line: what was found, against which threshold, and whether the gate passed."""
        found = [f"{self.count(s)} {s}" for s in (REGRESSION, IMPROVEMENT, WITHIN_NOISE, WITHIN_THRESHOLD)]
        found += [f"{self.count(s)} {s}" for s in (NOT_COMPARED, NO_BASELINE) if self.count(s)]
        if self.gate.fail_above is None:
            rule = f"changes over {REPORT_ONLY_PCT:g}% reported, nothing gates (no --energy-fail-above)"
        else:
            rule = f"fails on a rise over {self.gate.fail_above:g}%"
        verdict = "FAILED" if self.failed else "passed"
        return f"energy gate {verdict}: {', '.join(found)}; {rule}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": str(self.baseline_path) if self.baseline_path else None,
            "fail_above_pct": self.gate.fail_above,
            "threshold_pct": self.gate.threshold,
            "strict": self.gate.strict,
            "require_baseline": self.gate.require_baseline,
            "test": f"Welch's t-test, one-sided, alpha {ALPHA}, when both sides have >= {MIN_REPEATS} repetitions",
            "failed": self.failed,
            "notes": list(self.notes),
            "verdicts": [asdict(v) | {"label": v.label()} for v in self.verdicts],
        }


def evaluate(records: Sequence[Record], baseline: Baseline | None, gate: GateSettings) -> GateOutcome | None:
    """Compare the session's records with the baseline. None when there was nothing to compare against."""
    if baseline is None:
        return None
    outcome = GateOutcome([], gate, baseline.path)
    if not baseline.exists:
        outcome.notes.append(f"no baseline at {baseline.path}: nothing compared (save one with --energy-save-baseline)")
    for record in records:
        base = baseline.benchmarks.get(record.nodeid)
        if base is None:
            reason = "not in the baseline file" if baseline.exists else "no baseline file"
            fails = gate.require_baseline and baseline.exists
            outcome.verdicts.append(Verdict(record.nodeid, NO_BASELINE, reason=reason, fails=fails))
            continue
        outcome.verdicts.append(compare_entry(record.nodeid, benchmark_entry(record), base, gate))
    _add_notes(outcome, records, baseline)
    return outcome


def _add_notes(outcome: GateOutcome, records: Sequence[Record], baseline: Baseline) -> None:
    ran = {r.nodeid for r in records}
    absent = [test for test in baseline.benchmarks if test not in ran]
    if absent:
        outcome.notes.append(f"{len(absent)} benchmark(s) of the baseline did not run: {', '.join(absent[:5])}")
    single = [v for v in outcome.verdicts if v.metric is not None and not v.noise_estimate]
    if single:
        outcome.notes.append(
            f"{len(single)} verdict(s) have no noise estimate (the threshold alone decided): run with "
            f"--energy-repeat {MIN_REPEATS} or more for both the baseline and this session"
        )
    if outcome.count(NO_BASELINE) and baseline.exists and not outcome.gate.require_baseline:
        outcome.notes.append("benchmarks missing from the baseline are warnings (--energy-require-baseline: errors)")


# -- the terminal section -------------------------------------------------------------------------------------------


def format_figure(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:,.3f}"
    return f"{value:.3e}"


def format_change(change: float | None) -> str:
    return "-" if change is None else f"{change:+.1f}%"


def verdict_rows(outcome: GateOutcome) -> list[tuple[str, ...]]:
    return [
        (
            v.test.rsplit("::", 1)[-1],
            METRIC_LABELS.get(v.metric or "", "-"),
            format_figure(v.baseline),
            format_figure(v.current),
            format_change(v.change_pct),
            v.label(),
        )
        for v in outcome.verdicts
    ]


VERDICT_HEADERS = ("benchmark", "figure", "baseline", "current", "change", "verdict")


def render(outcome: GateOutcome) -> list[str]:
    """The verdict table, then the notes, then the headline; as plain lines for the terminal."""
    body = verdict_rows(outcome)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(VERDICT_HEADERS)] if body else []
    right = {2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        cells_and_widths = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in cells_and_widths)

    lines = [line(VERDICT_HEADERS).rstrip(), line(["-" * w for w in widths])] if body else []
    lines += [line(row).rstrip() for row in body]
    lines += [f"note: {note}" for note in outcome.notes]
    return [*lines, outcome.headline()]


def write_gate_file(outcome: GateOutcome, session_dir: Path) -> Path:
    from pytest_aienergyscore.records.atomic import write_text

    return write_text(session_dir / GATE_FILE, json.dumps(outcome.to_dict(), indent=2, default=str) + "\n")
