"""The pytorch backend: transformers and diffusers in this process, one sample at a time, on one device.

Rules it keeps (AI Energy Score's): batch size 1; one GPU (never ``device_map="auto"`` across GPUs); fp32, except
text generation in bf16/fp16 on a GPU (fp32 on the CPU); ``trust_remote_code`` off unless asked; token counts from the
tokenizer. Per-task differences live in small ``_Task`` classes so that each path is short and testable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..tasks import WARMUP_CALL, WARMUP_GENERATE, TaskSpec
from .base import Backend, BackendError, LoadRequest, ModelUnavailable, PhaseWork, Prepared, Progress

# Which transformers architectures may serve a task: the auto-mapping names in transformers.models.auto.
ARCHITECTURE_MAPPINGS = {
    "text_generation": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",),
    "reasoning": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",),
    "summarization": ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",),
    "question_answering": ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",),
    "text_classification": ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",),
    "image_classification": ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",),
    "object_detection": ("MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",),
    "automatic_speech_recognition": ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",),
    "image_captioning": ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES"),
}


def resolve_model_path(model: str) -> str:
    """A local folder, a model our offline packages ship, or a Hub id that must already be in the cache."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    from .. import offline_models

    try:
        offline = offline_models.resolve_offline_model(model)
    except offline_models.ModelUnavailable as err:
        raise ModelUnavailable(str(err)) from None
    if offline is not None:
        return str(offline)
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        try:
            from huggingface_hub import snapshot_download

            return str(snapshot_download(model, local_files_only=True))
        except Exception:
            raise ModelUnavailable(
                f"model {model!r} cannot be had here: not a local folder, not shipped by an offline model package, "
                "not in the Hugging Face cache, and the Hub is offline (HF_HUB_OFFLINE=1)"
            ) from None
    return model


def _config_architectures(path: str) -> list[str]:
    config = Path(path) / "config.json"
    if not config.is_file():
        return []
    try:
        return list(json.loads(config.read_text()).get("architectures") or [])
    except (OSError, json.JSONDecodeError):
        return []


def check_architecture(task: TaskSpec, model: str, path: str) -> None:
    """Refuse a model that is not for the task, before loading it with a randomly initialised head."""
    names = ARCHITECTURE_MAPPINGS.get(task.name)
    architectures = _config_architectures(path)
    if not names or not architectures:
        return
    from transformers.models.auto import modeling_auto

    allowed: set[str] = set()
    for name in names:
        for value in getattr(modeling_auto, name, {}).values():
            allowed.update(value if isinstance(value, (tuple, list)) else (value,))
    if not allowed.intersection(architectures):
        raise BackendError(
            f"model {model!r} ({', '.join(architectures)}) is not a {task.name} model; "
            f"{task.name} needs an architecture such as {sorted(allowed)[0]}"
        )


def pick_dtype(task: TaskSpec, device: str) -> Any:
    import torch

    if task.half_precision and device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class PytorchBackend(Backend):
    """transformers/diffusers in this process."""

    name = "pytorch"

    def __init__(self) -> None:
        self.task_impl: _Task | None = None
        self.facts: dict[str, Any] = {}

    def load(self, request: LoadRequest) -> dict[str, Any]:
        impl_class = TASK_IMPLEMENTATIONS[request.task.kind if request.task.kind == "call" else request.task.name]
        path = resolve_model_path(request.model)
        processor_path = resolve_model_path(request.processor) if request.processor else path
        check_architecture(request.task, request.model, path)
        impl = impl_class(request, path, processor_path)
        try:
            impl.load()
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BackendError(f"model {request.model!r} cannot be loaded for {request.task.name}: {first}") from None
        self.task_impl = impl
        self.facts = impl.facts()
        return self.facts

    @property
    def impl(self) -> _Task:
        if self.task_impl is None:
            raise BackendError("no model is loaded")
        return self.task_impl

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return self.impl.preprocess(samples)

    def warmup(self, prepared: Prepared, runs: int, overrides: dict[str, Any]) -> None:
        if runs and prepared.inputs:
            self.impl.warmup(prepared.inputs[0], runs, overrides)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        import torch

        with torch.inference_mode():
            return self.impl.run(phase, prepared, overrides, progress)

    def close(self) -> None:
        self.task_impl = None
        import gc

        gc.collect()
        torch = __import__("torch")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class _Task:
    """One task's loading, preprocessing and phases. Subclasses override what differs."""

    def __init__(self, request: LoadRequest, path: str, processor_path: str) -> None:
        self.request = request
        self.task = request.task
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
        model = self.model
        parameters = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
        return {
            "model_class": type(model).__name__,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": self.device,
            "parameters": parameters,
            "path": self.path,
        }

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
        for _ in range(runs):
            self.model(**first)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        if phase != "forward":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        model = self.model
        for inputs in prepared.inputs:
            model(**inputs)
            progress(1)
        return PhaseWork(samples=len(prepared), tokens=prepared.input_tokens)


class _TextTokenMixin:
    """Truncation to the model's window, counted."""

    tokenizer: Any
    model: Any

    def max_input_length(self, reserve: int = 0) -> int | None:
        limits = []
        config = getattr(self.model, "config", None)
        for name in ("max_position_embeddings", "n_positions", "max_source_positions"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                limits.append(value)
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 10**7:
            limits.append(model_max)
        return max(min(limits) - reserve, 1) if limits else None

    to_device: Callable[[Any], Any]

    def encode_all(
        self, texts: Sequence[tuple[str, ...]], limit: int | None, truncation: bool | str = True, **kwargs: Any
    ) -> Prepared:
        """Each text (or text pair) tokenised on its own, batch size 1, with tokens and truncations counted."""
        inputs, tokens, truncated = [], 0, 0
        for text in texts:
            encoded, cut = self.encode(text, limit, truncation, **kwargs)
            truncated += cut
            tokens += int(encoded["input_ids"].shape[-1])
            inputs.append(self.to_device(encoded))
        return Prepared(inputs, input_tokens=tokens, truncated=truncated)

    def encode(self, texts: Any, limit: int | None, truncation: bool | str = True, **kwargs: Any) -> tuple[Any, bool]:
        """Tokenise; only when the input is longer than the window, tokenise again truncated (and say so)."""
        full = self.tokenizer(*texts, return_tensors="pt", **kwargs)
        length = full["input_ids"].shape[-1]
        if limit is None or length <= limit:
            return full, False
        cut = self.tokenizer(*texts, return_tensors="pt", truncation=truncation, max_length=limit, **kwargs)
        return cut, True


class _Generative(_Task):
    """prefill (one new token) and generate (the protocol's tokens) over every sample; decode is derived."""

    def generate_kwargs(self, overrides: dict[str, Any], phase: str) -> dict[str, Any]:
        kwargs = {**self.task.generate_kwargs, **overrides}
        if phase == "prefill":
            kwargs.update(max_new_tokens=1, min_new_tokens=1)
        elif phase == "warmup":
            kwargs.update(WARMUP_GENERATE)
        pad = getattr(self.processor_tokenizer(), "pad_token_id", None)
        eos = getattr(self.processor_tokenizer(), "eos_token_id", None)
        if pad is None and eos is not None:
            kwargs.setdefault("pad_token_id", eos)
        return kwargs

    def processor_tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def generated_tokens(self, inputs: dict[str, Any], output: Any) -> int:
        """New tokens per sample: causal LMs echo the prompt, encoder-decoders start with one decoder token."""
        if self.model.config.is_encoder_decoder:
            return int(output.shape[-1]) - 1
        return int(output.shape[-1]) - int(inputs["input_ids"].shape[-1])

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        kwargs = self.generate_kwargs(overrides, "warmup")
        for _ in range(runs):
            self.model.generate(**first, **kwargs)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        if phase not in ("prefill", "generate"):
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        kwargs = self.generate_kwargs(overrides, phase)
        generate = self.model.generate
        new_tokens = 0
        for inputs in prepared.inputs:
            output = generate(**inputs, **kwargs)
            new_tokens += self.generated_tokens(inputs, output)
            progress(1)
        return PhaseWork(
            samples=len(prepared),
            tokens=new_tokens,
            details={"input_tokens": prepared.input_tokens, "generate_kwargs": _plain(kwargs)},
        )


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for k, v in kwargs.items()}


class _CausalLM(_Generative, _TextTokenMixin):
    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            self.processor_path, trust_remote_code=self.request.trust_remote_code
        )
        self.processor = self.tokenizer
        self.model = self.place(AutoModelForCausalLM.from_pretrained(self.path, **self.model_kwargs()))

    def prompt(self, text: str) -> str:
        if not self.task.reasoning:
            return text
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(f"model {self.request.model!r} has no chat template: reasoning cannot be switched on")
        rendered: str = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}],
            tokenize=False,
            add_generation_prompt=True,
            **dict(self.task.reasoning_kwargs),
        )
        return rendered

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        limit = self.max_input_length(reserve=int(self.task.generate_kwargs.get("max_new_tokens", 0)))
        special = not self.task.reasoning  # a chat template already carries its special tokens
        prompts = [(self.prompt(sample["text"]),) for sample in samples]
        return self.encode_all(prompts, limit, add_special_tokens=special)


class _Seq2Seq(_Generative, _TextTokenMixin):
    def load(self) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.processor_path)
        self.processor = self.tokenizer
        self.model = self.place(AutoModelForSeq2SeqLM.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return self.encode_all([(sample["text"],) for sample in samples], self.max_input_length())


class _SpeechSeq2Seq(_Generative):
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


class _ImageToText(_Generative):
    def load(self) -> None:
        import transformers

        auto = getattr(transformers, "AutoModelForImageTextToText", None) or getattr(transformers, _VISION2SEQ)
        self.processor = _image_text_processor(self.processor_path)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return Prepared([self.to_device(self.processor(images=s["image"], return_tensors="pt")) for s in samples])

    def generated_tokens(self, inputs: dict[str, Any], output: Any) -> int:
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            return int(output.shape[-1]) - int(inputs["input_ids"].shape[-1])
        return int(output.shape[-1]) - 1


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


class _TextClassification(_Task, _TextTokenMixin):
    def load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.processor_path)
        self.model = self.place(AutoModelForSequenceClassification.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return self.encode_all([(sample["text"],) for sample in samples], self.max_input_length())


class _QuestionAnswering(_TextClassification):
    def load(self) -> None:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.processor_path)
        self.model = self.place(AutoModelForQuestionAnswering.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        pairs = [(sample["question"], sample["context"]) for sample in samples]
        return self.encode_all(pairs, self.max_input_length(), truncation="only_second")  # keep the question whole


class _SentenceSimilarity(_TextClassification):
    """Both sentences embedded (two forwards per query), as a sentence-similarity pipeline does."""

    def load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.processor_path)
        self.model = self.place(AutoModel.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        sentences = [(sample[key],) for sample in samples for key in ("sentence1", "sentence2")]
        flat = self.encode_all(sentences, self.max_input_length())
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
        return PhaseWork(samples=len(prepared), tokens=prepared.input_tokens)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class _Vision(_Task):
    auto_class = "AutoModelForImageClassification"

    def load(self) -> None:
        import transformers

        self.processor = transformers.AutoImageProcessor.from_pretrained(self.processor_path)
        auto = getattr(transformers, self.auto_class)
        self.model = self.place(auto.from_pretrained(self.path, **self.model_kwargs()))

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return Prepared([self.to_device(self.processor(images=s["image"], return_tensors="pt")) for s in samples])


class _ObjectDetection(_Vision):
    auto_class = "AutoModelForObjectDetection"


class _Diffusion(_Task):
    """A diffusers text-to-image pipeline; phase ``call`` makes the protocol's images, one prompt at a time."""

    def model_kwargs(self) -> dict[str, Any]:
        return {"torch_dtype": self.dtype}

    def load(self) -> None:
        if not (Path(self.path) / "model_index.json").is_file() and Path(self.path).is_dir():
            raise BackendError(f"model {self.request.model!r} is not a diffusers pipeline (no model_index.json)")
        from diffusers import DiffusionPipeline

        self.model = DiffusionPipeline.from_pretrained(self.path, **self.model_kwargs()).to(self.device)
        self.model.set_progress_bar_config(disable=True)

    def facts(self) -> dict[str, Any]:
        parameters = 0
        for component in self.model.components.values():
            if hasattr(component, "parameters"):
                parameters += sum(p.numel() for p in component.parameters())
        return {
            "model_class": type(self.model).__name__,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": self.device,
            "parameters": parameters,
            "path": self.path,
        }

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return Prepared([str(s["prompt"]) for s in samples])

    def call_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {**self.task.call_kwargs, **overrides}

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        kwargs = {**self.call_kwargs(overrides), **WARMUP_CALL}
        for _ in range(runs):
            self.model(first, **kwargs)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        if phase != "call":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        kwargs = self.call_kwargs(overrides)
        images = 0
        for prompt in prepared.inputs:
            images += len(self.model(prompt, **kwargs).images)
            progress(1)
        return PhaseWork(samples=len(prepared), details={"images": images, "call_kwargs": _plain(kwargs)})


TASK_IMPLEMENTATIONS: dict[str, type[_Task]] = {
    "text_generation": _CausalLM,
    "reasoning": _CausalLM,
    "summarization": _Seq2Seq,
    "automatic_speech_recognition": _SpeechSeq2Seq,
    "image_captioning": _ImageToText,
    "text_classification": _TextClassification,
    "question_answering": _QuestionAnswering,
    "sentence_similarity": _SentenceSimilarity,
    "image_classification": _Vision,
    "object_detection": _ObjectDetection,
    "call": _Diffusion,
}
