"""The AI Energy Score tasks: what each one is called, which dataset it reads, what one query is.

The work each query does (phases, generation and call parameters, preprocessing) is not written here: it comes
from the protocol table in :mod:`.rules.protocol`, the one source every backend reads, and this module only points
at it. Why each field exists:
- ``dataset``/``columns``: which samples a query is made of;
- ``query`` and ``unit``: what one query is and what the efficiency is counted in (samples, tokens, images);
- ``half_precision``: text generation loads in bf16/fp16 on a GPU (the configs' ``torch_dtype``), others in fp32;
- ``classed``: the leaderboard compares the task's models (and bins its stars) only within one model class.
Every other list of task names (the leaderboard's, the offline samples', the Docker command's) is derived from this
table, so a task is added or changed in one place. Nothing here imports an ML library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pytest_aienergyscore.rules.protocol import PROTOCOLS, Protocol, protocol_for

PROTOCOL_SAMPLES = PROTOCOLS["text_generation"].samples.value
PROTOCOL_BATCH_SIZE = PROTOCOLS["text_generation"].batch_size.value
WARMUP_RUNS = PROTOCOLS["text_generation"].warmup_runs.value


class UnknownTask(ValueError):
    """A task name that is not in the table."""


@dataclass(frozen=True)
class TaskSpec:
    """One AI Energy Score task."""

    name: str
    title: str
    hf_task: str
    dataset: str
    columns: Mapping[str, str]
    query: str
    unit: str
    reasoning: bool = False
    # Extra chat-template switches a test gave (reasoning_effort="high", say): they change the protocol.
    chat_template_extra: Mapping[str, Any] = field(default_factory=dict)
    half_precision: bool = False
    classed: bool = False
    reference_model: str | None = None
    leaderboard_task: str | None = None

    @property
    def default_protocol(self) -> Protocol:
        """The task's protocol for an ordinary model (T5-family models and named variants: :meth:`protocol_for`)."""
        return PROTOCOLS[self.name]

    def protocol_for(self, model_type: str | None = None, variant: str | None = None) -> Protocol:
        return protocol_for(self.name, model_type, variant)

    @property
    def kind(self) -> str:
        return self.default_protocol.kind

    @property
    def phases(self) -> tuple[str, ...]:
        """The metered phases in report order."""
        return self.default_protocol.phases

    @property
    def is_generative(self) -> bool:
        return self.default_protocol.is_generative

    @property
    def generate_kwargs(self) -> Mapping[str, Any]:
        return MappingProxyType(self.default_protocol.generate())

    @property
    def call_kwargs(self) -> Mapping[str, Any]:
        return MappingProxyType(self.default_protocol.call())

    @property
    def reasoning_kwargs(self) -> Mapping[str, Any]:
        """Chat-template switches of the task's own protocol (thinking on, for reasoning) and any a test added."""
        return self.chat_template_switches(self.default_protocol)

    def chat_template_switches(self, protocol: Protocol) -> Mapping[str, Any]:
        """The switches a chat template is rendered with under ``protocol`` (a variant may differ from the task's
        own), with the ones a test added on top; ``add_generation_prompt`` is left to whoever renders the template."""
        template = protocol.pre("chat_template") or {}
        switches = {k: v for k, v in template.items() if k != "add_generation_prompt"}
        return MappingProxyType({**switches, **self.chat_template_extra})


def _task(**kwargs: Any) -> TaskSpec:
    kwargs["columns"] = MappingProxyType(kwargs["columns"])
    return TaskSpec(**kwargs)


TASKS: Mapping[str, TaskSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _task(
                name="text_generation",
                title="Text generation",
                hf_task="text-generation",
                dataset="AIEnergyScore/text_generation",
                columns={"text": "text"},
                query="prompt",
                unit="tokens",
                half_precision=True,
                classed=True,
                reference_model="openai/gpt-oss-20b",
                leaderboard_task="text_generation",
            ),
            _task(
                name="reasoning",
                title="Text generation with reasoning",
                hf_task="text-generation",
                dataset="AIEnergyScore/text_generation",
                columns={"text": "text"},
                query="prompt (reasoning on)",
                unit="tokens",
                reasoning=True,
                half_precision=True,
                classed=True,
                reference_model="Qwen/Qwen3-0.6B",
                leaderboard_task="reasoning",
            ),
            _task(
                name="summarization",
                title="Summarization",
                hf_task="summarization",
                dataset="AIEnergyScore/summarization",
                columns={"text": "text"},
                query="document",
                unit="tokens",
                reference_model="sshleifer/distilbart-cnn-12-6",
                leaderboard_task="summarization",
            ),
            _task(
                name="question_answering",
                title="Extractive question answering",
                hf_task="question-answering",
                dataset="AIEnergyScore/extractive_qa",
                columns={"question": "question", "context": "context"},
                query="question with its context",
                unit="samples",
                reference_model="deepset/electra-base-squad2",
                leaderboard_task="question_answering",
            ),
            _task(
                name="text_classification",
                title="Text classification",
                hf_task="text-classification",
                dataset="AIEnergyScore/text_classification",
                columns={"text": "text"},
                query="text",
                unit="samples",
                reference_model="lvwerra/distilbert-imdb",
                leaderboard_task="text_classification",
            ),
            _task(
                name="sentence_similarity",
                title="Sentence similarity",
                hf_task="sentence-similarity",
                dataset="AIEnergyScore/sentence_similarity",
                columns={"sentence1": "sentence1", "sentence2": "sentence2"},
                query="sentence pair",
                unit="samples",
                reference_model="sentence-transformers/all-MiniLM-L6-v2",
                leaderboard_task="sentence_similarity",
            ),
            _task(
                name="image_classification",
                title="Image classification",
                hf_task="image-classification",
                dataset="AIEnergyScore/image_classification",
                columns={"image": "image"},
                query="image",
                unit="samples",
                reference_model="google/vit-base-patch16-224",
                leaderboard_task="image_classification",
            ),
            _task(
                name="object_detection",
                title="Object detection",
                hf_task="object-detection",
                dataset="AIEnergyScore/object_detection",
                columns={"image": "image"},
                query="image",
                unit="samples",
                reference_model="facebook/detr-resnet-50",
                leaderboard_task="object_detection",
            ),
            _task(
                name="automatic_speech_recognition",
                title="Automatic speech recognition",
                hf_task="automatic-speech-recognition",
                dataset="AIEnergyScore/ASR",
                columns={"audio": "audio"},
                query="audio clip",
                unit="tokens",
                reference_model="openai/whisper-large-v3",
                leaderboard_task="automatic_speech_recognition",
            ),
            _task(
                name="image_captioning",
                title="Image captioning",
                hf_task="image-to-text",
                dataset="AIEnergyScore/image_captioning",
                columns={"image": "image"},
                query="image",
                unit="tokens",
                reference_model="Salesforce/blip-image-captioning-base",
                leaderboard_task="image_captioning",
            ),
            _task(
                name="image_generation",
                title="Image generation",
                hf_task="text-to-image",
                dataset="AIEnergyScore/image_generation",
                columns={"prompt": "prompt"},
                query="prompt (one image)",
                unit="images",
                reference_model="segmind/tiny-sd",
                leaderboard_task="image_generation",
            ),
        )
    }
)

# Names people already use for the same tasks (optimum-benchmark config names, Hub pipeline tags).
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "asr": "automatic_speech_recognition",
        "image_to_text": "image_captioning",
        "text_to_image": "image_generation",
        "extractive_qa": "question_answering",
        "text_generation_reasoning": "reasoning",
        **{spec.hf_task.replace("-", "_"): spec.name for spec in TASKS.values() if not spec.reasoning},
    }
)

CLASSED_TASKS: frozenset[str] = frozenset(spec.name for spec in TASKS.values() if spec.classed)
"""Tasks compared within one model class (A, B, C): a class is needed to rate them or call them comparable."""


def with_reasoning(name: str, on: bool) -> str | None:
    """The task doing ``name``'s work with reasoning switched on or off; None when the task has no reasoning variant.

    Derived from the table, not listed: a reasoning task is the task of the same pipeline with thinking on, so the
    pipeline's two rows are the pair (text generation and reasoning today).
    """
    pipeline = TASKS[name].hf_task
    variants = {spec.reasoning: spec.name for spec in TASKS.values() if spec.hf_task == pipeline}
    return variants.get(on) if len(variants) == 2 else None


def get_task(name: str) -> TaskSpec:
    """The task called ``name`` (or one of its aliases); a clear error naming the allowed tasks otherwise."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    try:
        return TASKS[key]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; allowed: {', '.join(TASKS)}") from None
