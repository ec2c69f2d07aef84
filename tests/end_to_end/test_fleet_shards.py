"""A fleet sweep without a cluster: 12 benchmarks run as 4 shards in 4 processes started at once, each told its
index by ``JOB_COMPLETION_INDEX`` as a Kubernetes Indexed Job tells its pods, then merged and compared with a serial
run of the same project: the same benchmarks measured, each exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_aienergyscore.records.store import RECORDS_FILE, load_records
from tests.support.tiny_models import build_tiny_model

pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
TINY_CACHE = REPO / ".cache" / "tiny-models"
STAR_TASKS = ("text_generation", "text_classification", "question_answering", "sentence_similarity")
SHARDS = 4
RUN_ID = "sweep-1"

SWEEP = """
import json, pathlib, pytest

CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())

# model and task as parameters, as benchmark files write them: the shards read both to weigh each benchmark
@pytest.mark.parametrize("repeat", [1, 2])
@pytest.mark.parametrize(("task", "model"), [pytest.param(t, CASES[t]["model"], id=t) for t in sorted(CASES)])
def test_star(energy_star, task, model, repeat):
    energy_star(task=task, model=model, dataset=CASES[task]["dataset"], max_new_tokens=2)

@pytest.mark.energy(model="custom-loop", task="text_classification")
@pytest.mark.parametrize("size", [10_000, 20_000, 40_000, 80_000])
def test_custom(energy_meter, size):
    with energy_meter.measure("forward", samples=1):
        sum(i * i for i in range(size))
"""

ROWS = {
    "text_generation": {"text": "Tell me about the weather in spring."},
    "text_classification": {"text": "A lighthouse keeper counts ships at night."},
    "question_answering": {"question": "Who counts ships?", "context": "The keeper counts ships."},
    "sentence_similarity": {"sentence1": "Ships at night.", "sentence2": "A keeper counts ships."},
}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A project with 12 benchmarks: 8 energy_star runs of tiny models built offline, 4 custom energy_meter ones."""
    cases = {}
    for task in STAR_TASKS:
        dataset = tmp_path / f"{task}.jsonl"
        dataset.write_text(json.dumps(ROWS[task]) + "\n")
        cases[task] = {"model": str(build_tiny_model(task, TINY_CACHE / task)), "dataset": str(dataset)}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "test_sweep.py").write_text(SWEEP)
    return tmp_path


def _pytest(project: Path, *args: str, index: int | None = None) -> subprocess.Popen[str]:
    """One pytest process as a pod would start it: its index in JOB_COMPLETION_INDEX, nothing else told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIENERGYSCORE_", "SLURM_", "JOB_COMPLETION"))}
    env.update({"AIENERGYSCORE_METER": "estimate", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    common = ["-p", "no:cacheprovider", "-q", "--backend=pytorch", "--energy-warmup=0", "--energy-samples=1"]
    command = [sys.executable, "-m", "pytest", *common, *args]
    return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen[str]) -> str:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    return out


def _tests_in(session: Path) -> list[str]:
    return [record.nodeid for record in load_records(session / RECORDS_FILE)]


def test_four_shards_run_every_benchmark_of_a_serial_run_exactly_once(sweep: Path) -> None:
    shard_args = (f"--energy-shard=auto/{SHARDS}", f"--energy-run-id={RUN_ID}", "--energy-output=fleet")
    processes = [_pytest(sweep, *shard_args, index=index) for index in range(SHARDS)]
    serial = _pytest(sweep, "--energy-output=serial")
    outputs = [_finish(p) for p in processes]
    _finish(serial)
    [serial_session] = (sweep / "serial").iterdir()
    serial_tests = _tests_in(serial_session)

    run = sweep / "fleet" / RUN_ID
    assert sorted(p.name for p in run.iterdir()) == [f"shard-{i}-of-{SHARDS}" for i in range(SHARDS)]
    per_shard = [_tests_in(run / f"shard-{i}-of-{SHARDS}") for i in range(SHARDS)]
    sharded_tests = [nodeid for tests in per_shard for nodeid in tests]
    assert len(serial_tests) == 12
    assert sorted(sharded_tests) == sorted(serial_tests)  # the same set, and none twice

    partitions = set()
    for index, tests in enumerate(per_shard):
        state = json.loads((run / f"shard-{index}-of-{SHARDS}" / "shard.json").read_text())
        partitions.add(state["partition"])
        assert (state["run_id"], state["index"], state["count"]) == (RUN_ID, index, SHARDS)
        assert (state["finished"], state["exitstatus"]) == (True, 0)
        assert sorted(state["assigned"]) == sorted(tests)
        assert f"energy shard {index}/{SHARDS} (index {index} from JOB_COMPLETION_INDEX)" in outputs[index]
    assert len(partitions) == 1  # every process computed the same partition

    merged = subprocess.run(
        [sys.executable, "-m", "pytest_aienergyscore", "merge", str(run), "-o", str(sweep / "merged")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert merged.returncode == 0, merged.stderr
    summary = json.loads((sweep / "merged" / "summary.json").read_text())
    assert sorted(row["test"] for row in summary["benchmarks"]) == sorted(serial_tests)
