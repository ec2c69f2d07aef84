"""The CI energy gate's verdicts: compare a session with its baseline, benchmark by benchmark, and decide the exit.

Why it is shaped this way:
- Energy from another machine is not evidence of a regression, so a pair whose fingerprints differ is never
  compared silently: the verdict says why it was not compared, and ``--energy-strict`` makes that a failure.
- CI must fail on real regressions, not on noise, and the noise that matters is the drift between sessions. When
  the machine's saved runs (``--energy-autosave``) hold the benchmark at least 5 times, a rise fails only if it is
  beyond the history's band (median + 3 sigma, :mod:`.drift`) *and* above the threshold. Otherwise, when both sides
  ran ``--energy-repeat N`` with N >= 3, a rise fails only if it is above the threshold *and* significant: Welch's
  t-test (:mod:`.statistics`), one-sided, alpha 0.05, on the per-repetition Wh per 1,000 queries. With single runs
  there is no noise estimate; the threshold alone decides. Every verdict names the rule that decided it.
- The outcome is data (:class:`GateOutcome`); the terminal and Markdown tables are drawn from it by ``report/``,
  which sits above the gate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_aienergyscore.gate.baselines import Baseline, benchmark_entry, fingerprint_differences
from pytest_aienergyscore.gate.drift import MIN_RUNS, WINDOW, DriftBand, K, drift_band
from pytest_aienergyscore.gate.quality_verdicts import (
    QUALITY,
    QUALITY_DROP,
    QUALITY_STATUSES,
    movement,
    one_sided,
    quality_label,
    quality_status,
    worse_pct,
)
from pytest_aienergyscore.gate.statistics import Welch, welch_test
from pytest_aienergyscore.records.record import Record

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

# The rule that decided a verdict (see the module's docstring).
RULE_HISTORY = "history"
RULE_WELCH = "welch"
RULE_THRESHOLD = "threshold"


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
    rule: str | None = None  # which rule decided: history, welch or threshold (None when nothing was compared)
    kind: str = "energy"  # or "quality": the benchmark's quality figure (metric: the quality metric's name)

    def label(self) -> str:
        """The verdict as the table shows it: the rule that decided, with why or how sure."""
        if self.kind == QUALITY:
            return quality_label(self.status, self.metric, self.baseline, self.current, self.reason)
        if self.status in (NOT_COMPARED, NO_BASELINE):
            return f"{self.status}: {self.reason}" if self.reason else self.status
        if self.rule == RULE_HISTORY:
            return f"{self.status} ({RULE_HISTORY}: {self.reason})"
        if not self.noise_estimate:
            return f"{self.status} ({RULE_THRESHOLD}: no noise estimate, {self.reason or 'single runs'})"
        return f"{self.status} ({RULE_WELCH}: {format_p(self.p_value)})"


@dataclass(frozen=True)
class GateSettings:
    """The options that shape the verdicts."""

    fail_above: float | None = None
    strict: bool = False
    require_baseline: bool = False
    quality_drop: float | None = None  # --energy-quality-drop PCT: fail on a quality drop over PCT percent

    @property
    def threshold(self) -> float:
        return self.fail_above if self.fail_above is not None else REPORT_ONLY_PCT

    @property
    def quality_threshold(self) -> float:
        return self.quality_drop if self.quality_drop is not None else REPORT_ONLY_PCT


def format_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _series(entry: Mapping[str, Any], metric: str) -> list[float]:
    key = "repetition_wh_per_1000_queries" if metric == "wh_per_1000_queries" else "repetition_total_wh"
    return [float(v) for v in entry.get(key) or ()]


def compare_entry(
    test: str,
    current: Mapping[str, Any],
    base: Mapping[str, Any],
    gate: GateSettings,
    history: Sequence[Mapping[str, Any]] = (),
) -> Verdict:
    """The verdict for one benchmark present on both sides. ``history``: its entries in the saved runs of this
    machine fingerprint, oldest first (the compared run last); with enough of them the drift rule decides."""
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
    band = drift_band(history_figures(history, metric))
    if band is not None:
        status, detail = _by_history(now, band, gate.threshold)
        verdict = Verdict(test, status, metric, before, now, change, noise_estimate=True, reason=detail)
        return _decided(verdict, RULE_HISTORY, gate)
    cur_series, base_series = _series(current, metric), _series(base, metric)
    if len(cur_series) < MIN_REPEATS or len(base_series) < MIN_REPEATS:
        status = _by_threshold(change, gate.threshold)
        reason = f"{len(base_series)} vs {len(cur_series)} repetitions, need {MIN_REPEATS}+ on both sides"
        if len(cur_series) == len(base_series) == 1:
            reason = "single runs"
        return _decided(Verdict(test, status, metric, before, now, change, reason=reason), RULE_THRESHOLD, gate)
    welch = welch_test(cur_series, base_series)
    status = _by_significance(change, gate.threshold, welch)
    p = welch.p_rise if change >= 0 else welch.p_fall
    return _decided(Verdict(test, status, metric, before, now, change, p, noise_estimate=True), RULE_WELCH, gate)


def compare_quality(
    test: str, current: Mapping[str, Any], base: Mapping[str, Any], gate: GateSettings
) -> tuple[Verdict | None, str | None]:
    """The quality verdict of one benchmark present on both sides, or why its quality could not be compared (a
    warning, never a failure); (None, None) when neither side was scored."""
    now_q, base_q = current.get("quality"), base.get("quality")
    if (now_q is None and base_q is None) or current.get("outcome", "passed") != "passed":
        return None, None  # a benchmark that did not pass: its energy verdict says so
    problem = one_sided(base_q, now_q)
    if problem is not None or base_q is None or now_q is None:
        return None, problem
    before, now = float(base_q["value"]), float(now_q["value"])
    worse = worse_pct(before, now, bool(now_q["higher_is_better"]))
    status = quality_status(worse, gate.quality_threshold)
    change = (now - before) / abs(before) * 100.0 if before else None
    reason = movement(worse, gate.quality_threshold, gate.quality_drop is not None)
    fails = status == QUALITY_DROP and gate.quality_drop is not None
    verdict = Verdict(test, status, now_q["metric"], before, now, change, reason=reason, fails=fails, kind=QUALITY)
    return replace(verdict, rule=RULE_THRESHOLD), None


def _decided(verdict: Verdict, rule: str, gate: GateSettings) -> Verdict:
    """The verdict with the rule that decided it, and whether it fails the gate."""
    return replace(verdict, rule=rule, fails=_fails(verdict.status, gate))


def history_figures(history: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    """The figures of the history's entries that ran to their end, oldest first: a failed run's partial figure
    says nothing about the machine's drift."""
    return [
        float(entry[metric])
        for entry in history
        if entry.get("outcome", "passed") == "passed" and entry.get(metric) is not None
    ]


def _by_history(now: float, band: DriftBand, threshold: float) -> tuple[str, str]:
    """The status by the drift rule, and its reason: the change from the history's median against the band's reach.
    Beyond the band is not enough: the change must also pass the threshold, so a very steady history does not turn
    a 1 % change into a failure."""
    change, reach = band.change_pct(now), band.allowance_pct()
    band_of = f"{band.k:g}-sigma band of {band.runs} runs"
    position = band.position(now)
    if position > 0:
        status = REGRESSION if change > threshold else WITHIN_THRESHOLD
        return status, f"{change:+.1f}% vs median > {band_of} (+{reach:.1f}%)"
    if position < 0:
        status = IMPROVEMENT if change < -threshold else WITHIN_THRESHOLD
        return status, f"{change:+.1f}% vs median < {band_of} (-{reach:.1f}%)"
    return WITHIN_NOISE, f"{change:+.1f}% vs median within {band_of} (+-{reach:.1f}%)"


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

    def count(self, status: str, kind: str = "energy") -> int:
        return sum(v.status == status and v.kind == kind for v in self.verdicts)

    def headline(self) -> str:
        """One line: what was found, against which threshold, and whether the gate passed."""
        found = [f"{self.count(s)} {s}" for s in (REGRESSION, IMPROVEMENT, WITHIN_NOISE, WITHIN_THRESHOLD)]
        found += [f"{self.count(s)} {s}" for s in (NOT_COMPARED, NO_BASELINE) if self.count(s)]
        if self.gate.fail_above is None:
            rule = f"changes over {REPORT_ONLY_PCT:g}% reported, nothing gates (no --energy-fail-above)"
        else:
            rule = f"fails on a rise over {self.gate.fail_above:g}%"
        verdict = "FAILED" if self.failed else "passed"
        return f"energy gate {verdict}: {', '.join(found)}; {rule}{self._quality_headline()}"

    def _quality_headline(self) -> str:
        """The quality part of the headline, only when some benchmark's quality was compared."""
        if not any(v.kind == QUALITY for v in self.verdicts):
            return ""
        found = ", ".join(f"{self.count(s, QUALITY)} {s.removeprefix('quality ')}" for s in QUALITY_STATUSES)
        if self.gate.quality_drop is None:
            rule = f"changes over {REPORT_ONLY_PCT:g}% reported (no --energy-quality-drop)"
        else:
            rule = f"fails on a drop over {self.gate.quality_drop:g}%"
        return f"; quality: {found}; {rule}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": str(self.baseline_path) if self.baseline_path else None,
            "fail_above_pct": self.gate.fail_above,
            "threshold_pct": self.gate.threshold,
            "strict": self.gate.strict,
            "require_baseline": self.gate.require_baseline,
            "quality_drop_pct": self.gate.quality_drop,
            "test": (
                f"history: median +- {K:g} sigma (the larger of the scaled MAD and the standard deviation, widened "
                f"as a prediction bound) of the last {WINDOW} saved runs, when >= {MIN_RUNS} hold the benchmark; else "
                f"Welch's t-test, one-sided, alpha {ALPHA}, when both sides have >= {MIN_REPEATS} repetitions; else "
                "the threshold alone"
            ),
            "failed": self.failed,
            "notes": list(self.notes),
            "verdicts": [asdict(v) | {"label": v.label()} for v in self.verdicts],
        }


def evaluate(
    records: Sequence[Record],
    baseline: Baseline | None,
    gate: GateSettings,
    history: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> GateOutcome | None:
    """Compare the session's records with the baseline. None when there was nothing to compare against.
    ``history``: per test id, its entries in the saved runs of this machine fingerprint, oldest first."""
    if baseline is None:
        return None
    outcome = GateOutcome([], gate, baseline.path)
    unmatched: list[tuple[str, str]] = []  # (test, why its quality was not compared)
    if not baseline.exists:
        outcome.notes.append(f"no baseline at {baseline.path}: nothing compared (save one with --energy-save-baseline)")
    for record in records:
        base = baseline.benchmarks.get(record.nodeid)
        if base is None:
            reason = "not in the baseline file" if baseline.exists else "no baseline file"
            fails = gate.require_baseline and baseline.exists
            outcome.verdicts.append(Verdict(record.nodeid, NO_BASELINE, reason=reason, fails=fails))
            continue
        past = (history or {}).get(record.nodeid, ())
        current = benchmark_entry(record)
        outcome.verdicts.append(compare_entry(record.nodeid, current, base, gate, past))
        quality, problem = compare_quality(record.nodeid, current, base, gate)
        outcome.verdicts += [quality] if quality is not None else []
        unmatched += [(record.nodeid, problem)] if problem is not None else []
    add_quality_warnings(outcome, unmatched)
    _add_notes(outcome, records, baseline)
    return outcome


MAX_QUALITY_WARNINGS = 5  # a baseline saved before quality was kept would otherwise warn once per benchmark


def add_quality_warnings(outcome: GateOutcome, unmatched: Sequence[tuple[str, str]]) -> None:
    """A warning line per benchmark whose quality could not be compared (the first few, then how many more)."""
    for test, problem in unmatched[:MAX_QUALITY_WARNINGS]:
        outcome.notes.append(f"warning: quality of {test} not compared, not a failure: {problem}")
    if len(unmatched) > MAX_QUALITY_WARNINGS:
        more = len(unmatched) - MAX_QUALITY_WARNINGS
        outcome.notes.append(f"warning: and {more} more benchmark(s) whose quality was not compared")


def _add_notes(outcome: GateOutcome, records: Sequence[Record], baseline: Baseline) -> None:
    ran = {r.nodeid for r in records}
    absent = [test for test in baseline.benchmarks if test not in ran]
    if absent:
        outcome.notes.append(f"{len(absent)} benchmark(s) of the baseline did not run: {', '.join(absent[:5])}")
    single = [v for v in outcome.verdicts if v.kind != QUALITY and v.metric is not None and not v.noise_estimate]
    if single:
        outcome.notes.append(
            f"{len(single)} verdict(s) have no noise estimate (the threshold alone decided): run with "
            f"--energy-repeat {MIN_REPEATS} or more for both the baseline and this session, or keep {MIN_RUNS}+ "
            "saved runs (--energy-autosave) and compare with --energy-compare"
        )
    if outcome.count(NO_BASELINE) and baseline.exists and not outcome.gate.require_baseline:
        outcome.notes.append("benchmarks missing from the baseline are warnings (--energy-require-baseline: errors)")


def write_gate_file(outcome: GateOutcome, session_dir: Path) -> Path:
    from pytest_aienergyscore.records.atomic import write_text

    return write_text(session_dir / GATE_FILE, json.dumps(outcome.to_dict(), indent=2, default=str) + "\n")
