"""One AI Energy Score benchmark: load (not metered), preprocess (metered), warm up (not metered), then the task's
metered phases over every sample, repeated as asked, into the test's record.

Decode is never metered on its own, because generation cannot be split inside one ``generate`` call: like
optimum-benchmark's energy_star we meter a prefill pass (one new token per sample) and a full generation pass over
the whole dataset, and decode = generation - prefill (:func:`~.records.decode.derive_decode`, the one rule every
backend uses: never clamped, so the total is preprocess + the whole generation pass; a negative split is flagged, and
every decode phase carries the split's uncertainty).
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_aienergyscore import quality as task_quality
from pytest_aienergyscore.backends import Backend, BackendError, LoadRequest, PhaseWork, Prepared, create_backend
from pytest_aienergyscore.backends.base import BenchmarkRequest
from pytest_aienergyscore.backends.models import ModelSize, model_size
from pytest_aienergyscore.meters.gpu_processes import metered_gpus_differ
from pytest_aienergyscore.records.decode import derive_decode, split_details
from pytest_aienergyscore.records.quality import QUALITY_KEY, QualityError, no_quality
from pytest_aienergyscore.records.record import Phase
from pytest_aienergyscore.report.paths import safe_part, unique_child
from pytest_aienergyscore.rules.datasets import load_samples
from pytest_aienergyscore.rules.model_class import check_gpu_count, gpus_in
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.session.energy_meter import EnergyRecorder
from pytest_aienergyscore.session.progress import ProgressReporter


class BackendCache:
    """Keeps the last loaded model, so that tests parametrized over tasks/samples of one model load it once;
    loading another model frees the previous one (two large models rarely fit together)."""

    def __init__(self, factory: Callable[[str], Backend] = create_backend) -> None:
        self.factory = factory
        self.key: tuple[str, LoadRequest] | None = None
        self.backend: Backend | None = None
        self.facts: dict[str, Any] = {}

    def get(self, backend_name: str, request: LoadRequest) -> tuple[Backend, dict[str, Any]]:
        key = (backend_name, request)
        if self.key == key and self.backend is not None:
            return self.backend, self.facts
        self.close()
        backend = self.factory(backend_name)
        self.facts = backend.load(request)
        self.key, self.backend = key, backend
        return backend, self.facts

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.key, self.backend, self.facts = None, None, {}


def default_device(gpus: tuple[int, ...]) -> str:
    """The first metered GPU when torch sees CUDA, else the CPU."""
    torch = sys.modules.get("torch") or __import__("torch")
    return f"cuda:{gpus[0]}" if torch.cuda.is_available() else "cpu"


def run_benchmark(recorder: EnergyRecorder, backend_name: str, request: BenchmarkRequest, cache: BackendCache) -> None:
    """Run the protocol for one model and task, adding its phases to ``recorder``."""
    task = request.task
    size = apply_model_rules(recorder, request)  # before loading: a refused run should not wait for the model
    backend, facts = cache.get(backend_name, request.load_request())
    if size.model_class is None or facts.get("server_gpus"):
        apply_model_rules(recorder, request, facts)
    protocol = backend.protocol or request.load_request().protocol(facts.get("model_type"))
    recorder.set(output_format=backend.output_format)  # the reports' ``format``: whose figures these are
    reporter = ProgressReporter(request.model.rsplit("/", 1)[-1], outside=recorder.session.outside_capture)
    if backend.meters_itself:  # e.g. optimum-benchmark meters its own phases: read them, do not meter here
        backend.keep_outputs = wants_outputs(request, protocol)  # its worker loads the samples
        _run_own_protocol(recorder, backend, request, facts, protocol, reporter)
        return
    samples, info = load_samples(task, request.dataset, request.samples)
    backend.keep_outputs = wants_outputs(request, protocol, samples)  # samples without references: nothing to keep
    _record_identity(recorder, request, backend, protocol, facts)
    recorder.set(queries=len(samples))
    if not info.official:
        recorder.note(info.note or f"dataset {info.name} is not the official {task.dataset}")
    elif info.note:
        recorder.note(info.note)
    for note in facts.get("notes", ()):  # what the backend found out at load (a remote server, a renamed model)
        recorder.note(note)

    prepared: Prepared | None = None
    for repetition in range(request.repeat):
        with recorder.measure("preprocess", samples=len(samples), repetition=repetition) as phase:
            current = backend.preprocess(samples)
            phase.tokens = current.input_tokens
        prepared = prepared or current
    assert prepared is not None
    info.truncated = prepared.truncated
    if prepared.truncated:
        recorder.note(f"{prepared.truncated} inputs were longer than the model's window and were truncated")
    recorder.dataset = info.to_dict()
    recorder.counts.update(samples=len(samples), input_tokens=prepared.input_tokens, truncated=prepared.truncated)

    if recorder.enabled:
        backend.window_hook = recorder.session.meter  # lets a server backend meter a steady-state window in a phase
    backend.warmup(prepared, request.warmup, request.overrides)
    kept = _metered_repetitions(recorder, backend, prepared, request, protocol, reporter)
    if recorder.counts.get("input_tokens") is None and prepared.input_tokens is not None:
        recorder.counts["input_tokens"] = prepared.input_tokens  # counted by the server during the phases (vllm)
    _summarise_repeats(recorder)
    readable = backend.readable_outputs(kept) if kept is not None else None  # now that every window is closed
    score_quality(recorder, request, samples, readable, info.name, info.source == OFFLINE_SOURCE)


def _metered_repetitions(
    recorder: EnergyRecorder,
    backend: Backend,
    prepared: Prepared,
    request: BenchmarkRequest,
    protocol: Protocol,
    reporter: ProgressReporter,
) -> list[Any] | None:
    """The task's metered phases, ``repeat`` times. Returns the raw outputs the first repetition kept (None when
    the backend kept none); later repetitions keep nothing, so no more memory is held than one pass's answers."""
    kept: list[Any] | None = None
    for repetition in range(request.repeat):
        if protocol.is_generative:
            work = _generative_phases(recorder, backend, prepared, request, repetition, reporter)
        else:
            phase_name = protocol.phases[-1]
            with (
                reporter.phase(phase_name, len(prepared)) as progress,
                recorder.measure(phase_name, samples=len(prepared), repetition=repetition) as phase,
            ):
                work = backend.run(phase_name, prepared, request.overrides, progress)
                phase.tokens = work.tokens
                phase.details.update(work.details)
            fail_after_recording(work)
        if repetition == 0:
            kept = work.outputs
            backend.keep_outputs = False
    return kept


OFFLINE_SOURCE = "offline samples"  # DatasetInfo.source of this project's own sample sets (rules.datasets)


def wants_outputs(request: BenchmarkRequest, protocol: Protocol, samples: list[dict[str, Any]] | None = None) -> bool:
    """Whether the backend keeps its answers: the test scores them itself, or a built-in metric can read what this
    protocol (or variant) yields and, once the samples are loaded, they carry references. Otherwise nothing is kept:
    no memory held, nothing converted (text generation on the official prompts keeps nothing)."""
    return request.quality is not None or task_quality.can_score(request.task.name, protocol.variant, samples)


def score_quality(
    recorder: EnergyRecorder,
    request: BenchmarkRequest,
    samples: list[dict[str, Any]] | None,
    outputs: list[Any] | None,
    dataset_name: str,
    offline: bool,
) -> None:
    """Score the answers, after the last metered phase, into the record's ``quality``; when nothing could be
    scored (no metric, no references, no answers kept) the record says why, in ``quality`` and in a note. A test's
    own function that fails or returns a bad figure fails the benchmark in one line, after its phases were
    recorded: the energy measured is kept. ``samples`` None: a self-metering backend did not say which samples
    its outputs answer."""
    unpaired = no_quality(f"the {recorder.identity.get('backend')} backend did not say which samples it answered")
    if request.quality is not None:
        result = unpaired if samples is None else _custom_quality(recorder, request.quality, samples, outputs)
    elif samples is None and outputs is not None:
        result = unpaired
    else:
        result = task_quality.score_outputs(request.task, samples or [], outputs, dataset_name, offline)
    recorder.set(**{QUALITY_KEY: result})
    if result.get("metric") is None:
        recorder.note(f"quality not scored: {result.get('reason')}")


def _custom_quality(
    recorder: EnergyRecorder,
    function: Callable[[list[dict[str, Any]], list[Any]], dict[str, Any]],
    samples: list[dict[str, Any]],
    outputs: list[Any] | None,
) -> dict[str, Any]:
    """The test's own function's figure; its failure is kept in the record (with the reason) before it is raised."""
    try:  # outputs None: this backend or protocol keeps no answers; the function is told so
        return task_quality.score_custom(function, samples, outputs)
    except QualityError as err:
        recorder.set(**{QUALITY_KEY: no_quality(str(err))})
        recorder.note(f"quality not scored: {err}")
        raise  # one line (energy_star reports it); the phases are already in the recorder


def fail_after_recording(work: PhaseWork) -> None:
    """A backend that carried on past failed requests (vllm) gives its verdict in ``details["error"]``: the phase is
    recorded first and the benchmark fails after, so that nothing measured is lost."""
    if work.details.get("error"):
        raise BackendError(str(work.details["error"]))


def apply_model_rules(
    recorder: EnergyRecorder, request: BenchmarkRequest, facts: dict[str, Any] | None = None
) -> ModelSize:
    """The model's class from its files (or the override), into the record; then AI Energy Score's one-GPU rule.

    Called before loading with the model id alone, and again with the loaded model's facts (its resolved folder)
    when the id did not tell or a local server was found on GPUs. Raises MultiGpuRefused for a class A or B model
    metered (or served) on more than one GPU, and BackendError when an NVML meter meters other GPUs than the server's.
    """
    facts = facts or {}
    override = request.model_class or recorder.identity.get("model_class")
    size = model_size([request.model, facts.get("path")], override, facts.get("parameters"))
    meter = recorder.session.meter.info().to_dict() if recorder.enabled else {}
    gpus, server = gpus_in(meter), None
    if facts.get("server_gpus"):  # a local server's GPUs did the work: the rule counts them, the meter must meter them
        server = f"the {facts.get('server', 'model')} server at {facts.get('endpoint')}"
        gpus = len(facts["server_gpus"])
    allowed = check_gpu_count(size.model_class, gpus, request.allow_multi_gpu, server)
    if server is not None:
        problem = metered_gpus_differ(facts["server_gpus"], meter, server)
        if problem:
            raise BackendError(problem)
    if size.model_class:
        recorder.set(model_class=size.model_class)
    recorder.set(model_size=size.to_metadata(), gpu_count=gpus, multi_gpu_allowed=allowed)
    return size


def _record_identity(
    recorder: EnergyRecorder, request: BenchmarkRequest, backend: Any, protocol: Protocol, facts: dict[str, Any]
) -> None:
    """What was benchmarked, how, and with which added chat-template switches: the same keys whichever flow runs."""
    task = request.task
    recorder.set(
        model=request.model,
        task=task.name,
        processor=request.processor,
        backend=backend.name,
        protocol=protocol.to_dict(),
        overrides=dict(request.overrides),
        model_facts=facts,
        warmup_runs=request.warmup,
    )
    if task.chat_template_extra:
        recorder.set(chat_template_extra=dict(task.chat_template_extra))


def _run_own_protocol(
    recorder: EnergyRecorder,
    backend: Any,
    request: BenchmarkRequest,
    facts: dict[str, Any],
    protocol: Protocol,
    reporter: ProgressReporter,
) -> None:
    """A backend that runs and meters the whole protocol itself: record its phases, counts, notes and files as they
    come. Its scratch folder sits in the session folder and is removed once read; after a failure it stays there,
    and the one-line error names the log in it. Its phases' progress is shown as it announces them."""
    _record_identity(recorder, request, backend, protocol, facts)
    run_dir = unique_child(recorder.session.session_dir / "backend-runs", safe_part(recorder.nodeid, "test"))
    try:
        with reporter.series(backend.name) as progress:
            result = backend.run_protocol(request, run_dir, recorder.session.settings, progress=progress)
    except BaseException:
        _remove_scratch(run_dir, keep_files=True)
        raise
    _remove_scratch(run_dir, keep_files=False)
    recorder.set(queries=result.queries, **result.metadata)
    for note in result.notes:
        recorder.note(note)
    recorder.dataset = dict(result.dataset)
    recorder.counts.update(result.counts)
    recorder.attachments.update(result.attachments)
    for phase in result.phases:
        recorder.add_phase(phase)
    _summarise_repeats(recorder)
    # its answers (when asked for) came back with the result, with the samples they answer; getattr: a third-party
    # backend's result may have neither
    outputs = getattr(result, "outputs", None) if backend.keep_outputs else None
    backend.keep_outputs = False
    readable = backend.readable_outputs(outputs) if outputs is not None else None
    offline = recorder.dataset.get("source") == OFFLINE_SOURCE
    samples = getattr(result, "samples", None) or None
    score_quality(recorder, request, samples, readable, str(recorder.dataset.get("name")), offline)


def _remove_scratch(run_dir: Path, keep_files: bool) -> None:
    """Remove a backend's scratch folder (and backend-runs/ once empty); a failed run's files are kept to be read."""
    if keep_files and run_dir.is_dir() and any(run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()


def _generative_phases(
    recorder: EnergyRecorder,
    backend: Backend,
    prepared: Prepared,
    request: BenchmarkRequest,
    repetition: int,
    reporter: ProgressReporter,
) -> PhaseWork:
    """prefill and the whole generation pass metered; decode derived from them. Returns the generation's work,
    whose outputs (when kept) are the answers."""
    n = len(prepared)
    with (
        reporter.phase("prefill", n) as progress,
        recorder.measure("prefill", samples=n, repetition=repetition) as prefill,
    ):
        work = backend.run("prefill", prepared, request.overrides, progress)
        prefill.tokens = prepared.input_tokens
        prefill.details.update(work.details, first_tokens=work.tokens)
    fail_after_recording(work)
    with (
        reporter.phase("generate", n) as progress,
        recorder.measure("generate", samples=n, repetition=repetition, record=False) as generate,
    ):
        gen_work = backend.run("generate", prepared, request.overrides, progress)
    assert prefill.measurement is not None and generate.measurement is not None
    decode = derive_decode(prefill.measurement, generate.measurement)
    decode_tokens = max((gen_work.tokens or 0) - n, 0)  # the first new token of each sample belongs to prefill
    details = {
        **split_details(prefill.measurement, generate.measurement),
        "generated_tokens": gen_work.tokens,
        **gen_work.details,
    }
    recorder.add_phase(Phase("decode", decode, n, decode_tokens, repetition, details))
    fail_after_recording(gen_work)
    return gen_work


def _summarise_repeats(recorder: EnergyRecorder) -> None:
    """Mean, standard deviation and coefficient of variation per phase when phases were repeated."""
    names = list(dict.fromkeys(p.name for p in recorder.phases))
    stats = {}
    for name in names:
        values = [p.measurement.joules() for p in recorder.phases if p.name == name]
        if len(values) < 2:
            return
        mean = statistics.fmean(values)
        sd = statistics.stdev(values)
        stats[name] = {"mean_j": mean, "stdev_j": sd, "cv": sd / mean if mean else None, "n": len(values)}
    if stats:
        recorder.set(repeat_stats=stats)
