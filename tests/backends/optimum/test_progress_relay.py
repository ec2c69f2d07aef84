"""The optimum worker's progress, relayed: the worker's channel writes one short line per event, the plugin's relay
reads whole lines and hands them to the runner's progress, and a real optimum-benchmark run of a tiny model
delivers every phase's start and samples that add up to the phase's total."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.backends.base import BenchmarkRequest, Progress
from pytest_aienergyscore.backends.optimum.launch import PROGRESS_FILE, ProgressRelay
from pytest_aienergyscore.backends.optimum.worker_work import ProgressChannel
from pytest_aienergyscore.config.settings import Settings
from pytest_aienergyscore.rules.tasks import TASKS
from pytest_aienergyscore.session.progress import ProgressReporter
from tests.support.optimum_env import MISSING, OPTIMUM_PYTHON
from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[3]
TINY_CACHE = REPO / ".cache" / "tiny-models"
SAMPLES = 6


class Events:
    """A StartPhase that records what it is told: (phase, total) starts, and the samples done per phase."""

    def __init__(self, forward: Any = None) -> None:
        self.starts: list[tuple[str, int]] = []
        self.done: list[tuple[str, int]] = []
        self.forward = forward

    def __call__(self, name: str, total: int) -> Progress:
        self.starts.append((name, total))
        shown = self.forward(name, total) if self.forward is not None else None

        def progress(n: int) -> None:
            self.done.append((name, n))
            if shown is not None:
                shown(n)

        return progress

    def samples(self, name: str) -> int:
        return sum(n for phase, n in self.done if phase == name)


# -- the worker's channel and the plugin's relay -------------------------------------------------------------------


def test_the_worker_writes_one_short_line_per_event(tmp_path: Path) -> None:
    channel = ProgressChannel(str(tmp_path / PROGRESS_FILE))
    channel.start("prefill", 1000)
    channel.done(1)
    channel.start("load_model", 0)
    assert (tmp_path / PROGRESS_FILE).read_text() == "start\tprefill\t1000\ndone\t1\nstart\tload_model\t0\n"


def test_a_worker_without_a_progress_file_or_with_a_broken_one_runs_on_silently(tmp_path: Path) -> None:
    ProgressChannel(None).done(1)
    ProgressChannel(str(tmp_path / "no-such-folder" / PROGRESS_FILE)).done(1)
    channel = ProgressChannel(str(tmp_path / PROGRESS_FILE))
    assert channel.fd is not None
    os.close(channel.fd)  # a write now fails: the channel stops, the benchmark does not
    channel.done(1)
    assert channel.fd is None


def test_the_relay_announces_the_start_maps_phase_names_and_adds_the_samples(tmp_path: Path) -> None:
    events = Events()
    relay = ProgressRelay(tmp_path / PROGRESS_FILE, events)
    relay.poll()  # nothing written yet
    assert events.starts == [("starting", 0)]
    (tmp_path / PROGRESS_FILE).write_text("start\tpreprocess_dataset\t3\ndone\t3\nstart\tforward\t3\ndone\t1\n")
    relay.poll()
    assert events.starts == [("starting", 0), ("preprocess", 3), ("forward", 3)]
    assert events.done == [("preprocess", 3), ("forward", 1)]


def test_the_relay_reads_only_whole_lines_and_skips_what_does_not_parse(tmp_path: Path) -> None:
    events, path = Events(), tmp_path / PROGRESS_FILE
    relay = ProgressRelay(path, events)
    with path.open("a") as worker:
        worker.write("start\tgenerate\t4\ndone\t1\ndo")  # the worker is in the middle of a line
        worker.flush()
        relay.poll()
        assert events.done == [("generate", 1)]
        worker.write("ne\t2\ndone\tmany\nsomething else\nstart\tx\n")
        worker.flush()
        relay.poll()
    assert events.done == [("generate", 1), ("generate", 2)]
    assert events.starts == [("starting", 0), ("generate", 4)]


# -- a real optimum-benchmark run -----------------------------------------------------------------------------------

LINE = re.compile(
    r"^\[energy\] tiny optimum [a-z_]+: (\d+/\d+ samples, \d+s elapsed, (about \d+s left|left unknown)|"
    r"(\d+ samples, )?\d+s elapsed)$"
)


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real run of energy_star for a tiny text generation model, its progress recorded and shown as CI lines."""
    pytest.importorskip("transformers")
    if not OPTIMUM_PYTHON.exists():
        pytest.skip(MISSING)
    from pytest_aienergyscore.backends.optimum.backend import OptimumBackend

    root = tmp_path_factory.mktemp("relay")
    model = build_tiny_model("text_generation", TINY_CACHE / "text_generation")
    data = root / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": f"Count the ships in harbour {i}."}) + "\n" for i in range(SAMPLES)))
    task = TASKS["text_generation"]
    request = BenchmarkRequest(task=task, model=str(model), dataset=str(data), samples=SAMPLES, warmup=1)
    backend = OptimumBackend()
    backend.load(request.load_request())
    stream = io.StringIO()
    reporter = ProgressReporter("tiny", stream=stream, interval=0.2)
    with reporter.series("optimum") as series:
        events = Events(series)
        result = backend.run_protocol(request, root / "run", Settings(optimum_python=OPTIMUM_PYTHON), progress=events)
    return {"events": events, "lines": stream.getvalue().splitlines(), "result": result, "run_dir": root / "run"}


@pytest.mark.optimum
def test_the_relay_delivers_each_phase_start_in_order_with_its_samples(relayed: dict[str, Any]) -> None:
    events = relayed["events"]
    assert events.starts == [
        ("starting", 0),
        ("load_dataset", 0),
        ("preprocess", SAMPLES),
        ("load_model", 0),
        ("warmup", 0),
        ("prefill", SAMPLES),
        ("generate", SAMPLES),
    ]


@pytest.mark.optimum
def test_the_relayed_samples_add_up_to_each_phases_samples(relayed: dict[str, Any]) -> None:
    events = relayed["events"]
    for phase in ("preprocess", "prefill", "generate"):
        assert events.samples(phase) == SAMPLES, phase
    assert [n for phase, n in events.done if phase == "prefill"] == [1] * SAMPLES  # one per sample, as they finish
    assert {phase for phase, _ in events.done} == {"preprocess", "prefill", "generate"}  # warm-up is not counted
    assert relayed["result"].counts["samples"] == SAMPLES


@pytest.mark.optimum
def test_the_relayed_progress_becomes_ci_log_lines(relayed: dict[str, Any]) -> None:
    lines = relayed["lines"]
    assert any(line.startswith("[energy] tiny optimum starting: ") for line in lines), lines  # the worker's start-up
    assert all(LINE.match(line) for line in lines), lines


@pytest.mark.optimum
def test_the_progress_file_is_not_an_attachment(relayed: dict[str, Any]) -> None:
    assert not any("progress" in name for name in relayed["result"].attachments)
