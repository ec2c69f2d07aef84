"""Runs optimum-benchmark's ``energy_star`` scenario once, inside optimum-benchmark's own environment.

    python -m pytest_aienergyscore.backends.optimum.worker REQUEST.json

optimum-benchmark 0.6.0 needs ``transformers<5`` and codecarbon, which cannot live beside the pytorch backend's stack,
so the plugin (:mod:`.backend`) writes a request, starts this module with that environment's python, and reads back
the files it leaves in the run folder. This module therefore imports only the standard library at module level and
optimum_benchmark (with what its environment has) inside :func:`main`; it must never import the rest of the plugin.

What it changes in optimum-benchmark, and why:
- codecarbon's *online* tracker is made to fail at construction, so optimum-benchmark falls back to its offline
  tracker: the online one looks up the machine's location over HTTP (geo-IP services, cloud metadata addresses)
  at the first phase, which is both a network call and a delay inside a metered window;
- the inline launcher runs the scenario in this process: the process launcher's parent busy-waits on a core for the
  whole run, which on a small machine slows the work and is counted in codecarbon's machine-wide CPU figure;
- the memory tracker stays off: it starts a process inside every energy window;
- the preprocessed dataset is counted (samples, input tokens) after its window closes, so counts come from the
  tokenizer optimum-benchmark used, at no cost to any metered phase;
- the work of each metered phase is counted as it happens (:mod:`.worker_work`): samples, generate calls
  and the new tokens each produced, model forward calls, images and scheduler steps; a configuration says what was
  asked, not what ran, and the parity tests compare these counts with the pytorch backend's;
- when the plugin asks (``keep_outputs``), each metered pass's output is kept by reference (:mod:`.worker_outputs`)
  and made readable once the scenario has ended, into ``outputs.jsonl``, so that quality is scored on the very
  samples that were metered;
- each phase's start and its samples as they finish are relayed to the plugin's progress (a bar, or CI log lines)
  through the request's ``progress_file``: one short unbuffered line per event, the only thing the relay does
  inside a metered window.

Files written into the run folder (the current directory is set to it, because codecarbon writes its
``<phase>_codecarbon.json`` files there): ``benchmark_config.json``, ``benchmark_report.json``, ``worker_result.json``
(counts, work per phase, codecarbon hardware, versions) and ``outputs.jsonl`` when asked, or ``worker_error.json``
(the exception, for a one-line failure message).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends.optimum.worker_gpu import (  # stdlib-only at module level, like this module
    gpu_facts,
    note_model_devices,
)
from pytest_aienergyscore.backends.optimum.worker_outputs import Keeper  # the same
from pytest_aienergyscore.backends.optimum.worker_work import ProgressChannel, Work  # the same

RESULT_FILE = "worker_result.json"
ERROR_FILE = "worker_error.json"
REPORT_FILE = "benchmark_report.json"
CONFIG_FILE = "benchmark_config.json"

# Exit statuses the plugin tells apart: a broken environment is a set-up problem, not a benchmark failure.
EXIT_FAILED = 1
EXIT_BAD_REQUEST = 2
EXIT_BROKEN_ENVIRONMENT = 3

_OFFLINE_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TQDM_DISABLE": "1",  # progress bars would fill the log with carriage returns
    "COUNTRY_ISO_CODE": "USA",  # read by optimum-benchmark's offline tracker; only affects the emissions figures
}

_blocked: list[str] = []


def _no_online_tracker(*args: Any, **kwargs: Any) -> Any:
    """Stands in for codecarbon's online EmissionsTracker, so that optimum-benchmark uses the offline one."""
    raise RuntimeError("codecarbon's online tracker is disabled by pytest-aienergyscore (it makes network lookups)")


def _block_network() -> None:
    """Refuse, and remember, every connection that leaves this machine (used when the Hub is offline)."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if not (host.startswith("127.") or host in ("::1", "localhost")):
                _blocked.append(f"{host}:{address[1]}")
                raise OSError(f"network access blocked by pytest-aienergyscore: {host}:{address[1]}")
        return original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _fail(status: int, kind: str, error: BaseException | str) -> int:
    """Leave the error where the plugin looks for it, and the traceback in the log."""
    message = str(error) if isinstance(error, BaseException) else error
    name = type(error).__name__ if isinstance(error, BaseException) else kind
    _write_json(Path(ERROR_FILE), {"kind": kind, "type": name, "message": message.strip()})
    if isinstance(error, BaseException):
        traceback.print_exc()
    print(f"optimum_worker: {kind}: {name}: {message}", file=sys.stderr, flush=True)
    return status


class _Counts:
    """Samples and input tokens of the dataset as optimum-benchmark preprocessed it."""

    def __init__(self) -> None:
        self.samples: int | None = None
        self.input_tokens: int | None = None

    def read(self, dataset: Any) -> None:
        self.samples = len(dataset)
        if "input_ids" not in getattr(dataset, "column_names", ()):
            return
        total = 0
        for ids in dataset["input_ids"]:
            total += int(ids.shape[-1]) if hasattr(ids, "shape") else len(ids)
        self.input_tokens = total


def _count_after_preprocessing(scenario_class: Any, counts: _Counts) -> None:
    """Wrap the preprocessing phase so the dataset is counted after its energy window has closed."""
    original = scenario_class.run_dataset_preprocessing_tracking

    def run_and_count(self: Any) -> None:
        original(self)
        counts.read(self.dataset)

    scenario_class.run_dataset_preprocessing_tracking = run_and_count


def _capture_trackers(energy_module: Any, trackers: list[Any]) -> None:
    """Keep each offline tracker optimum-benchmark builds, to say afterwards how codecarbon got its figures."""
    offline = energy_module.OfflineEmissionsTracker

    def build(*args: Any, **kwargs: Any) -> Any:
        tracker = offline(*args, **kwargs)
        trackers.append(tracker)
        return tracker

    energy_module.EmissionsTracker = _no_online_tracker
    energy_module.OfflineEmissionsTracker = build


def _hardware(trackers: list[Any]) -> list[dict[str, Any]]:
    """codecarbon's view of what it metered: CPU mode (intel_rapl, cpu_load, constant...), RAM, GPUs."""
    if not trackers:
        return []
    out = []
    for item in getattr(trackers[-1], "_hardware", []):
        try:
            description = str(item.description())
        except Exception:  # a description is a nicety; never fail a finished run for it
            description = repr(item)
        out.append({"class": type(item).__name__, "mode": getattr(item, "_mode", None), "description": description})
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    names = ("optimum-benchmark", "transformers", "torch", "codecarbon", "datasets", "accelerate")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def run(request: dict[str, Any]) -> int:
    """Build the benchmark config from the request, run it inline, and write the report and our counts."""
    try:
        import optimum_benchmark.trackers.energy as energy_module
        from optimum_benchmark import (
            Benchmark,
            BenchmarkConfig,
            EnergyStarConfig,
            InlineConfig,
            PyTorchConfig,
        )
        from optimum_benchmark.logging_utils import setup_logging
        from optimum_benchmark.scenarios.energy_star.scenario import (
            EnergyStarScenario,
        )
        from transformers.generation.utils import GenerationMixin
    except ImportError as err:
        return _fail(EXIT_BROKEN_ENVIRONMENT, "environment", err)

    setup_logging(level="INFO", use_colorlog=False)
    trackers: list[Any] = []
    counts = _Counts()
    work = Work(ProgressChannel(request.get("progress_file")))
    _capture_trackers(energy_module, trackers)
    _count_after_preprocessing(EnergyStarScenario, counts)
    model_devices: list[str] = []
    note_model_devices(EnergyStarScenario, model_devices)
    work.follow_phases(EnergyStarScenario)
    work.follow_warmup(EnergyStarScenario)
    work.follow_decoding(GenerationMixin)
    try:
        if request.get("keep_outputs"):
            work.keeper = Keeper(request["keep_outputs"])
        scenario = dict(request["scenario"], memory=False, energy=True)
        config = BenchmarkConfig(
            name=request.get("name", "energy_star"),
            backend=PyTorchConfig(**request["backend"]),
            scenario=EnergyStarConfig(**scenario),
            launcher=InlineConfig(),
            log_report=True,
            print_report=False,
        )
    except (TypeError, ValueError, KeyError) as err:
        return _fail(EXIT_BAD_REQUEST, "configuration", err)
    config.save_json(CONFIG_FILE)
    try:
        report = Benchmark.launch(config)
    except BaseException as err:  # everything optimum-benchmark raises is one failure of this benchmark
        return _fail(EXIT_FAILED, "benchmark", err)
    report.save_json(REPORT_FILE)
    result = {
        "samples": counts.samples,
        "input_tokens": counts.input_tokens,
        "work": work.to_dict(),
        "generate_kwargs": dict(getattr(config.scenario, "generate_kwargs", {}) or {}),
        "call_kwargs": dict(getattr(config.scenario, "call_kwargs", {}) or {}),
        "codecarbon_hardware": _hardware(trackers),
        "versions": _versions(),
        "blocked_connections": list(_blocked),
    }
    if work.keeper is not None:  # the scenario is over: reading the answers now costs no metered window anything
        result["outputs"] = work.keeper.write(work.backend, Path.cwd())
    if config.backend.device == "cuda":  # which GPU codecarbon read and which the model ran on, by UUID
        result["gpu"] = gpu_facts(trackers, model_devices)
    _write_json(Path(RESULT_FILE), result)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pytest_aienergyscore.backends.optimum.worker REQUEST.json", file=sys.stderr)
        return EXIT_BAD_REQUEST
    request_path = Path(args[0]).resolve()
    try:
        request = json.loads(request_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        print(f"optimum_worker: cannot read {request_path}: {err}", file=sys.stderr)
        return EXIT_BAD_REQUEST
    run_dir = Path(request.get("run_dir") or request_path.parent)
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(run_dir)
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if request.get("block_network"):
        _block_network()
    return run(request)


if __name__ == "__main__":
    raise SystemExit(main())
