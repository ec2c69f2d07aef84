"""The pytorch backend's forward tasks: one forward pass per sample, no generation (energy_star's ``forward`` phase).

Classification, question answering, sentence similarity, summarization's seq2seq forward, and the vision tasks: each
differs from the others only in its auto class and how samples become inputs.
"""

from __future__ import annotations

from typing import Any

from pytest_aienergyscore.backends.base import BackendError, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.pytorch.task import PytorchTask, TextTokenMixin, load_seq2seq


class Seq2SeqForward(PytorchTask, TextTokenMixin):
    """energy_star's summarization: one forward pass of the seq2seq model per document (no generation)."""

    def load(self) -> None:
        load_seq2seq(self)

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return self.encode_all([(sample["text"],) for sample in samples])


class TextForward(PytorchTask, TextTokenMixin):
    """One forward per sample of a text model; a text pair (question and context, two sentences) is one sequence,
    as energy_star's preprocessors encode it (``tokenizer(first, second, truncation=True)``: longest first)."""

    auto_class = "AutoModelForSequenceClassification"

    def load(self) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.processor_path)
        auto = getattr(transformers, self.auto_class)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        pair = self.protocol.pre("text_pair")
        texts = [tuple(sample[key] for key in pair) if pair else (sample["text"],) for sample in samples]
        return self.encode_all(texts)


class QuestionAnswering(TextForward):
    auto_class = "AutoModelForQuestionAnswering"


class SentencePair(TextForward):
    """energy_star's sentence similarity: the pair as one sequence through the base model, one forward per query."""

    auto_class = "AutoModel"


class SentenceEmbeddings(TextForward):
    """Our ``embed-pair`` variant: both sentences embedded (two forwards) and compared, as a pipeline would."""

    auto_class = "AutoModel"

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        sentences = [(sample[key],) for sample in samples for key in ("sentence1", "sentence2")]
        flat = self.encode_all(sentences)
        flat.inputs = [list(pair) for pair in zip(flat.inputs[::2], flat.inputs[1::2], strict=True)]
        return flat

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        for _ in range(runs):
            for encoded in first:
                self.model(**encoded)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        import torch

        if phase != "forward":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        for first, second in prepared.inputs:
            a = _mean_pool(self.model(**first).last_hidden_state, first["attention_mask"])
            b = _mean_pool(self.model(**second).last_hidden_state, second["attention_mask"])
            torch.nn.functional.cosine_similarity(a, b)
            progress(1)
        details = {"forward_calls": 2 * len(prepared)}
        return PhaseWork(samples=len(prepared), tokens=prepared.input_tokens, details=details)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class Vision(PytorchTask):
    auto_class = "AutoModelForImageClassification"

    def load(self) -> None:
        import transformers

        self.processor = transformers.AutoImageProcessor.from_pretrained(self.processor_path)
        auto = getattr(transformers, self.auto_class)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        """Images in RGB (energy_star's image preprocessor converts them), one at a time."""
        mode = self.protocol.pre("image_mode")
        images = [s["image"].convert(mode) if mode else s["image"] for s in samples]
        return Prepared([self.to_device(self.processor(images=image, return_tensors="pt")) for image in images])


class ObjectDetection(Vision):
    auto_class = "AutoModelForObjectDetection"
