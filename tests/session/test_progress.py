"""Progress where people look: the CI log line, its interval and arithmetic, the terminal bar, and a real pytest run
whose progress lines reach stderr past pytest's output capture."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_aienergyscore.session.progress import (
    BAR_MIN_SAMPLES,
    DEFAULT_INTERVAL_S,
    INTERVAL_ENV,
    BarProgress,
    LineProgress,
    ProgressReporter,
    QuietProgress,
    duration,
    interval_from_env,
    progress_line,
)
from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
TINY_CACHE = REPO / ".cache" / "tiny-models"
SHORT = 0.05  # seconds between lines in these tests


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Capture:
    """Stands in for pytest's capture manager: counts suspensions and says whether one is in force."""

    def __init__(self) -> None:
        self.suspended = False
        self.suspensions = 0

    @contextlib.contextmanager
    def outside(self) -> Iterator[None]:
        self.suspended, self.suspensions = True, self.suspensions + 1
        try:
            yield
        finally:
            self.suspended = False


def _wait_for_lines(stream: io.StringIO, count: int, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = stream.getvalue().splitlines()
        if len(lines) >= count:
            return lines
        time.sleep(SHORT / 5)
    raise AssertionError(f"fewer than {count} lines in {timeout} s: {stream.getvalue()!r}")


def _progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aienergyscore progress")]


# -- the line and its arithmetic -----------------------------------------------------------------------------------


def test_the_line_says_samples_done_elapsed_and_time_left_at_the_pace_so_far() -> None:
    line = progress_line("SmolLM2-135M-Instruct decode", 340, 1000, 130.0)
    assert line == "[energy] SmolLM2-135M-Instruct decode: 340/1000 samples, 2m10s elapsed, about 4m12s left"


def test_time_left_is_elapsed_times_remaining_over_done() -> None:
    assert progress_line("m forward", 1, 4, 10.0).endswith("about 30s left")  # 10 s x 3 / 1
    assert progress_line("m forward", 3, 4, 30.0).endswith("about 10s left")  # 30 s x 1 / 3
    assert progress_line("m forward", 4, 4, 30.0).endswith("about 0s left")


def test_time_left_is_unknown_before_the_first_sample() -> None:
    assert progress_line("m prefill", 0, 1000, 45.0) == "[energy] m prefill: 0/1000 samples, 45s elapsed, left unknown"


def test_a_phase_without_a_sample_count_says_only_how_long_it_has_run() -> None:
    assert progress_line("m optimum load_model", 0, 0, 75.0) == "[energy] m optimum load_model: 1m15s elapsed"
    assert progress_line("m optimum x", 3, 0, 5.0) == "[energy] m optimum x: 3 samples, 5s elapsed"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42.0, "42s"), (59.6, "1m00s"), (130.0, "2m10s"), (3900.0, "1h05m")]
)
def test_durations_read_as_seconds_minutes_or_hours(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# -- the interval ----------------------------------------------------------------------------------------------------


def test_the_interval_comes_from_the_environment_and_defaults_to_30_seconds() -> None:
    assert interval_from_env({}) == DEFAULT_INTERVAL_S == 30.0
    assert interval_from_env({INTERVAL_ENV: " "}) == 30.0
    assert interval_from_env({INTERVAL_ENV: "2.5"}) == 2.5


@pytest.mark.parametrize("bad", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_interval_falls_back_to_the_default_with_a_one_line_warning_naming_it(bad: str) -> None:
    with pytest.warns(UserWarning) as caught:
        assert interval_from_env({INTERVAL_ENV: bad}) == 30.0
    [warning] = caught
    message = str(warning.message)
    assert message == (
        f"{INTERVAL_ENV}: invalid value {bad!r}; allowed: a positive number (seconds); "
        "using 30 s between progress lines"
    )


# -- lines from a thread -----------------------------------------------------------------------------------------


def test_a_line_comes_every_interval_even_when_no_sample_finishes() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = LineProgress("m generate", 8, stream, contextlib.nullcontext, SHORT, clock)
    try:
        clock.now += 65.0
        first = _wait_for_lines(stream, 1)[0]
        progress(2)
        clock.now += 5.0
        lines = _wait_for_lines(stream, len(stream.getvalue().splitlines()) + 2)
    finally:
        progress.close()
    assert first == "[energy] m generate: 0/8 samples, 1m05s elapsed, left unknown"
    assert lines[-1] == "[energy] m generate: 2/8 samples, 1m10s elapsed, about 3m30s left"  # 70 s x 6 / 2


def test_a_phase_that_ends_within_the_first_interval_prints_nothing_and_closes_at_once() -> None:
    stream = io.StringIO()
    started = time.monotonic()
    progress = LineProgress("m forward", 4, stream, contextlib.nullcontext, 30.0, time.monotonic)
    progress(4)
    progress.close()
    assert stream.getvalue() == ""
    assert time.monotonic() - started < 5.0  # the thread waits on an event, not a 30 s sleep


def test_no_progress_thread_is_left_after_close() -> None:
    before = _progress_threads()
    progress = LineProgress("m prefill", 4, io.StringIO(), contextlib.nullcontext, SHORT, time.monotonic)
    assert len(_progress_threads()) == len(before) + 1
    assert all(t.daemon for t in _progress_threads())  # never keeps a finished pytest alive
    progress.close()
    assert _progress_threads() == before


def test_each_line_is_written_with_pytests_capture_suspended() -> None:
    capture, seen = Capture(), []

    class Watched(io.StringIO):
        def write(self, text: str) -> int:
            seen.append(capture.suspended)
            return super().write(text)

    stream = Watched()
    progress = LineProgress("m call", 4, stream, capture.outside, SHORT, time.monotonic)
    try:
        _wait_for_lines(stream, 2)
    finally:
        progress.close()
    assert seen and all(seen)


def test_a_stream_that_is_gone_ends_the_lines_not_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    stream = io.StringIO()
    stream.close()
    progress = LineProgress("m call", 4, stream, contextlib.nullcontext, SHORT, time.monotonic)
    progress._thread.join(timeout=5.0)  # it stops by itself after the first write fails
    assert not progress._thread.is_alive() and raised == []
    progress(1)  # the phase goes on
    progress.close()


# -- which display: terminal or not -----------------------------------------------------------------------------


def test_without_a_terminal_every_phase_gets_lines_whatever_its_size() -> None:
    reporter = ProgressReporter("m", stream=io.StringIO(), interval=SHORT)
    assert not reporter.tty
    for total in (1, BAR_MIN_SAMPLES, 1000):
        with reporter.phase("forward", total) as progress:
            assert isinstance(progress, LineProgress) and progress.label == "m forward" and progress.total == total


def test_a_terminal_gets_a_bar_for_long_phases_and_nothing_for_short_ones() -> None:
    pytest.importorskip("tqdm")
    capture, stream = Capture(), Terminal()
    reporter = ProgressReporter("m", stream=stream, outside=capture.outside, interval=SHORT)
    assert reporter.tty
    with reporter.phase("prefill", BAR_MIN_SAMPLES - 1) as short:
        assert isinstance(short, QuietProgress)
    with reporter.phase("prefill", BAR_MIN_SAMPLES) as long:
        assert isinstance(long, BarProgress)
        long(BAR_MIN_SAMPLES)
    assert f"\rm prefill:   0%|          | 0/{BAR_MIN_SAMPLES} [" in stream.getvalue()  # tqdm's bar, redrawn in place
    assert capture.suspensions >= 2  # the terminal check and each of the bar's writes: past pytest's capture


def test_the_terminal_is_recognised_with_pytests_capture_suspended() -> None:
    capture = Capture()

    class CapturedTerminal(io.StringIO):
        def isatty(self) -> bool:  # while pytest captures, descriptor 2 is a file, not the terminal
            return capture.suspended

    assert ProgressReporter("m", stream=CapturedTerminal(), outside=capture.outside).tty
    assert not ProgressReporter("m", stream=CapturedTerminal()).tty


def test_a_terminal_without_tqdm_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    reporter = ProgressReporter("m", stream=Terminal(), interval=SHORT)
    with reporter.phase("generate", 1000) as progress:
        assert isinstance(progress, LineProgress)


def test_no_stderr_at_all_means_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "__stderr__", None)
    with ProgressReporter("m", interval=SHORT).phase("forward", 1000) as progress:
        assert isinstance(progress, QuietProgress)


def test_a_series_closes_each_phase_when_the_next_starts_and_the_last_at_the_end() -> None:
    before = _progress_threads()
    reporter = ProgressReporter("tiny", stream=io.StringIO(), interval=30.0)
    with reporter.series("optimum") as series:
        first = series("prefill", 4)
        assert isinstance(first, LineProgress) and first.label == "tiny optimum prefill"
        second = series("generate", 4)
        assert not first._thread.is_alive() and second._thread.is_alive()
    assert not second._thread.is_alive() and _progress_threads() == before


# -- a real run, no terminal: the lines reach stderr past pytest's capture --------------------------------------

BENCHMARK = """
def test_generation(energy_star):
    energy_star(task="text_generation", model={model!r}, dataset={dataset!r}, samples=8)
"""
LINE = re.compile(
    r"^\[energy\] text_generation (prefill|generate): \d/8 samples, \d+s elapsed, (about \d+s left|left unknown)$"
)


def test_a_pytest_run_without_a_terminal_prints_progress_lines_on_stderr(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    model = build_tiny_model("text_generation", TINY_CACHE / "text_generation")
    data = bench.path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": f"Count the ships in harbour number {i}."}) + "\n" for i in range(8)))
    bench.makepyfile(test_bench=BENCHMARK.format(model=str(model), dataset=str(data)))
    monkeypatch.setenv(INTERVAL_ENV, "0.005")
    # pytest's default capture is on (no -s): the lines must get past it; stderr is a pipe here, not a terminal
    result = bench.runpytest_subprocess("-p", "no:cacheprovider", "--backend=pytorch", "--energy-warmup=1")
    result.assert_outcomes(passed=1)
    lines = [line for line in result.errlines if line.startswith("[energy] ")]
    assert lines, result.errlines
    assert all(LINE.match(line) for line in lines), lines
    assert not any(line.startswith("[energy] ") for line in result.outlines)
