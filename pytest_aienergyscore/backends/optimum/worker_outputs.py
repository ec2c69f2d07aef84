"""Inside the optimum worker: each sample's answer, kept from the pass whose outputs count and made readable after.

energy_star throws its outputs away, yet quality is only worth having on the very samples that were metered. So,
when the plugin's request asks (``keep_outputs``), the worker keeps a reference to what the metered pass returned
anyway (generate for generative tasks, forward otherwise): one list append inside the window, no copy, no
conversion. Once the scenario has ended, the kept answers are made readable with the model's own processor and
config (decoded new tokens, argmax and id2label, the best answer span, post-processed boxes) and written to
``outputs.jsonl``, one line per sample in energy_star's order, which is the order of the samples the plugin wrote.

Like :mod:`.worker`, this module runs in optimum-benchmark's environment: the standard library at module level,
torch only inside the conversion, never the rest of the plugin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUTS_FILE = "outputs.jsonl"
# What an answer is, per kind of task (the plugin says which): the pass that produced it, and how it reads.
ANSWER_PHASES = {"text": "generate", "class": "forward", "span": "forward", "boxes": "forward"}
MAX_ANSWER_TOKENS = 30  # longest answer span considered, in tokens (SQuAD-style decoding)


class Keeper:
    """The metered pass's outputs, by reference, in the order energy_star produced them."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.answer = str(request["answer"])
        if self.answer not in ANSWER_PHASES:
            raise ValueError(f"keep_outputs: answer {self.answer!r} is not one of {', '.join(ANSWER_PHASES)}")
        self.phase = ANSWER_PHASES[self.answer]
        self.image_sizes: list[list[int]] = list(request.get("image_sizes") or [])
        self.kept: list[tuple[Any, ...]] = []

    def keep(self, phase: str | None, inputs: Any, output: Any) -> None:
        """Called after each pass inside the window: only references are taken (the tensors the model made anyway;
        a detector's output without the feature maps it also carries)."""
        if phase != self.phase:
            return
        if self.answer == "text":  # the prompt's length only: an image-to-text input also holds its pixel values
            prompt = inputs.get("input_ids") if hasattr(inputs, "get") else None
            length = int(prompt.shape[-1]) if prompt is not None else None
            self.kept.append((length, getattr(output, "sequences", output)))
        elif self.answer == "class":
            self.kept.append((output.logits,))
        elif self.answer == "span":
            self.kept.append((inputs, output.start_logits, output.end_logits))
        else:
            self.kept.append((type(output), output.logits, output.pred_boxes))

    def write(self, backend: Any, folder: Path) -> dict[str, Any]:
        """Convert every kept answer with the backend's processor and config, one JSON line per sample; what the
        worker's result says about it (count, or why there are none). Never raises: the energy figures stand."""
        try:
            answers = self.readable(backend)
        except Exception as err:  # a conversion that fails leaves the benchmark measured, its quality unscored
            return {"error": f"the kept outputs could not be read: {type(err).__name__}: {err}"}
        with (folder / OUTPUTS_FILE).open("w", encoding="utf-8") as out:
            for answer in answers:
                out.write(json.dumps(answer, ensure_ascii=False) + "\n")
        return {"file": OUTPUTS_FILE, "answer": self.answer, "samples": len(answers)}

    def readable(self, backend: Any) -> list[Any]:
        """Every kept answer as the quality metrics read it (one per sample; batches are split into rows)."""
        if self.answer == "text":
            return [text for length, sequences in self.kept for text in new_text(backend, length, sequences)]
        if self.answer == "class":
            return [top_class(backend.pretrained_config, logits) for (logits,) in self.kept]
        if self.answer == "span":
            return [answer_span(backend.pretrained_processor, *kept) for kept in self.kept]
        if len(self.kept) != len(self.image_sizes):
            raise ValueError(f"{len(self.kept)} detections kept for {len(self.image_sizes)} image sizes")
        processor = backend.pretrained_processor
        return [detections(processor, kept, size) for kept, size in zip(self.kept, self.image_sizes, strict=True)]


def _decoder(processor: Any) -> Any:
    """What decodes token ids: the processor itself (a tokenizer, or a multimodal processor that forwards to its
    tokenizer), else its ``tokenizer``."""
    return processor if hasattr(processor, "batch_decode") else processor.tokenizer


def new_text(backend: Any, prompt_length: int | None, sequences: Any) -> list[str]:
    """The text each row generated: a decoder-only model's result starts with its prompt (``prompt_length`` tokens),
    which is cut off; an encoder-decoder's holds only decoder tokens (start and forced tokens are special, and
    skipped)."""
    if prompt_length is not None and not getattr(backend.pretrained_config, "is_encoder_decoder", False):
        sequences = sequences[:, prompt_length:]
    texts: list[str] = _decoder(backend.pretrained_processor).batch_decode(sequences, skip_special_tokens=True)
    return texts


def top_class(config: Any, logits: Any) -> dict[str, Any]:
    """The top class (batch size 1): its index and the model's own name for it, so a reference matches either way."""
    label = int(logits[0].argmax(-1).item())
    names = getattr(config, "id2label", None) or {}
    return {"label": label, "name": str(names.get(label, label))}


def answer_span(processor: Any, inputs: Any, start_logits: Any, end_logits: Any) -> str:
    """The context span with the best start + end score, end >= start and at most MAX_ANSWER_TOKENS long, decoded;
    "" when the context kept no token."""
    import torch

    start, end = start_logits[0].float().cpu(), end_logits[0].float().cpu()
    n = int(start.shape[-1])
    context = context_mask(processor, inputs, n)
    ordered = torch.ones(n, n, dtype=torch.bool).triu() & ~torch.ones(n, n, dtype=torch.bool).triu(MAX_ANSWER_TOKENS)
    allowed = ordered & context[:, None] & context[None, :]
    if not bool(allowed.any()):
        return ""
    scores = (start[:, None] + end[None, :]).masked_fill(~allowed, float("-inf"))
    first, last = divmod(int(scores.argmax().item()), n)
    ids = inputs["input_ids"][0].tolist()
    decode = _decoder(processor).decode
    answer = str(decode(ids[first : last + 1], skip_special_tokens=True)).strip()
    in_context = [position for position in range(n) if bool(context[position])]
    text = str(decode([ids[i] for i in in_context], skip_special_tokens=True)).strip()
    before = str(decode([ids[i] for i in in_context if i < first], skip_special_tokens=True)).strip()
    return whole_words(text, answer, len(before))


def whole_words(context: str, answer: str, near: int) -> str:
    """``answer`` widened to the whole words of ``context`` it cuts ("keeper c" becomes "keeper counts"), found at
    or just before character ``near`` (where the tokens before the span end). The tokens optimum-benchmark gives the
    model carry no word ids, so the decoded context text decides; the answer as decoded when it is not found."""
    at = context.find(answer, max(0, near - 2)) if answer else -1
    if at < 0:
        at = context.find(answer) if answer else -1
    if at < 0:
        return answer
    left, right = at, at + len(answer)
    while left > 0 and context[left - 1].isalnum():
        left -= 1
    while right < len(context) and context[right].isalnum():
        right += 1
    return context[left:right]


def context_mask(processor: Any, inputs: Any, n: int) -> Any:
    """True for the context's tokens. energy_star tokenizes (question, context): the token type ids say which is
    which where the model has them; otherwise the context is what follows the first separator, up to the next."""
    import torch

    if "token_type_ids" in inputs:
        return inputs["token_type_ids"][0].cpu() == 1
    ids = inputs["input_ids"][0].cpu()
    sep = getattr(_decoder(processor), "sep_token_id", None)
    marks = (ids == sep).nonzero().flatten().tolist() if sep is not None else []
    if not marks:
        return torch.ones(n, dtype=torch.bool)
    mask = torch.zeros(n, dtype=torch.bool)
    begin = marks[0] + 1
    while begin < n and ids[begin] == sep:  # RoBERTa-style pairs are joined by two separators
        begin += 1
    finish = next((m for m in marks if m >= begin), n)
    mask[begin:finish] = True
    return mask


def detections(processor: Any, kept: tuple[Any, ...], size: list[int]) -> dict[str, Any]:
    """Boxes [x1, y1, x2, y2] in the original image's pixels, with scores and class indices, from the image
    processor's own post-processing; every detection is kept (threshold 0): mAP ranks them by score."""
    output_class, logits, boxes = kept
    width, height = size
    found = processor.post_process_object_detection(
        output_class(logits=logits, pred_boxes=boxes), threshold=0.0, target_sizes=[(height, width)]
    )[0]
    return {
        "boxes": found["boxes"].float().cpu().tolist(),
        "scores": found["scores"].float().cpu().tolist(),
        "labels": [int(label) for label in found["labels"].tolist()],
    }
