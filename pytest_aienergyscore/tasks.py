"""The AI Energy Score task table: for each task, the protocol that optimum-benchmark's ``energy_star`` scenario
follows, written down once so that every backend runs the same thing.

Why each field exists:
- ``dataset``/``columns``: which samples a query is made of (1,000 of them, batch size 1);
- ``kind``: which metered phases the task has: ``generate`` (preprocess, prefill, decode), ``forward`` (preprocess,
  forward) or ``call`` (preprocess, call, for diffusion pipelines);
- ``generate_kwargs``/``call_kwargs``: the exact work per query (greedy, fixed token counts, fixed steps and size);
- ``query`` and ``unit``: what one query is and what the efficiency is counted in (samples, tokens, images).
Nothing here imports an ML library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PROTOCOL_SAMPLES = 1000
PROTOCOL_BATCH_SIZE = 1
WARMUP_RUNS = 10

GREEDY_10 = MappingProxyType(
    {"max_new_tokens": 10, "min_new_tokens": 10, "do_sample": False, "num_beams": 1, "num_return_sequences": 1}
)
# Warm-up generates 2 tokens (energy_star's override): enough to compile kernels and fill caches, cheap to run.
WARMUP_GENERATE = MappingProxyType({"max_new_tokens": 2, "min_new_tokens": 2})
WARMUP_CALL = MappingProxyType({"num_inference_steps": 2})


class UnknownTask(ValueError):
    """A task name that is not in the table."""


@dataclass(frozen=True)
class TaskSpec:
    """One AI Energy Score task."""

    name: str
    title: str
    hf_task: str
    kind: str
    dataset: str
    columns: Mapping[str, str]
    query: str
    unit: str
    generate_kwargs: Mapping[str, Any] = field(default_factory=dict)
    call_kwargs: Mapping[str, Any] = field(default_factory=dict)
    reasoning: bool = False
    reasoning_kwargs: Mapping[str, Any] = field(default_factory=dict)
    half_precision: bool = False
    reference_model: str | None = None
    leaderboard_task: str | None = None

    @property
    def phases(self) -> tuple[str, ...]:
        """The metered phases in report order."""
        return {"generate": ("preprocess", "prefill", "decode"), "forward": ("preprocess", "forward")}.get(
            self.kind, ("preprocess", "call")
        )

    @property
    def is_generative(self) -> bool:
        return self.kind == "generate"

    def protocol(self) -> dict[str, Any]:
        """The parameters a result must have used to be comparable, for records and reports."""
        return {
            "samples": PROTOCOL_SAMPLES,
            "batch_size": PROTOCOL_BATCH_SIZE,
            "generate_kwargs": dict(self.generate_kwargs),
            "call_kwargs": dict(self.call_kwargs),
            "reasoning": self.reasoning,
            "reasoning_kwargs": dict(self.reasoning_kwargs),
        }


def _task(**kwargs: Any) -> TaskSpec:
    kwargs["columns"] = MappingProxyType(kwargs["columns"])
    for key in ("generate_kwargs", "call_kwargs", "reasoning_kwargs"):
        kwargs[key] = MappingProxyType(dict(kwargs.get(key, {})))
    return TaskSpec(**kwargs)


TASKS: Mapping[str, TaskSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _task(
                name="text_generation",
                title="Text generation",
                hf_task="text-generation",
                kind="generate",
                dataset="AIEnergyScore/text_generation",
                columns={"text": "text"},
                query="prompt",
                unit="tokens",
                generate_kwargs=GREEDY_10,
                half_precision=True,
                reference_model="openai/gpt-oss-20b",
                leaderboard_task="text_generation",
            ),
            _task(
                name="reasoning",
                title="Text generation with reasoning",
                hf_task="text-generation",
                kind="generate",
                dataset="AIEnergyScore/text_generation",
                columns={"text": "text"},
                query="prompt (reasoning on)",
                unit="tokens",
                generate_kwargs={**GREEDY_10, "max_new_tokens": 8192, "min_new_tokens": 1},
                reasoning=True,
                reasoning_kwargs={"enable_thinking": True},
                half_precision=True,
                reference_model="Qwen/Qwen3-0.6B",
                leaderboard_task="reasoning",
            ),
            _task(
                name="summarization",
                title="Summarization",
                hf_task="summarization",
                kind="generate",
                dataset="AIEnergyScore/summarization",
                columns={"text": "text"},
                query="document",
                unit="tokens",
                generate_kwargs=GREEDY_10,
                reference_model="sshleifer/distilbart-cnn-12-6",
                leaderboard_task="summarization",
            ),
            _task(
                name="question_answering",
                title="Extractive question answering",
                hf_task="question-answering",
                kind="forward",
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
                kind="forward",
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
                kind="forward",
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
                kind="forward",
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
                kind="forward",
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
                kind="generate",
                dataset="AIEnergyScore/ASR",
                columns={"audio": "audio"},
                query="audio clip",
                unit="tokens",
                generate_kwargs=GREEDY_10,
                reference_model="openai/whisper-large-v3",
                leaderboard_task="automatic_speech_recognition",
            ),
            _task(
                name="image_captioning",
                title="Image captioning",
                hf_task="image-to-text",
                kind="generate",
                dataset="AIEnergyScore/image_captioning",
                columns={"image": "image"},
                query="image",
                unit="tokens",
                generate_kwargs=GREEDY_10,
                reference_model="Salesforce/blip-image-captioning-base",
                leaderboard_task="image_captioning",
            ),
            _task(
                name="image_generation",
                title="Image generation",
                hf_task="text-to-image",
                kind="call",
                dataset="AIEnergyScore/image_generation",
                columns={"prompt": "prompt"},
                query="prompt (one image)",
                unit="images",
                call_kwargs={"num_inference_steps": 30, "num_images_per_prompt": 1, "height": 512, "width": 512},
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
        **{spec.hf_task.replace("-", "_"): spec.name for spec in TASKS.values() if spec.name != "reasoning"},
    }
)


def get_task(name: str) -> TaskSpec:
    """The task called ``name`` (or one of its aliases); a clear error naming the allowed tasks otherwise."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    try:
        return TASKS[key]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; allowed: {', '.join(TASKS)}") from None
