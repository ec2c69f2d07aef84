"""The pytorch backend: transformers and diffusers in this process, one sample at a time, on one device.

It does the work optimum-benchmark's energy_star scenario does, as the protocol table (:mod:`..rules.protocol`)
writes it down and the parity tests check: the same preprocessing (truncation to the model's window, text pairs as
one sequence, images in RGB), the same generation and call parameters, the same warm-up, the same phases. Rules it
adds (AI Energy Score's): batch size 1; one GPU (never ``device_map="auto"`` across GPUs); fp32, except text
generation in bf16/fp16 on a GPU; ``trust_remote_code`` off unless asked. Every phase says what it actually did
(new tokens per sample, forward calls, images, scheduler steps), counted from outputs, never from the configuration.
Per-task differences live in small ``_Task`` classes so that each path is short and testable.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends.base import (
    Backend,
    BackendError,
    LoadRequest,
    ModelUnavailable,
    PhaseWork,
    Prepared,
    Progress,
    local_model_type,
)
from pytest_aienergyscore.rules.protocol import WINDOW_DEFAULT, Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

SEED = 42  # optimum-benchmark's backends call set_seed(42) before loading; sampled protocols (reasoning) need it

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


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def resolve_model_path(model: str) -> str:
    """A local folder; a Hub id's snapshot in the local cache; the Hub id itself while the Hub can be reached; and
    only when it cannot (``HF_HUB_OFFLINE``), a stand-in shipped by an offline package (see :func:`substitute_note`)."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    from pytest_aienergyscore.backends import offline_models

    cached = _cached_snapshot(model)
    if cached is not None:
        return cached
    if not hub_offline():
        return model
    try:
        offline = offline_models.resolve_offline_model(model)
    except offline_models.ModelUnavailable as err:
        raise ModelUnavailable(str(err)) from None
    if offline is not None:
        return str(offline)
    raise ModelUnavailable(
        f"model {model!r} cannot be had here: not a local folder, not shipped by an offline model package, "
        "not in the Hugging Face cache, and the Hub is offline (HF_HUB_OFFLINE=1)"
    )


def _cached_snapshot(model: str) -> str | None:
    """The model's snapshot in the Hugging Face cache, without asking the Hub; None when it is not there."""
    if "/" not in model or model.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(model, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id: either way, not here
        return None


def substitute_facts(model: str, path: str) -> dict[str, Any]:
    """Facts for the record when ``path`` is an offline stand-in for ``model`` rather than the model's own files."""
    from pytest_aienergyscore.backends import offline_models

    if Path(model).expanduser().is_dir() or path == model:
        return {}
    found = offline_models.substitute_for(model)
    if found is None:
        return {}
    note, comparable = found
    return {"substitute": {"note": note, "comparable": comparable}, "notes": [f"offline stand-in: {note}"]}


def _config_architectures(path: str) -> list[str]:
    config = Path(path) / "config.json"
    if not config.is_file():
        return []
    try:
        return list(json.loads(config.read_text()).get("architectures") or [])
    except (OSError, json.JSONDecodeError):
        return []


def check_architecture(protocol: Protocol, model: str, path: str) -> None:
    """Refuse a model that is not for the protocol's work, before loading it with a randomly initialised head: the
    task's architectures, or a seq2seq one where the protocol is text2text generation (the T5 configs)."""
    task = protocol.task
    text2text = protocol.optimum_task == "text2text-generation"
    names = ARCHITECTURE_MAPPINGS["summarization"] if text2text else ARCHITECTURE_MAPPINGS.get(task)
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
            f"model {model!r} ({', '.join(architectures)}) is not a {task} model; "
            f"{task} needs an architecture such as {sorted(allowed)[0]}"
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
    def impl(self) -> _Task:
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
        import torch

        with self.model_errors(phase), torch.inference_mode():
            return self.impl.run(phase, prepared, overrides, progress)

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


class _Task:
    """One task's loading, preprocessing and phases. Subclasses override what differs."""

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
        """energy_star's inference warm-up: ``warmup_runs`` forwards of the first sample."""
        for _ in range(runs):
            self.model(**first)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        if phase != "forward":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        model, calls = self.model, 0
        for inputs in prepared.inputs:
            model(**inputs)
            calls += 1
            progress(1)
        return PhaseWork(samples=len(prepared), tokens=prepared.input_tokens, details={"forward_calls": calls})


class _TextTokenMixin:
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


class _Generative(_Task):
    """prefill (one new token) and generate (the protocol's tokens) over every sample; decode is derived."""

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

    def generated_tokens(self, inputs: dict[str, Any], output: Any) -> int:
        """New tokens per sample: causal LMs echo the prompt, encoder-decoders start with one decoder token."""
        if self.model.config.is_encoder_decoder:
            return int(output.shape[-1]) - 1
        return int(output.shape[-1]) - int(inputs["input_ids"].shape[-1])

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        """energy_star's text-generation warm-up: one full generation, then ``runs`` two-token generations."""
        if not runs:
            return
        self.model.generate(**first, **self.generate_kwargs(overrides, "generate"))
        kwargs = self.generate_kwargs(overrides, "warmup")
        for _ in range(runs):
            self.model.generate(**first, **kwargs)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        if phase not in ("prefill", "generate"):
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        kwargs = self.generate_kwargs(overrides, phase)
        generate = self.model.generate
        per_sample: Counter[int] = Counter()
        for inputs in prepared.inputs:
            output = generate(**inputs, **kwargs)
            per_sample[self.generated_tokens(inputs, output)] += 1
            progress(1)
        return PhaseWork(
            samples=len(prepared),
            tokens=sum(n * count for n, count in per_sample.items()),
            details={
                "input_tokens": prepared.input_tokens,
                "generate_kwargs": _plain(kwargs),
                "generate_calls": sum(per_sample.values()),
                "new_tokens_per_sample": {str(n): per_sample[n] for n in sorted(per_sample)},
            },
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


def _seq2seq_load(impl: Any) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    impl.tokenizer = AutoTokenizer.from_pretrained(impl.processor_path)
    impl.processor = impl.tokenizer
    impl.model = impl.place(AutoModelForSeq2SeqLM.from_pretrained(impl.path, **impl.model_kwargs()))


class _Seq2Seq(_Generative, _TextTokenMixin):
    """energy_star's text2text-generation: the T5 configs (a task prefix before the text) and our generate variant."""

    def load(self) -> None:
        _seq2seq_load(self)

    def text(self, sample: dict[str, Any]) -> str:
        first, second = self.protocol.pre("prefix1", ""), self.protocol.pre("prefix2")
        if second is not None:  # question answering: "question: <q> context: <c>"
            return f"{first}{sample['question']}{second}{sample['context']}"
        return f"{first}{sample['text']}"

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        texts = [(self.text(sample),) for sample in samples]
        return self.encode_all(texts, return_token_type_ids=False)


class _Seq2SeqForward(_Task, _TextTokenMixin):
    """energy_star's summarization: one forward pass of the seq2seq model per document (no generation)."""

    def load(self) -> None:
        _seq2seq_load(self)

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return self.encode_all([(sample["text"],) for sample in samples])


class _SpeechSeq2Seq(_Generative):
    def generated_tokens(self, inputs: dict[str, Any], output: Any) -> int:
        """Whisper's ``generate`` strips its decoder prompt (start, language and task tokens): all it returns is new
        (checked against energy_star's own count by the parity tests)."""
        return int(output.shape[-1])

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


class _TextForward(_Task, _TextTokenMixin):
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


class _QuestionAnswering(_TextForward):
    auto_class = "AutoModelForQuestionAnswering"


class _SentencePair(_TextForward):
    """energy_star's sentence similarity: the pair as one sequence through the base model, one forward per query."""

    auto_class = "AutoModel"


class _SentenceEmbeddings(_TextForward):
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


class _Vision(_Task):
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

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        """energy_star's diffusion warm-up: one call with the protocol's kwargs, then ``runs`` two-step calls."""
        if not runs:
            return
        self.model(first, **self.protocol.call(overrides))
        kwargs = self.protocol.warmup_call(overrides)
        for _ in range(runs):
            self.model(first, **kwargs)

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        if phase != "call":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        kwargs = self.protocol.call(overrides)
        images, size = 0, None
        with count_calls(self.model.scheduler, "step") as steps:
            for prompt in prepared.inputs:
                output = self.model(prompt, **kwargs).images
                images += len(output)
                size = size or (list(output[0].size) if output and hasattr(output[0], "size") else None)
                progress(1)
        details = {"images": images, "image_size": size, "scheduler_steps": steps[0], "call_kwargs": _plain(kwargs)}
        return PhaseWork(samples=len(prepared), details=details)


class count_calls:
    """Counts calls of ``owner.name`` while the block runs (the scheduler's steps: what a diffusion call did)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name, self.count = owner, name, [0]

    def __enter__(self) -> list[int]:
        original = getattr(self.owner, self.name)
        count = self.count

        def counted(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            return original(*args, **kwargs)

        setattr(self.owner, self.name, counted)
        return count

    def __exit__(self, *exc: object) -> None:
        delattr(self.owner, self.name)  # the instance attribute goes; the class's method shows through again


def implementation_for(protocol: Protocol) -> type[_Task]:
    """The ``_Task`` class that does a protocol's work."""
    if protocol.kind == "call":
        return _Diffusion
    if protocol.optimum_task == "text2text-generation":
        return _Seq2Seq
    if protocol.task == "summarization":
        return _Seq2SeqForward
    if protocol.task == "sentence_similarity":
        return _SentenceEmbeddings if protocol.pre("embed_separately") else _SentencePair
    return TASK_IMPLEMENTATIONS[protocol.task]


TASK_IMPLEMENTATIONS: dict[str, type[_Task]] = {
    "text_generation": _CausalLM,
    "reasoning": _CausalLM,
    "automatic_speech_recognition": _SpeechSeq2Seq,
    "image_captioning": _ImageToText,
    "text_classification": _TextForward,
    "question_answering": _QuestionAnswering,
    "image_classification": _Vision,
    "object_detection": _ObjectDetection,
}
