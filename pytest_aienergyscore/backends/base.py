"""What every backend does for the runner: load a model, prepare a task's samples, and run one phase over them.

A backend generates work and counts it; it never meters and never writes files (the runner and the reports do).
That split lets one runner apply the same protocol, warm-up and repetitions to transformers, optimum-benchmark
and a vLLM server alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

# Called by a backend as samples finish (``progress(n)``), so that long phases show where they are.
Progress = Callable[[int], None]
# A backend that runs the whole protocol itself (``run_protocol``) calls this as each of its phases starts, with the
# phase's name and samples (0: not known), and reports that phase's samples to the Progress it gets back.
StartPhase = Callable[[str, int], Progress]


class BackendError(RuntimeError):
    """A failure the user can act on, in one line (bad model for the task, server refused, ...)."""


class ModelUnavailable(BackendError):
    """The model cannot be had here (not a local folder, not cached, Hub offline)."""


class ProtocolRefused(BackendError):
    """The backend has no way to run this protocol (a variant it cannot do): a fact about the backend, not a fault in
    the benchmark, so ``energy_star(skip_unavailable=True)`` skips it with this line, as for a model not had here."""


@dataclass
class Prepared:
    """A task's samples after preprocessing, ready for the model; counts say what preprocessing did."""

    inputs: list[Any]
    input_tokens: int | None = None
    truncated: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class PhaseWork:
    """What one phase processed: samples, tokens (from the tokenizer or the server, never estimated), images."""

    samples: int
    tokens: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Each sample's raw output, in sample order, kept only when the backend's ``keep_outputs`` is set: references to
    # what the model returned anyway (no conversion inside the metered window; ``readable_outputs`` does that after).
    outputs: list[Any] | None = None


@dataclass(frozen=True)
class LoadRequest:
    """Everything that decides which model object a backend builds (also the cache key for reuse)."""

    model: str
    processor: str | None
    task: TaskSpec
    device: str
    trust_remote_code: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    variant: str | None = None  # a named protocol variant (rules.protocol); None: the task's, or its T5 config

    def protocol(self, model_type: str | None = None) -> Protocol:
        """The protocol this load runs: the task's, the T5 config for a T5-family model, or the named variant."""
        return self.task.protocol_for(model_type, self.variant)


@dataclass
class BenchmarkRequest:
    """One benchmark as the session asks for it: what the runner loops over, and what a backend that runs the
    protocol itself (``run_own_protocol``) receives whole."""

    task: TaskSpec
    model: str
    processor: str | None = None
    dataset: str | None = None
    samples: int | None = None
    repeat: int = 1
    warmup: int = 10
    device: str = "cpu"
    trust_remote_code: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    model_class: str | None = None  # --energy-model-class: wins over the counted class
    allow_multi_gpu: bool = False
    variant: str | None = None  # a named protocol variant of our own (recorded, never comparable)
    # energy_star(quality=fn): fn(samples, outputs) -> {"metric", "value", "higher_is_better"}, scored after the phases
    quality: Callable[[list[dict[str, Any]], list[Any]], dict[str, Any]] | None = None

    backend_options: tuple[tuple[str, Any], ...] = ()  # backend-specific settings, e.g. the vllm endpoint

    def load_request(self) -> LoadRequest:
        return LoadRequest(
            self.model,
            self.processor,
            self.task,
            self.device,
            self.trust_remote_code,
            self.backend_options,
            self.variant,
        )


class Backend(ABC):
    """One way of generating a task's work. Subclasses are created through :func:`..backends.create_backend`."""

    # What the runner and the reports need to know, declared here so that no module outside backends/ has to
    # recognise a backend by its name. A third-party backend sets these on its class.
    name = "backend"  # the name it is registered under (--backend NAME), written into every record
    # Where the work's CPU time shows up for the estimate meter: this process, or the whole machine (a server).
    cpu_scope = "process"
    # True when the backend meters its own phases (optimum-benchmark's codecarbon): it provides
    # ``run_protocol(request, run_dir, settings, progress=None)`` (``progress``: a StartPhase) and the runner records
    # what it returns instead of metering around ``run``.
    meters_itself = False
    # True when the work runs in a server this process talks to: the load request's device is then "server".
    remote = False
    # The ``format`` written into GPU_ENERGY_SUMMARY.json: which tool's figures these are.
    output_format = "pytest_aienergyscore"
    # The session's meter, handed over by the runner before warm-up: a backend that meters a window inside a phase
    # (a server's steady state) uses it; the others ignore it.
    window_hook: Any = None
    # The protocol the loaded model runs, set by ``load`` (it can depend on the model's type: T5 configs).
    protocol: Protocol | None = None
    # Set by the runner when the outputs will be scored: ``run`` then fills ``PhaseWork.outputs`` for the pass whose
    # outputs count (generate for generative tasks, else the task's one phase). Off, nothing is kept.
    keep_outputs: bool = False

    @classmethod
    def options_from(cls, settings: Any) -> tuple[tuple[str, Any], ...]:
        """What this backend needs from the session's settings, as (name, value) pairs for its load request (they
        are part of the model cache key, so plain values only: never a secret, only where to find one)."""
        return ()

    @abstractmethod
    def load(self, request: LoadRequest) -> dict[str, Any]:
        """Load the model (not metered). Returns facts for the record: class, dtype, device, parameters."""

    @abstractmethod
    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        """Turn samples into model inputs (metered as ``preprocess``)."""

    @abstractmethod
    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        """Run one phase (prefill, generate, forward, call) over every prepared input, one at a time."""

    def readable_outputs(self, outputs: list[Any]) -> list[Any]:
        """The kept raw outputs as the quality metrics read them (text, label, answer, boxes, cosine score), one per
        sample; called after the metered phases, so the conversion (decoding tokens, argmax) is never metered."""
        return outputs

    def warmup(self, prepared: Prepared, runs: int, overrides: dict[str, Any]) -> None:  # noqa: B027
        """Unmetered runs on the first input so that kernels, caches and clocks are warm."""

    def close(self) -> None:  # noqa: B027
        """Free the model (the runner keeps at most one loaded)."""
