"""Progress of long phases, where people look: a bar on a real terminal, a line every 30 s in a CI log.

A benchmark of 1,000 queries runs for many minutes, and some CI systems kill a job after ten silent ones; a terminal
user wants to see that it moves. So each phase that runs the model reports its samples as they finish:

- on a real terminal, a tqdm bar for phases of ``BAR_MIN_SAMPLES`` or more (a shorter one is over before it helps);
- anywhere else (a CI log, a pipe), a line every ``AIENERGYSCORE_PROGRESS_INTERVAL`` seconds (30 by default) with
  the samples done, the time elapsed and the time left at the pace so far. The lines come from a daemon thread that
  waits on an event, so they keep coming when no sample finishes for minutes (one ``generate`` call over a big batch,
  or the optimum worker between two messages), and a phase over within the first interval prints nothing.

Both write to the process's real stderr (``sys.__stderr__``) with pytest's output capture suspended for the write
(``outside``, from the plugin): pytest's default capture redirects file descriptor 2 itself while a test runs, so
neither ``sys.stderr`` nor ``sys.__stderr__`` would reach the terminal or the CI log otherwise.

Metering: the thread sleeps on an event for a whole interval and wakes only to format and write one line, and the
bar redraws at most once a second, so neither adds measurable work to a metered window.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import IO, Any, Protocol

from pytest_aienergyscore.config.parsers import positive_float

INTERVAL_ENV = "AIENERGYSCORE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0
BAR_MIN_SAMPLES = 20  # a shorter phase is over before a bar says anything useful
PREFIX = "[energy]"

Clock = Callable[[], float]
Outside = Callable[[], AbstractContextManager[Any]]


class PhaseProgress(Protocol):
    """What the runner hands a backend as ``progress`` for one phase: called with samples done, closed after."""

    def __call__(self, n: int) -> None: ...

    def close(self) -> None: ...


def interval_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between two progress lines. A bad value must not fail a benchmark that is otherwise fine, so it
    falls back to the default with a one-line warning naming the variable and what it takes."""
    raw = environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        return positive_float(raw)
    except ValueError as err:
        warnings.warn(
            f"{INTERVAL_ENV}: invalid value {raw!r}; allowed: {err} (seconds); "
            f"using {DEFAULT_INTERVAL_S:g} s between progress lines",
            stacklevel=3,
        )
        return DEFAULT_INTERVAL_S


def duration(seconds: float) -> str:
    """``42s``, ``2m10s``, ``1h05m``: short enough for a log line, exact enough to plan a coffee."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole // 60 % 60:02d}m"


def progress_line(label: str, done: int, total: int, elapsed: float) -> str:
    """One CI log line. Time left assumes the pace so far holds (elapsed x remaining / done); before the first
    sample there is no pace, and a phase without a known total (the optimum worker loading a model) has no end."""
    head = f"{PREFIX} {label}: "
    if total <= 0:
        counted = f"{done} samples, " if done else ""
        return f"{head}{counted}{duration(elapsed)} elapsed"
    left = f"about {duration(elapsed * (total - done) / done)} left" if done > 0 else "left unknown"
    return f"{head}{done}/{total} samples, {duration(elapsed)} elapsed, {left}"


class _Shielded:
    """A file that writes past pytest's capture (for tqdm and the lines): each write is one short suspension of it."""

    def __init__(self, stream: IO[str], outside: Outside) -> None:
        self.stream, self.outside = stream, outside

    def write(self, text: str) -> int:
        with self.outside():
            written = self.stream.write(text)
            self.stream.flush()
        return written

    def flush(self) -> None:
        """Every write is flushed already (inside the suspension, where the real stream is reachable)."""


class LineProgress:
    """A phase's progress as a line every ``interval`` seconds, written by a daemon thread until :meth:`close`.

    Why a thread: the backend calls ``progress(n)`` only when samples finish, and a CI log must hear from a run even
    when none does for minutes. The thread waits on an event (no polling), so it costs one wake-up per interval and
    never runs inside a metered window for more than the formatting and writing of one line.
    """

    def __init__(self, label: str, total: int, stream: IO[str], outside: Outside, interval: float, clock: Clock):
        self.label, self.total, self.out = label, total, _Shielded(stream, outside)
        self.interval, self.clock = interval, clock
        self.done = 0
        self.started = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"aienergyscore progress: {label}", daemon=True)
        self._thread.start()

    def __call__(self, n: int) -> None:
        self.done += n

    def line(self) -> str:
        return progress_line(self.label, self.done, self.total, self.clock() - self.started)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._write(self.line() + "\n"):
                return

    def _write(self, text: str) -> bool:
        """Write one line; a stream that is gone (a closed pipe) ends the lines, never the benchmark."""
        try:
            self.out.write(text)
        except (OSError, ValueError):
            return False
        return True

    def close(self) -> None:
        """Stop the thread and wait for it: no thread outlives its phase."""
        self._stop.set()
        self._thread.join()


class BarProgress:
    """A phase's progress as a tqdm bar on the real terminal (left on screen only while the phase runs)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class QuietProgress:
    """Nothing to show: a short phase on a terminal, or no stderr at all."""

    def __call__(self, n: int) -> None:
        """Samples are not counted where nothing shows them."""

    def close(self) -> None:
        """Nothing was started."""


class ProgressReporter:
    """Opens each phase's progress the same way for one benchmark: where it goes, how often, by which clock.

    ``stream`` defaults to ``sys.__stderr__``, ``outside`` to no suspension, ``interval`` to the environment's;
    tests pass a clock, a stream and a short interval. Whether the stream is a terminal is asked once, outside the
    capture, so that pytest's redirection of stderr does not hide the terminal.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: IO[str] | None = None,
        outside: Outside = contextlib.nullcontext,
        interval: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = sys.__stderr__ if stream is None else stream
        self.outside = outside
        self.interval = interval_from_env() if interval is None else interval
        self.clock = clock
        self.tty = self._is_tty()

    def _is_tty(self) -> bool:
        if self.stream is None:
            return False
        try:
            with self.outside():
                return bool(self.stream.isatty())
        except (OSError, ValueError):
            return False

    def open(self, name: str, total: int) -> PhaseProgress:
        """The progress of phase ``name`` over ``total`` samples (0: not known); close it when the phase ends."""
        label = f"{self.label} {name}"
        if self.stream is None:
            return QuietProgress()
        if not self.tty:
            return LineProgress(label, total, self.stream, self.outside, self.interval, self.clock)
        if total < BAR_MIN_SAMPLES:
            return QuietProgress()
        try:
            from tqdm import tqdm
        except ImportError:  # no bar without tqdm: the lines do the job on a terminal too
            return LineProgress(label, total, self.stream, self.outside, self.interval, self.clock)
        shielded = _Shielded(self.stream, self.outside)
        return BarProgress(tqdm(total=total, desc=label, file=shielded, leave=False, mininterval=1.0, unit="sample"))

    @contextlib.contextmanager
    def phase(self, name: str, total: int) -> Iterator[PhaseProgress]:
        """``with reporter.phase("prefill", n) as progress:`` around the metered window, so that the thread starts
        before the window opens and is gone once it has closed."""
        progress = self.open(name, total)
        try:
            yield progress
        finally:
            progress.close()

    @contextlib.contextmanager
    def series(self, prefix: str) -> Iterator[PhaseSeries]:
        """Phases that another process runs and announces one after the other (the optimum worker)."""
        series = PhaseSeries(self, prefix)
        try:
            yield series
        finally:
            series.close()


class PhaseSeries:
    """The ``progress`` a backend that runs the whole protocol itself receives: ``series(phase, total)`` as each
    phase starts returns that phase's progress; a start closes the phase before it, and :meth:`close` the last."""

    def __init__(self, reporter: ProgressReporter, prefix: str) -> None:
        self.reporter, self.prefix = reporter, prefix
        self.current: PhaseProgress | None = None

    def __call__(self, name: str, total: int) -> PhaseProgress:
        self.close()
        self.current = self.reporter.open(f"{self.prefix} {name}", total)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
