"""Starting the worker in the optimum environment, relaying its progress, stopping it with pytest, and its failure in
one line.

The worker (:mod:`.worker`) runs in the other python, in its own process group, so that a Ctrl-C or a SIGTERM to
pytest stops it and every process optimum-benchmark started instead of leaving them on the GPU. Our own reading of
NVML's counter is taken around it, to cross-check codecarbon's GPU figure; when it fails, the exception
optimum-benchmark raised (or the last meaningful line of its log) becomes the test's one-line failure. While it runs,
the lines it appends to its progress file (a phase started, samples done) are read about once a second and handed to
the runner's progress, so that a run of 1,000 samples shows where it is on a terminal and in a CI log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends.base import BackendError, Progress, StartPhase
from pytest_aienergyscore.backends.optimum.environment import SETUP_HINT, worker_env
from pytest_aienergyscore.backends.optimum.experiment import config_yaml
from pytest_aienergyscore.backends.optimum.gpu import counter_span, read_counters_or_why
from pytest_aienergyscore.backends.optimum.reading import LOG_FILE, LOG_TAIL_BYTES, read_json, tail
from pytest_aienergyscore.backends.optimum.results import CODECARBON_PHASES, WorkerRun

WORKER_MODULE = "pytest_aienergyscore.backends.optimum.worker"
_EXIT_BROKEN_ENVIRONMENT = 3  # worker.EXIT_BROKEN_ENVIRONMENT, repeated: the worker module is not imported
PROGRESS_FILE = "worker_progress.txt"  # the worker's progress lines (worker_work.ProgressChannel)
RELAY_POLL_S = 1.0  # how often the progress file is read while the worker runs
# energy_star's window names that differ from the runner's phase names; the others (prefill, generate, ...) agree.
RELAYED_NAMES = {"preprocess_dataset": "preprocess"}


def run_worker(
    python: Path,
    config: dict[str, Any],
    run_dir: Path,
    *,
    local_dataset: bool,
    progress: StartPhase | None = None,
    keep_outputs: dict[str, Any] | None = None,
) -> WorkerRun:
    """Start the worker, wait for it while relaying its progress, and read what it wrote; a failure is one line, the
    log stays on disk. ``keep_outputs`` (what answers to keep) goes into the worker's request only, never into the
    configuration file written to rerun the scenario without the plugin."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env, offline = worker_env(run_dir, local_dataset)
    request = {**config, "run_dir": str(run_dir), "block_network": offline}
    if keep_outputs:
        request["keep_outputs"] = keep_outputs
    relay = None
    if progress is not None:
        relay = ProgressRelay(run_dir / PROGRESS_FILE, progress)
        request["progress_file"] = str(relay.path)
    (run_dir / "optimum_request.json").write_text(json.dumps(request, indent=2) + "\n", encoding="utf-8")
    (run_dir / "energy_star_config.yaml").write_text(config_yaml(config), encoding="utf-8")
    command = [str(python), "-s", "-m", WORKER_MODULE, str(run_dir / "optimum_request.json")]
    before = read_counters_or_why() if config["backend"].get("device") == "cuda" else None
    started = time.perf_counter()
    with (run_dir / LOG_FILE).open("wb") as log:
        returncode = run_in_own_group(command, run_dir, env, log, relay.poll if relay else None)
    wall = time.perf_counter() - started
    span = counter_span(before, read_counters_or_why()) if before is not None else None
    if returncode != 0:
        raise worker_failure(returncode, run_dir, python)
    report = read_json(run_dir / "benchmark_report.json")
    if not report:
        raise BackendError(f"optimum-benchmark wrote no report (log: {run_dir / LOG_FILE})")
    codecarbon = {name: read_json(run_dir / f"{name}_codecarbon.json") for name in CODECARBON_PHASES}
    codecarbon = {name: data for name, data in codecarbon.items() if data}
    return WorkerRun(report, codecarbon, read_json(run_dir / "worker_result.json"), wall, span)


class ProgressRelay:
    """Reads the worker's progress lines as they come and hands them to the runner's progress.

    A ``start`` line opens that phase's progress (``progress(name, samples)``), ``done`` lines add to it. The relay
    announces a ``starting`` phase of its own first, so that a CI log hears from a worker that is still importing
    torch. Only whole lines are read (the worker may be writing one); a line that does not parse is skipped.
    """

    def __init__(self, path: Path, progress: StartPhase) -> None:
        self.path, self.progress = path, progress
        self.offset = 0
        self.pending = b""
        self.current: Progress | None = progress("starting", 0)

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:  # not written yet
            return
        self.offset += len(data)
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            self.handle(line.decode("utf-8", errors="replace"))

    def handle(self, line: str) -> None:
        kind, *fields = line.split("\t")
        try:
            if kind == "start" and len(fields) == 2:
                self.current = self.progress(RELAYED_NAMES.get(fields[0], fields[0]), int(fields[1]))
            elif kind == "done" and len(fields) == 1 and self.current is not None:
                self.current(int(fields[0]))
        except ValueError:
            return


WORKER_STOP_GRACE_S = 10.0  # after SIGTERM, the worker's process group gets this long to exit before SIGKILL


class _Terminated(BaseException):
    """SIGTERM reached pytest while the worker ran: unwinds like Ctrl-C, so that the worker is stopped first."""


def run_in_own_group(
    command: list[str], cwd: Path, env: dict[str, str], log: Any, poll: Callable[[], None] | None = None
) -> int:
    """Run the worker in its own session (process group) and stop that whole group when pytest is stopped.

    Why: a Ctrl-C at the terminal then reaches pytest alone, which stops the worker and every process it started
    (optimum-benchmark may run the benchmark in a child) with SIGTERM, then SIGKILL; SIGTERM to pytest, which by
    default ends pytest at once and leaves the worker running on the GPU, stops the worker the same way and then ends
    pytest as it would have. ``poll`` is called about every RELAY_POLL_S while it runs, and once after. Returns the
    worker's exit status.
    """
    output = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": subprocess.STDOUT}
    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True, **output)
    previous = _raise_on_sigterm()
    try:
        return _wait(process, poll)
    except _Terminated:
        _stop_group(process)
        _restore_sigterm(previous)
        previous = None
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the handler pytest had: by default, pytest ends here
        raise BackendError("optimum-benchmark was stopped: pytest received SIGTERM") from None
    except BaseException:  # Ctrl-C, or anything else that ends the wait: the worker must not outlive it
        _stop_group(process)
        raise
    finally:
        _restore_sigterm(previous)


def _wait(process: subprocess.Popen[bytes], poll: Callable[[], None] | None) -> int:
    """The worker's exit status, calling ``poll`` between waits of RELAY_POLL_S and once it has exited."""
    if poll is None:
        return process.wait()
    while True:
        try:
            returncode = process.wait(timeout=RELAY_POLL_S)
        except subprocess.TimeoutExpired:
            poll()
            continue
        poll()  # the lines written since the last read
        return returncode


def _raise_on_sigterm() -> Any:
    """Make SIGTERM raise _Terminated while the worker runs; the handler it replaced, or None when it was left alone
    (not the main thread, SIGTERM ignored, or a handler Python did not set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        return None

    def terminated(signum: int, frame: Any) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, terminated)
    return previous


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's whole process group, up to WORKER_STOP_GRACE_S for it to go, then SIGKILL to what is
    left; a second Ctrl-C meanwhile skips to the SIGKILL."""
    group = process.pid  # its own session: the group id is its pid
    try:
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_GRACE_S
        while _group_alive(group, process) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _signal_group(group, signal.SIGKILL)
        process.wait()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
        os.killpg(group, signum)


def _group_alive(group: int, process: subprocess.Popen[bytes]) -> bool:
    process.poll()  # reap the worker itself once it exits, so that it does not count as alive
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def worker_failure(returncode: int, run_dir: Path, python: Path) -> BackendError:
    """One line for the test's failure: the exception optimum-benchmark raised, and where its whole log is."""
    log_path = run_dir / LOG_FILE
    error = read_json(run_dir / "worker_error.json")
    detail = f"{error.get('type')}: {first_line(str(error.get('message', '')))}" if error else ""
    if returncode == _EXIT_BROKEN_ENVIRONMENT:
        return BackendError(f"optimum environment {python} is broken ({detail}); {SETUP_HINT}")
    if not detail:
        detail = last_meaningful_line(tail(log_path, LOG_TAIL_BYTES)) or "no error message"
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return BackendError(f"optimum-benchmark was killed by {name}{hint}: {detail} (log: {log_path})")
    return BackendError(f"optimum-benchmark failed: {detail} (log: {log_path})")


_NOISE = re.compile(
    r"^(Traceback |\s+File |\s+\^|\s+~|\s*$|During handling|The above exception|Set the environment variable HYDRA|"
    r"optimum_worker: )"
)


def last_meaningful_line(log: str) -> str:
    """The last line of a log that is not traceback framing or a hint (usually the final exception line)."""
    for line in reversed(log.splitlines()):
        if not _NOISE.match(line):
            return first_line(line)
    return ""


def first_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
