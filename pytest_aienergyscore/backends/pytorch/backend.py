"""The pytorch backend: transformers and diffusers in this process, one sample at a time, on one device.

It does the work optimum-benchmark's energy_star scenario does, as the protocol table (:mod:`..rules.protocol`)
writes it down and the parity tests check: the same preprocessing (truncation to the model's window, text pairs as
one sequence, images in RGB), the same generation and call parameters, the same warm-up, the same phases. Rules it
adds (AI Energy Score's): batch size 1; one GPU (never ``device_map="auto"`` across GPUs); fp32, except text
generation in bf16/fp16 on a GPU; ``trust_remote_code`` off unless asked. Every phase says what it actually did
(new tokens per sample, forward calls, images, scheduler steps), counted from outputs, never from the configuration.
When the outputs will be scored (``keep_outputs``), the pass whose outputs count keeps references to each sample's
answer and nothing more inside the window; decoding, argmax and post-processing wait for ``readable_outputs``.
Per-task differences live in small task classes (:mod:`.generative`, :mod:`.forward`, :mod:`.diffusion`, sharing
:mod:`.task`) so that each path is short and testable; this module picks one and wraps it in the backend contract.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pytest_aienergyscore.backends.base import Backend, BackendError, LoadRequest, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.models import (
    check_architecture,
    local_model_type,
    resolve_model_path,
    substitute_facts,
)
from pytest_aienergyscore.backends.pytorch.diffusion import Diffusion
from pytest_aienergyscore.backends.pytorch.forward import (
    ObjectDetection,
    QuestionAnswering,
    SentenceEmbeddings,
    SentencePair,
    Seq2SeqForward,
    TextForward,
    Vision,
)
from pytest_aienergyscore.backends.pytorch.generative import CausalLM, ImageToText, Seq2Seq, SpeechSeq2Seq
from pytest_aienergyscore.backends.pytorch.task import PytorchTask
from pytest_aienergyscore.rules.protocol import Protocol

SEED = 42  # optimum-benchmark's backends call set_seed(42) before loading; sampled protocols (reasoning) need it


class PytorchBackend(Backend):
    """transformers/diffusers in this process."""

    name = "pytorch"

    def __init__(self) -> None:
        self.task_impl: PytorchTask | None = None
        self.facts: dict[str, Any] = {}

    def load(self, request: LoadRequest) -> dict[str, Any]:
        path = resolve_model_path(request.model)
        processor_path = resolve_model_path(request.processor) if request.processor else path
        model_type = local_model_type(path)
        protocol = request.protocol(model_type)
        impl_class = implementation_for(protocol)
        check_architecture(protocol, request.model, path)
        import torch

        torch.manual_seed(SEED)
        impl = impl_class(request, path, processor_path, protocol)
        try:
            impl.load()
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BackendError(f"model {request.model!r} cannot be loaded for {request.task.name}: {first}") from None
        self.task_impl = impl
        self.protocol = protocol
        self.facts = {**impl.facts(), "model_type": model_type, **substitute_facts(request.model, path)}
        return self.facts

    @property
    def impl(self) -> PytorchTask:
        if self.task_impl is None:
            raise BackendError("no model is loaded")
        return self.task_impl

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return self.impl.preprocess(samples)

    def warmup(self, prepared: Prepared, runs: int, overrides: dict[str, Any]) -> None:
        if runs and prepared.inputs:
            with self.model_errors("warm-up"):
                self.impl.warmup(prepared.inputs[0], runs, overrides)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        """One phase; when the outputs will be scored, the pass whose outputs count keeps references to each
        sample's answer (converted only by :meth:`readable_outputs`, after the metered phases)."""
        import torch

        impl = self.impl
        keep: list[Any] | None = None
        if self.keep_outputs and impl.has_answers and phase == impl.outputs_phase:
            keep = []
        with self.model_errors(phase), torch.inference_mode():
            work = impl.run(phase, prepared, overrides, progress, keep)
        work.outputs = keep
        return work

    def readable_outputs(self, outputs: list[Any]) -> list[Any]:
        """Decoded text, class and name, answer span, boxes, cosine score or image per sample (formats in the
        task classes' ``readable``); the conversions run here, after the metered windows closed."""
        import torch

        with self.model_errors("reading outputs"), torch.inference_mode():
            return self.impl.readable_outputs(outputs)

    @contextlib.contextmanager
    def model_errors(self, phase: str) -> Iterator[None]:
        """What the model refuses (a window too short for the protocol's tokens, an override it does not take)
        becomes one line naming the model and the phase, instead of a traceback from deep inside transformers."""
        try:
            yield
        except (ValueError, TypeError, IndexError, RuntimeError) as err:
            text = str(err).strip()
            first = text.splitlines()[0][:400] if text else ""
            impl = self.impl
            raise BackendError(
                f"model {impl.request.model!r} failed in {phase} of {impl.task.name}: {type(err).__name__}: {first}"
            ) from None

    def close(self) -> None:
        self.task_impl = None
        import gc

        gc.collect()
        torch = __import__("torch")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def implementation_for(protocol: Protocol) -> type[PytorchTask]:
    """The ``PytorchTask`` class that does a protocol's work."""
    if protocol.kind == "call":
        return Diffusion
    if protocol.optimum_task == "text2text-generation":
        return Seq2Seq
    if protocol.task == "summarization":
        return Seq2SeqForward
    if protocol.task == "sentence_similarity":
        return SentenceEmbeddings if protocol.pre("embed_separately") else SentencePair
    return TASK_IMPLEMENTATIONS[protocol.task]


TASK_IMPLEMENTATIONS: dict[str, type[PytorchTask]] = {
    "text_generation": CausalLM,
    "reasoning": CausalLM,
    "automatic_speech_recognition": SpeechSeq2Seq,
    "image_captioning": ImageToText,
    "text_classification": TextForward,
    "question_answering": QuestionAnswering,
    "image_classification": Vision,
    "object_detection": ObjectDetection,
}
