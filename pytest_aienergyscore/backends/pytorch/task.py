"""What every task of the pytorch backend shares: loading on one device, the default forward phase, the facts.

A task's work differs in how its model loads, how samples become inputs and which phases it has; everything else
(placement on the benchmark's one device, dtype, counting parameters for the record, text tokenisation truncated to
the model's window) is written once here, so that each task class in :mod:`.generative`, :mod:`.forward` and
:mod:`.diffusion` holds only its differences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pytest_aienergyscore.backends.base import BackendError, LoadRequest, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.models import pick_dtype
from pytest_aienergyscore.rules.protocol import WINDOW_DEFAULT, Protocol


class PytorchTask:
    """One task's loading, preprocessing and phases. Subclasses override what differs."""

    # The phase whose outputs are a task's answers (the one quality is scored on), and whether this task's pass
    # yields an answer at all: summarization's one forward and the sentence pair through the base model do not, and
    # keeping their logits would hold gigabytes for nothing.
    outputs_phase = "forward"
    has_answers = False

    def __init__(self, request: LoadRequest, path: str, processor_path: str, protocol: Protocol) -> None:
        self.request = request
        self.task = request.task
        self.protocol = protocol
        self.path = path
        self.processor_path = processor_path
        self.device = request.device
        self.dtype = pick_dtype(request.task, request.device)
        self.model: Any = None
        self.processor: Any = None

    def model_kwargs(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "trust_remote_code": self.request.trust_remote_code}

    def load(self) -> None:
        raise NotImplementedError

    def place(self, model: Any) -> Any:
        """On the benchmark's one device, in inference mode (never spread across GPUs)."""
        return model.to(self.device).eval()

    def facts(self) -> dict[str, Any]:
        """What was loaded, for the record: the same keys for every task (the parity tests compare them)."""
        return {
            "model_class": type(self.model).__name__,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": self.device,
            "parameters": self.loaded_parameters(),
            "path": self.path,
        }

    def loaded_parameters(self) -> int | None:
        """Parameters of the loaded model: the class rule's last resort where no file tells the count."""
        model = self.model
        return sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None

    def to_device(self, batch: Any) -> Any:
        moved = batch.to(self.device)
        if self.dtype is not None:
            for key, value in list(moved.items()):
                if hasattr(value, "is_floating_point") and value.is_floating_point():
                    moved[key] = value.to(self.dtype)
        return moved

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        raise NotImplementedError

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        """energy_star's inference warm-up: ``warmup_runs`` forwards of the first sample."""
        for _ in range(runs):
            self.model(**first)

    def run(
        self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress, keep: list[Any] | None
    ) -> PhaseWork:
        """One forward per sample; with ``keep`` (a list), each sample's answer parts are appended to it."""
        if phase != "forward":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        model, calls = self.model, 0
        for inputs in prepared.inputs:
            output = model(**inputs)
            if keep is not None:
                keep.append(self.answer_of(inputs, output))
            calls += 1
            progress(1)
        return PhaseWork(samples=len(prepared), tokens=prepared.input_tokens, details={"forward_calls": calls})

    def answer_of(self, inputs: Any, output: Any) -> Any:
        """References to the parts of one sample's inputs and output that hold its answer. This runs inside the
        metered window, so it only takes references: no copy to the CPU, no argmax, no decoding."""
        return output

    def readable(self, kept: Any) -> Any:
        """One kept answer as the quality metrics read it; runs after the metered phases, so it may do real work."""
        return None

    def readable_outputs(self, kept: list[Any]) -> list[Any]:
        """Every kept answer, in sample order, as the quality metrics read it."""
        return [self.readable(answer) for answer in kept]


class TextTokenMixin:
    """Tokenising the way energy_star's text preprocessors do: once, truncated to the model's window."""

    tokenizer: Any
    model: Any
    protocol: Protocol
    to_device: Callable[[Any], Any]

    def window(self, reserve: int = 0) -> int | None:
        """``max_position_embeddings`` (512 when the config has none, as upstream) less what the protocol reserves
        (the new tokens of a generation, or the T5 prefix fields); None when nothing is left to truncate to."""
        config = getattr(self.model, "config", None)
        window = getattr(config, "max_position_embeddings", None)
        if not isinstance(window, int) or window <= 0:
            window = int(self.protocol.pre("window_default", WINDOW_DEFAULT))
        limit = window - reserve
        return limit if limit > 0 else None

    def reserve(self) -> int:
        """What the protocol subtracts from the window: the generation's new tokens, or a number of fields."""
        rule = self.protocol.pre("window_reserve")
        if rule == "max_new_tokens":
            return int(self.protocol.generate().get("max_new_tokens", 0))
        return int(rule or 0)

    def encode_all(self, texts: Sequence[tuple[str, ...]], **kwargs: Any) -> Prepared:
        """Each text (or text pair, as one sequence) tokenised once, batch size 1, tokens counted.

        ``truncated`` counts inputs that reached the window: energy_star truncates in the same single call, and a
        second, untruncated tokenisation to tell "cut" from "exactly as long" would double the metered work.
        """
        limit = self.window(self.reserve())
        truncation = bool(self.protocol.pre("truncation", True)) and limit is not None
        inputs, tokens, at_limit = [], 0, 0
        for text in texts:
            if truncation:
                encoded = self.tokenizer(*text, return_tensors="pt", truncation=True, max_length=limit, **kwargs)
            else:
                encoded = self.tokenizer(*text, return_tensors="pt", **kwargs)
            length = int(encoded["input_ids"].shape[-1])
            at_limit += int(limit is not None and length >= limit)
            tokens += length
            inputs.append(self.to_device(encoded))
        return Prepared(inputs, input_tokens=tokens, truncated=at_limit)


def plain_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call arguments as the record can hold them (JSON values; a dtype or a generator as its text)."""
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in kwargs.items()}


def load_seq2seq(impl: Any) -> None:
    """The T5 configs (generation) and summarization (forward only) load the same seq2seq model and tokenizer."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    impl.tokenizer = AutoTokenizer.from_pretrained(impl.processor_path)
    impl.processor = impl.tokenizer
    impl.model = impl.place(AutoModelForSeq2SeqLM.from_pretrained(impl.path, **impl.model_kwargs()))
