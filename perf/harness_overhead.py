"""Does the energy_star harness slow the model down? Metered phases versus a bare loop of the same generate calls.

Same model (SmolLM2-135M-Instruct, offline), same prompts, same pre-tokenised inputs, same generation arguments:
the bare loop calls ``model.generate`` for the prefill pass and the generation pass; the harness runs
``run_benchmark`` (windows, progress, counting) and we add up the durations of its metered windows. Rounds are
interleaved so machine noise hits both alike; the medians are compared, in wall time and in this process's CPU
time (the estimate meter's joules divided by its watts per core), which a busy machine disturbs less.
Target: ratio <= 1.02 (CPU time; the wall-time ratio is printed beside it).

    python perf/harness_overhead.py [--samples 20] [--rounds 5] [--limit 1.02]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=float, default=1.02)
    args = parser.parse_args()

    import tempfile

    import torch

    from pytest_aienergyscore.backends.base import BenchmarkRequest
    from pytest_aienergyscore.backends.pytorch.backend import PytorchBackend
    from pytest_aienergyscore.config.settings import Settings
    from pytest_aienergyscore.meters.estimate import process_cpu_seconds
    from pytest_aienergyscore.rules.datasets import load_samples
    from pytest_aienergyscore.rules.tasks import get_task
    from pytest_aienergyscore.session.energy_meter import EnergyRecorder
    from pytest_aienergyscore.session.energy_session import EnergySession
    from pytest_aienergyscore.session.runner import BackendCache, run_benchmark

    task = get_task("text_generation")
    model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    request = BenchmarkRequest(task=task, model=model, samples=args.samples, warmup=2, device="cpu")
    backend = PytorchBackend()
    cache = BackendCache(lambda name: backend)
    cache.get("pytorch", request.load_request())
    samples, _ = load_samples(task, None, args.samples)
    prepared = backend.preprocess(samples)
    impl = backend.impl
    prefill_kwargs = impl.generate_kwargs({}, "prefill")
    full_kwargs = impl.generate_kwargs({}, "generate")
    backend.warmup(prepared, 2, {})

    def bare() -> tuple[float, float]:
        start, cpu = time.perf_counter(), process_cpu_seconds()
        with torch.inference_mode():
            for inputs in prepared.inputs:
                impl.model.generate(**inputs, **prefill_kwargs)
            for inputs in prepared.inputs:
                impl.model.generate(**inputs, **full_kwargs)
        return time.perf_counter() - start, process_cpu_seconds() - cpu

    with tempfile.TemporaryDirectory() as tmp:
        session = EnergySession(Settings(meter="estimate", output_dir=Path(tmp)))

        def harness() -> tuple[float, float]:
            recorder = EnergyRecorder(session, "perf::harness")
            run_benchmark(recorder, "pytorch", BenchmarkRequest(**{**vars(request), "warmup": 0}), cache)
            prefill = next(p for p in recorder.phases if p.name == "prefill")
            decode = next(p for p in recorder.phases if p.name == "decode")
            wall = prefill.measurement.duration_s + float(decode.details["generate_s"])
            joules = prefill.measurement.joules() + float(decode.details["generate_j"])
            return wall, joules / session.settings.cpu_watts

        bare_runs, star_runs = [], []
        for round_number in range(args.rounds):  # alternate which goes first, so order effects cancel
            if round_number % 2:
                star_runs.append(harness())
                bare_runs.append(bare())
            else:
                bare_runs.append(bare())
                star_runs.append(harness())
    for i, label in ((0, "wall"), (1, "cpu")):
        b = statistics.median(r[i] for r in bare_runs)
        h = statistics.median(r[i] for r in star_runs)
        print(f"{label:4} bare loop {b:8.3f} s   energy_star metered {h:8.3f} s   ratio {h / b:.4f}")
    cpu_ratio = statistics.median(r[1] for r in star_runs) / statistics.median(r[1] for r in bare_runs)
    print(f"{args.samples} prompts, {args.rounds} interleaved rounds; limit {args.limit} on the CPU-time ratio")
    return 0 if cpu_ratio <= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
