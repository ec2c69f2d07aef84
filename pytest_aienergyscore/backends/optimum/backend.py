"""The optimum backend: optimum-benchmark's ``energy_star`` scenario, run in its own environment and read back.

AI Energy Score runs optimum-benchmark; this backend runs the same scenario for a test's model and task, so a result
here is the reference method, not an imitation of it. optimum-benchmark 0.6.0 needs ``transformers<5`` and codecarbon,
which conflict with the pytorch backend's stack, so it lives in a separate virtual environment (made by
``scripts/setup_optimum_env.sh``) and runs as a subprocess (:mod:`.worker`).

optimum-benchmark meters its own phases with codecarbon, so the runner's metered flow does not apply: the runner calls
:meth:`OptimumBackend.run_protocol`, which
1. generates the scenario's configuration from our task table (:mod:`.experiment`) with the test's model, processor,
   device and overrides; the registry package ships the scenario but not AI Energy Score's ``energy_star/*.yaml``;
2. hands optimum-benchmark the samples: the official Hub dataset by its id, anything else (a local file, our offline
   sample sets) written as a one-file dataset folder, the only local form its ``load_dataset`` call accepts;
3. starts the worker in the checked environment (:mod:`.environment`, :mod:`.launch`), relays its progress, and reads
   ``benchmark_report.json`` (kWh per phase and scope) and codecarbon's per-phase files (durations, hardware) into
   :class:`~pytest_aienergyscore.records.record.Phase` objects, with every figure's scope, kind and meter stated
   (:mod:`.results`);
4. returns the generated config, optimum-benchmark's log and codecarbon's files as attachments for the run folder;
5. when the runner asks (``keep_outputs``), returns the answers of the pass whose outputs count, which the worker
   kept by reference and made readable after the scenario ended (:mod:`.outputs`), with the samples they answer.

This module holds only the class the entry point names and the plan of one benchmark; the work is in those modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.backends.base import (
    Backend,
    BackendError,
    LoadRequest,
    PhaseWork,
    Prepared,
    Progress,
    ProtocolRefused,
    StartPhase,
)
from pytest_aienergyscore.backends.models import count_from_safetensors
from pytest_aienergyscore.backends.optimum.environment import check_environment
from pytest_aienergyscore.backends.optimum.experiment import (
    DatasetRef,
    ResolvedModel,
    build_request,
    dataset_for_optimum,
    optimum_device,
    resolve_model,
    torch_dtype,
    transformers4_processor,
)
from pytest_aienergyscore.backends.optimum.launch import run_worker
from pytest_aienergyscore.backends.optimum.outputs import answer_kind, keep_request, read_outputs
from pytest_aienergyscore.backends.optimum.results import (
    WorkerRun,
    collect_attachments,
    dataset_attachment,
    phases_from_report,
    protocol_notes,
    run_metadata,
)
from pytest_aienergyscore.records.record import Phase
from pytest_aienergyscore.rules.datasets import DatasetInfo, load_samples
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

if TYPE_CHECKING:
    from pytest_aienergyscore.backends.base import BenchmarkRequest
    from pytest_aienergyscore.config.settings import Settings


@dataclass
class ProtocolResult:
    """What one optimum-benchmark run gives the record: phases, counts, dataset facts, notes and files."""

    phases: list[Phase]
    queries: int
    counts: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, str] = field(default_factory=dict)
    # the answers of the pass whose outputs count (when the runner asked, see Backend.keep_outputs), readable already,
    # one per sample in ``samples``' order; ``samples`` are the rows optimum-benchmark ran, for the metrics' references
    outputs: list[Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)


class OptimumBackend(Backend):
    """optimum-benchmark's energy_star scenario in its own environment; it meters its own phases."""

    name = "optimum"
    cpu_scope = "machine"  # codecarbon runs with tracking_mode="machine"
    meters_itself = True  # codecarbon inside optimum-benchmark meters every phase: see run_protocol
    output_format = "optimum"  # its figures are optimum-benchmark's, as AI Energy Score's summariser reads them

    def __init__(self) -> None:
        self.model: ResolvedModel | None = None

    def load(self, request: LoadRequest) -> dict[str, Any]:
        """Resolve the model here (optimum-benchmark loads it in its own process): unavailable models skip early."""
        from pytest_aienergyscore.backends.models import substitute_facts

        self.model = resolve_model(request)
        self.protocol = request.protocol(self.model.model_type)
        if self.protocol.pre("embed_separately"):
            raise ProtocolRefused(
                f"protocol variant {self.protocol.variant!r} embeds each sentence on its own, which "
                "optimum-benchmark's energy_star cannot do; use --backend pytorch for it"
            )
        return {
            "model_class": self.model.architectures[0] if self.model.architectures else None,
            "model_type": self.model.model_type,
            "library": self.model.library,
            "dtype": torch_dtype(request.task, request.device),
            "device": request.device,
            "parameters": count_from_safetensors(Path(self.model.path)),
            "path": self.model.path,
            "loaded_by": "optimum-benchmark, in its own environment",
            **substitute_facts(request.model, self.model.path),
        }

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        raise BackendError("the optimum backend runs optimum-benchmark's whole protocol: use run_protocol")

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        raise BackendError("the optimum backend runs optimum-benchmark's whole protocol: use run_protocol")

    def run_protocol(
        self, request: BenchmarkRequest, run_dir: Path, settings: Settings, progress: StartPhase | None = None
    ) -> ProtocolResult:
        """Run energy_star once per repetition and read its figures; the runner records them as they are. The
        worker's phases and samples are relayed to ``progress`` as they happen."""
        python = check_environment(settings.optimum_python)
        plan = self.plan(request, run_dir)
        runs: list[WorkerRun] = []
        phases: list[Phase] = []
        attachments = dataset_attachment(plan.dataset)
        for repetition in range(request.repeat):
            folder = run_dir if request.repeat == 1 else run_dir / f"repetition-{repetition}"
            keep = plan.keep_request() if self.keep_outputs else None
            run = run_worker(
                python, plan.config, folder, local_dataset=plan.dataset.local, progress=progress, keep_outputs=keep
            )
            runs.append(run)
            phases.extend(phases_from_report(run, request.task, plan.config, plan.device, plan.device_ids, repetition))
            prefix = "" if request.repeat == 1 else f"repetition-{repetition}_"
            attachments.update({prefix + name: text for name, text in collect_attachments(folder).items()})
        result = plan.result(runs, phases, attachments)
        if self.keep_outputs:
            plan.add_outputs(result, run_dir if request.repeat == 1 else run_dir / "repetition-0", runs[0].result)
        return result

    def plan(self, request: BenchmarkRequest, run_dir: Path) -> RunPlan:
        """Everything decided before optimum-benchmark starts: samples, dataset folder, processor, configuration."""
        if self.model is None:
            raise BackendError("no model is loaded")
        task = request.task
        samples, info = load_samples(task, request.dataset, request.samples)
        run_dir.mkdir(parents=True, exist_ok=True)
        dataset = dataset_for_optimum(task, samples, info, run_dir / "dataset")
        processor, adapted = transformers4_processor(self.model.processor_path, run_dir / "processor")
        device, device_ids = optimum_device(request.device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert self.protocol is not None
        config = build_request(
            self.protocol,
            replace(self.model, processor_path=processor),
            dataset,
            samples=len(samples),
            warmup=request.warmup,
            overrides=request.overrides,
            device=device,
            device_ids=device_ids,
            dtype=torch_dtype(task, request.device),
            trust_remote_code=request.trust_remote_code,
            extra=task.chat_template_extra,
        )
        return RunPlan(task, info, dataset, config, device, device_ids, adapted, self.protocol, samples)


@dataclass
class RunPlan:
    """One benchmark's inputs to optimum-benchmark, and how its runs become a :class:`ProtocolResult`."""

    task: TaskSpec
    info: DatasetInfo
    dataset: DatasetRef
    config: dict[str, Any]
    device: str
    device_ids: str | None
    adapted_processor: bool
    protocol: Protocol
    samples: list[dict[str, Any]] = field(default_factory=list)

    def keep_request(self) -> dict[str, Any] | None:
        """What the worker keeps for quality scoring, or None when the task's protocol gives no readable answer."""
        kind = answer_kind(self.task, self.protocol)
        return keep_request(kind, self.samples) if kind else None

    def add_outputs(self, result: ProtocolResult, folder: Path, worker_result: dict[str, Any]) -> None:
        """The first run's answers and the samples they answer, or a note saying why there are none."""
        result.samples = self.samples
        if answer_kind(self.task, self.protocol) is None:
            return  # nothing was asked for: the runner says why this task has no quality
        result.outputs, why = read_outputs(folder, worker_result, len(self.samples))
        if why:
            result.notes.append(f"no outputs kept for quality: {why}")

    def result(self, runs: list[WorkerRun], phases: list[Phase], attachments: dict[str, str]) -> ProtocolResult:
        last = runs[-1]
        notes = protocol_notes(self.task, self.info, last, self.protocol)
        if self.adapted_processor:
            notes.append(
                "the processor's tokenizer_config.json was written by transformers 5; optimum-benchmark "
                "(transformers 4) read a copy with its extra_special_tokens list as additional_special_tokens"
            )
        self.info.used = int(last.result.get("samples") or self.info.used)
        return ProtocolResult(
            phases=phases,
            queries=self.info.used,
            counts={"samples": last.result.get("samples"), "input_tokens": last.result.get("input_tokens")},
            dataset={**self.info.to_dict(), "passed_to_optimum_benchmark_as": self.dataset.how},
            notes=notes,
            metadata={"optimum": run_metadata(runs, self.config, self.dataset)},
            attachments=attachments,
        )
