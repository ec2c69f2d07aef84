"""The pytorch backend's forward tasks: one forward pass per sample, no generation (energy_star's ``forward`` phase).

Classification, question answering, sentence similarity, summarization's seq2seq forward, and the vision tasks: each
differs from the others only in its auto class and how samples become inputs.
"""

from __future__ import annotations

from typing import Any

from pytest_aienergyscore.backends.base import BackendError, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.pytorch.task import PytorchTask, TextTokenMixin, load_seq2seq

# The longest answer span considered, in tokens: the limit SQuAD's reference scripts use (max_answer_length=30).
MAX_ANSWER_TOKENS = 30


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
    has_answers = True

    def load(self) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.processor_path)
        auto = getattr(transformers, self.auto_class)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        pair = self.protocol.pre("text_pair")
        texts = [tuple(sample[key] for key in pair) if pair else (sample["text"],) for sample in samples]
        return self.encode_all(texts)

    def answer_of(self, inputs: Any, output: Any) -> Any:
        return output.logits

    def readable(self, kept: Any) -> Any:  # subclasses answer with a span (QA) or a cosine score (embed-pair)
        return predicted_class(self.model, kept)


def predicted_class(model: Any, logits: Any) -> dict[str, Any]:
    """The top class of one sample's logits: its index and the model's own name for it (id2label), so that a
    reference can be compared either way."""
    label = int(logits[0].argmax(-1).item())
    names = getattr(model.config, "id2label", None) or {}
    return {"label": label, "name": str(names.get(label, label))}


class QuestionAnswering(TextForward):
    """Extractive QA; the answer is the best span of the context (see :meth:`readable`)."""

    auto_class = "AutoModelForQuestionAnswering"

    def answer_of(self, inputs: Any, output: Any) -> Any:
        return inputs, output.start_logits, output.end_logits

    def readable(self, kept: Any) -> str:
        """The span with the highest start + end score among spans inside the context with end >= start and at
        most MAX_ANSWER_TOKENS tokens, decoded with the tokenizer ("" when the context kept no token)."""
        import torch

        inputs, start_logits, end_logits = kept
        start, end = start_logits[0].float().cpu(), end_logits[0].float().cpu()
        n = int(start.shape[-1])
        context = self.context_mask(inputs, n)
        square = torch.ones(n, n, dtype=torch.bool)
        ordered = square.triu() & ~square.triu(MAX_ANSWER_TOKENS)  # 0 <= last - first < MAX_ANSWER_TOKENS
        allowed = ordered & context[:, None] & context[None, :]
        if not bool(allowed.any()):
            return ""
        scores = (start[:, None] + end[None, :]).masked_fill(~allowed, float("-inf"))
        first, last = whole_words(inputs, *divmod(int(scores.argmax().item()), n))
        ids = inputs["input_ids"][0, first : last + 1].tolist()
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text.strip()

    def context_mask(self, inputs: Any, n: int) -> Any:
        """True for the context's tokens: the fast tokenizer's sequence ids (which text each token came from),
        else the token type ids; every token when neither tells."""
        import torch

        pair = list(self.protocol.pre("text_pair") or ("question", "context"))
        which = pair.index("context") if "context" in pair else 1
        sequence_ids = getattr(inputs, "sequence_ids", None)
        if sequence_ids is not None and getattr(inputs, "encodings", None):
            return torch.tensor([sid == which for sid in sequence_ids(0)], dtype=torch.bool)
        if "token_type_ids" in inputs:
            return inputs["token_type_ids"][0].cpu() == which
        return torch.ones(n, dtype=torch.bool)


def whole_words(inputs: Any, first: int, last: int) -> tuple[int, int]:
    """The span widened to whole words (a fast tokenizer's word ids), so that an answer never starts or ends in
    the middle of a word ("##lus two" becomes "plus two")."""
    word_ids = getattr(inputs, "word_ids", None)
    if word_ids is None or not getattr(inputs, "encodings", None):
        return first, last
    words = word_ids(0)
    while first > 0 and words[first] is not None and words[first - 1] == words[first]:
        first -= 1
    while last + 1 < len(words) and words[last] is not None and words[last + 1] == words[last]:
        last += 1
    return first, last


class SentencePair(TextForward):
    """energy_star's sentence similarity: the pair as one sequence through the base model, one forward per query.
    The pass gives no similarity score, so there is no answer to keep."""

    auto_class = "AutoModel"
    has_answers = False


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

    def run(
        self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress, keep: list[Any] | None
    ) -> PhaseWork:
        import torch

        if phase != "forward":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        for first, second in prepared.inputs:
            a = _mean_pool(self.model(**first).last_hidden_state, first["attention_mask"])
            b = _mean_pool(self.model(**second).last_hidden_state, second["attention_mask"])
            cosine = torch.nn.functional.cosine_similarity(a, b)
            if keep is not None:
                keep.append(cosine)
            progress(1)
        details = {"forward_calls": 2 * len(prepared)}
        return PhaseWork(samples=len(prepared), tokens=prepared.input_tokens, details=details)

    def readable(self, kept: Any) -> float:
        return float(kept[0].item())


def _mean_pool(hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class Vision(PytorchTask):
    auto_class = "AutoModelForImageClassification"
    has_answers = True
    image_sizes: tuple[tuple[int, int], ...] = ()  # (width, height) of each image of the last preprocess

    def load(self) -> None:
        import transformers

        self.processor = transformers.AutoImageProcessor.from_pretrained(self.processor_path)
        auto = getattr(transformers, self.auto_class)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        """Images in RGB (energy_star's image preprocessor converts them), one at a time."""
        mode = self.protocol.pre("image_mode")
        images = [s["image"].convert(mode) if mode else s["image"] for s in samples]
        self.image_sizes = tuple(image.size for image in images)  # where detection boxes are drawn back to
        return Prepared([self.to_device(self.processor(images=image, return_tensors="pt")) for image in images])

    def answer_of(self, inputs: Any, output: Any) -> Any:
        return output.logits

    def readable(self, kept: Any) -> dict[str, Any]:
        return predicted_class(self.model, kept)


class ObjectDetection(Vision):
    """Detection; answers are the image processor's own post-processing, in the original image's pixels."""

    auto_class = "AutoModelForObjectDetection"
    # Every detection is kept (threshold 0): mAP ranks detections by score, and a cut would only lower its recall.
    threshold = 0.0

    def answer_of(self, inputs: Any, output: Any) -> Any:
        # Only the two tensors post-processing reads: the whole output also holds the encoder's feature map
        return type(output), output.logits, output.pred_boxes

    def readable_outputs(self, kept: list[Any]) -> list[Any]:
        """Boxes [x1, y1, x2, y2] in pixels of each original image, with scores and class indices."""
        if len(kept) != len(self.image_sizes):
            raise BackendError(f"{len(kept)} detections kept for {len(self.image_sizes)} preprocessed images")
        return [self.detections(answer, size) for answer, size in zip(kept, self.image_sizes, strict=True)]

    def detections(self, answer: Any, size: tuple[int, int]) -> dict[str, Any]:
        output_class, logits, boxes = answer
        width, height = size
        found = self.processor.post_process_object_detection(
            output_class(logits=logits, pred_boxes=boxes), threshold=self.threshold, target_sizes=[(height, width)]
        )[0]
        return {
            "boxes": found["boxes"].float().cpu().tolist(),
            "scores": found["scores"].float().cpu().tolist(),
            "labels": [int(label) for label in found["labels"].tolist()],
        }
