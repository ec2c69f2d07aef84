"""The pytorch backend's generative tasks: prefill and generate phases over every sample, decode derived from them.

Text generation and reasoning (causal LMs), the T5 configs (seq2seq with a task prefix), speech recognition and
image captioning all run ``model.generate`` one sample at a time; they differ only in loading, preprocessing and how
new tokens are counted from the output, which is why they share :class:`Generative`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pytest_aienergyscore.backends.base import BackendError, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.pytorch.task import PytorchTask, TextTokenMixin, load_seq2seq, plain_kwargs


class Generative(PytorchTask):
    """prefill (one new token) and generate (the protocol's tokens) over every sample; decode is derived."""

    outputs_phase = "generate"  # the whole generation pass: prefill's one token is no answer
    has_answers = True

    def generate_kwargs(self, overrides: dict[str, Any], phase: str) -> dict[str, Any]:
        if phase == "prefill":
            kwargs = self.protocol.prefill(overrides)
        elif phase == "warmup":
            kwargs = self.protocol.warmup_generate(overrides)
        else:
            kwargs = self.protocol.generate(overrides)
        pad = getattr(self.processor_tokenizer(), "pad_token_id", None)
        eos = getattr(self.processor_tokenizer(), "eos_token_id", None)
        if pad is None and eos is not None:  # energy_star sets the tokenizer's pad token to its eos token
            kwargs.setdefault("pad_token_id", eos)
        return kwargs

    def processor_tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def prompt_length(self, inputs: dict[str, Any]) -> int:
        """Leading tokens of a ``generate`` output that are not new: causal LMs echo the prompt, encoder-decoders
        start with one decoder token. One rule for counting new tokens and for decoding the answer."""
        if self.model.config.is_encoder_decoder:
            return 1
        return int(inputs["input_ids"].shape[-1])

    def generated_tokens(self, inputs: dict[str, Any], output: Any) -> int:
        """New tokens per sample."""
        return int(output.shape[-1]) - self.prompt_length(inputs)

    def answer_of(self, inputs: Any, output: Any) -> Any:
        return inputs, output  # the prompt's length tells where the answer starts; read after the window

    def readable(self, kept: Any) -> str:
        """The new text only (no prompt, no special tokens), decoded with the model's own tokenizer."""
        inputs, output = kept
        new = output[0, self.prompt_length(inputs) :]
        text: str = self.processor_tokenizer().decode(new.tolist(), skip_special_tokens=True)
        return text

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        """energy_star's text-generation warm-up: one full generation, then ``runs`` two-token generations."""
        if not runs:
            return
        self.model.generate(**first, **self.generate_kwargs(overrides, "generate"))
        kwargs = self.generate_kwargs(overrides, "warmup")
        for _ in range(runs):
            self.model.generate(**first, **kwargs)

    def run(
        self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress, keep: list[Any] | None
    ) -> PhaseWork:
        if phase not in ("prefill", "generate"):
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        kwargs = self.generate_kwargs(overrides, phase)
        generate = self.model.generate
        per_sample: Counter[int] = Counter()
        for inputs in prepared.inputs:
            output = generate(**inputs, **kwargs)
            per_sample[self.generated_tokens(inputs, output)] += 1
            if keep is not None:
                keep.append(self.answer_of(inputs, output))
            progress(1)
        return PhaseWork(
            samples=len(prepared),
            tokens=sum(n * count for n, count in per_sample.items()),
            details={
                "input_tokens": prepared.input_tokens,
                "generate_kwargs": plain_kwargs(kwargs),
                "generate_calls": sum(per_sample.values()),
                "new_tokens_per_sample": {str(n): per_sample[n] for n in sorted(per_sample)},
            },
        )


class CausalLM(Generative, TextTokenMixin):
    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            self.processor_path, trust_remote_code=self.request.trust_remote_code
        )
        self.processor = self.tokenizer
        self.model = self.place(AutoModelForCausalLM.from_pretrained(self.path, **self.model_kwargs()))

    def prompt(self, text: str) -> str:
        """The raw prompt, or the chat template's rendering with the protocol's switches (thinking on)."""
        template = self.protocol.pre("chat_template")
        if not template:
            return text
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(f"model {self.request.model!r} has no chat template: reasoning cannot be switched on")
        switches = {**template, **dict(self.task.chat_template_extra)}
        rendered: str = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, **switches
        )
        return rendered

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        special = not self.protocol.pre("chat_template")  # a chat template already carries its special tokens
        prompts = [(self.prompt(sample["text"]),) for sample in samples]
        return self.encode_all(prompts, add_special_tokens=special, return_token_type_ids=False)


class Seq2Seq(Generative, TextTokenMixin):
    """energy_star's text2text-generation: the T5 configs (a task prefix before the text) and our generate variant."""

    def load(self) -> None:
        load_seq2seq(self)

    def text(self, sample: dict[str, Any]) -> str:
        first, second = self.protocol.pre("prefix1", ""), self.protocol.pre("prefix2")
        if second is not None:  # question answering: "question: <q> context: <c>"
            return f"{first}{sample['question']}{second}{sample['context']}"
        return f"{first}{sample['text']}"

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        texts = [(self.text(sample),) for sample in samples]
        return self.encode_all(texts, return_token_type_ids=False)


class SpeechSeq2Seq(Generative):
    def prompt_length(self, inputs: dict[str, Any]) -> int:
        """Whisper's ``generate`` strips its decoder prompt (start, language and task tokens): all it returns is new
        (checked against energy_star's own count by the parity tests)."""
        return 0

    def load(self) -> None:
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.processor_path)
        self.model = self.place(AutoModelForSpeechSeq2Seq.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        import numpy as np

        rate = int(self.processor.feature_extractor.sampling_rate)
        inputs = []
        for sample in samples:
            audio = np.asarray(sample["audio"]["array"], dtype=np.float32)
            source_rate = int(sample["audio"]["sampling_rate"])
            if source_rate != rate and len(audio) > 1:  # linear resampling: enough for energy, not for accuracy
                positions = np.linspace(0, len(audio) - 1, max(int(len(audio) * rate / source_rate), 1))
                audio = np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)
            encoded = self.processor(audio, sampling_rate=rate, return_tensors="pt")
            inputs.append(self.to_device(encoded))
        return Prepared(inputs, details={"sampling_rate": rate})


_VISION2SEQ = "AutoModelForVision2Seq"  # transformers 4.x name of the image-to-text auto class


class ImageToText(Generative):
    def load(self) -> None:
        import transformers

        auto = getattr(transformers, "AutoModelForImageTextToText", None) or getattr(transformers, _VISION2SEQ)
        self.processor = _image_text_processor(self.processor_path)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return Prepared([self.to_device(self.processor(images=s["image"], return_tensors="pt")) for s in samples])

    def prompt_length(self, inputs: dict[str, Any]) -> int:
        """A captioner with a text prompt echoes it; one without starts with its start token."""
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            return int(inputs["input_ids"].shape[-1])
        return 1


def _image_text_processor(path: str) -> Any:
    """AutoProcessor where the model has one; else an image processor plus tokenizer (VisionEncoderDecoder)."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError):
        image_processor = AutoImageProcessor.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)

        class _Pair:
            def __init__(self) -> None:
                self.tokenizer = tokenizer

            def __call__(self, images: Any, return_tensors: str) -> Any:
                return image_processor(images=images, return_tensors=return_tensors)

        return _Pair()
