"""The protocol table: for every AI Energy Score task, the work one query is, and where each value comes from.

This is the only place any backend gets task parameters from. A figure marked comparable is a promise that the
same model, run the leaderboard's way on an H100, would land at that value; so every value here names its upstream
source, and the parity tests (``tests/test_protocol_parity.py``) run optimum-benchmark's own ``energy_star``
scenario beside our pytorch backend and check that both do the same work. Where the tests and this table disagree,
the tests win and this table is fixed.

How upstream decides the work (read from the sources below, not guessed):
- energy_star runs ``prefill`` + ``decode`` only for its text-generation tasks (text-generation, image-to-text,
  automatic-speech-recognition, text2text-generation...); every other task is one ``forward`` per sample, and
  diffusion pipelines one ``call``. Its ``summarization`` task is therefore a forward pass per document: the
  config's ``generate_kwargs`` are never used. T5-family models cannot run a forward without decoder inputs, so the
  leaderboard ran them with the ``t5_*`` configs: text2text generation with a task prefix.
- Generation defaults are the scenario's (greedy, 100 new tokens, min = max), overridden by each config: text
  generation and the T5 configs ask for 10 tokens; ASR and image captioning ask nothing, so they generate 100.
- Image generation: 30 steps, one image, the pipeline's own default size.
- Reasoning rows (Dec 2025) come from AI Energy Score's default runner since Nov 2025 (ai_energy_benchmarks): chat
  template with thinking on, up to 8,192 new tokens, sampling at temperature 0.7, top_p 0.9, top_k 50.

Variants of our own (a forward-free summarization, say) are offered by name; they are recorded and never comparable.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Full commits: optimum-benchmark 0.6.0 = 7fa7b6797d7eb7c132a0b3c249cf63e95510db31 (its energy_star code is unchanged
# at b263af468a9e9a9a3d1449039849727352955646, where the configs were read); AIEnergyScore
# a5b9a048ecd44aa087cdd5b575a17d705128c424 (Dec 2025).
OPTIMUM_BENCHMARK_RELEASE = "optimum-benchmark 0.6.0 @7fa7b679"
ENERGY_STAR_CONFIGS = "optimum-benchmark energy_star/ configs @b263af46"
AIENERGYSCORE_COMMIT = "AIEnergyScore @a5b9a048"

# Where values come from. A value's source is "<key>" or "<key>:<detail>" (a config file's name, say).
SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "scenario": f"{OPTIMUM_BENCHMARK_RELEASE} scenarios/energy_star/scenario.py",
        "scenario_config": f"{OPTIMUM_BENCHMARK_RELEASE} scenarios/energy_star/config.py",
        "preprocessor": f"{OPTIMUM_BENCHMARK_RELEASE} preprocessors/dataset_preprocessor.py",
        "config": ENERGY_STAR_CONFIGS,
        "reasoning_helpers": f"{AIENERGYSCORE_COMMIT} reasoning_helpers.py get_token_parameters",
        "default_runner": (
            f"ai_energy_benchmarks 0.0.4 (pinned by {AIENERGYSCORE_COMMIT}) backends/pytorch.py run_inference, "
            "runner.py"
        ),
        "ours": "pytest-aienergyscore's own variant, not the leaderboard's method",
    }
)


class UnknownVariant(ValueError):
    """A protocol variant that the task does not have."""


@dataclass(frozen=True)
class Value:
    """One protocol parameter and the source it was read from."""

    value: Any
    source: str

    def source_text(self) -> str:
        key, _, detail = self.source.partition(":")
        text = SOURCES[key]
        return f"{text} ({detail})" if detail else text


def _values(source: str, values: Mapping[str, Any]) -> dict[str, Value]:
    return {key: Value(value, source) for key, value in values.items()}


# energy_star's TEXT_GENERATION_DEFAULT_KWARGS, the base of every generative task.
_SCENARIO_GENERATE = _values(
    "scenario",
    {
        "num_return_sequences": 1,
        "max_new_tokens": 100,
        "min_new_tokens": 100,
        "do_sample": False,
        "use_cache": True,
        "num_beams": 1,
    },
)
_DIFFUSION_CALL = _values("scenario", {"num_inference_steps": 30, "num_images_per_prompt": 1})
_WARMUP_GENERATE = _values("scenario", {"max_new_tokens": 2, "min_new_tokens": 2})
_WARMUP_CALL = _values("scenario", {"num_inference_steps": 2})
_PREFILL = _values("scenario", {"max_new_tokens": 1, "min_new_tokens": 1})

# The model's window for truncation: ``getattr(config, "max_position_embeddings", 512)`` in every text preprocessor.
WINDOW_DEFAULT = 512


@dataclass(frozen=True)
class Protocol:
    """The work of one task (or one of its variants): phases, parameters, preprocessing, and their sources."""

    task: str
    kind: str  # "generate" (preprocess, prefill, decode), "forward" (preprocess, forward), "call" (preprocess, call)
    optimum_task: str
    variant: str = "default"
    comparable: bool = True
    generate_kwargs: Mapping[str, Value] = field(default_factory=dict)
    call_kwargs: Mapping[str, Value] = field(default_factory=dict)
    preprocessing: Mapping[str, Value] = field(default_factory=dict)
    samples: Value = Value(1000, "config")
    batch_size: Value = Value(1, "config")
    warmup_runs: Value = Value(10, "scenario_config")
    optimum_scenario: Mapping[str, Value] = field(default_factory=dict)  # extra energy_star scenario fields
    note: str = ""

    @property
    def phases(self) -> tuple[str, ...]:
        return {"generate": ("preprocess", "prefill", "decode"), "forward": ("preprocess", "forward")}.get(
            self.kind, ("preprocess", "call")
        )

    @property
    def is_generative(self) -> bool:
        return self.kind == "generate"

    def generate(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Generation kwargs of the metered generation pass, with a test's overrides on top."""
        return {**{k: v.value for k, v in self.generate_kwargs.items()}, **(overrides or {})}

    def prefill(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The prefill pass: the same kwargs with exactly one new token (energy_star's prefill overrides)."""
        return {**self.generate(overrides), **{k: v.value for k, v in _PREFILL.items()}}

    def warmup_generate(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """energy_star's short warm-up generations: two new tokens."""
        return {**self.generate(overrides), **{k: v.value for k, v in _WARMUP_GENERATE.items()}}

    def call(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**{k: v.value for k, v in self.call_kwargs.items()}, **(overrides or {})}

    def warmup_call(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.call(overrides), **{k: v.value for k, v in _WARMUP_CALL.items()}}

    def pre(self, key: str, default: Any = None) -> Any:
        """A preprocessing value (truncation, prefix, text pair, chat template...)."""
        item = self.preprocessing.get(key)
        return default if item is None else item.value

    def source_keys(self) -> set[str]:
        """The keys of :data:`SOURCES` this protocol's values come from."""
        groups = (self.generate_kwargs, self.call_kwargs, self.preprocessing, self.optimum_scenario)
        values = [*(v for group in groups for v in group.values()), self.samples, self.batch_size, self.warmup_runs]
        return {value.source.partition(":")[0] for value in values}

    def to_dict(self) -> dict[str, Any]:
        """The protocol as ``aienergyscore protocol --json`` prints it and ``benchmark_report.json`` keeps it."""
        data: dict[str, Any] = {
            "task": self.task,
            "variant": self.variant,
            "comparable": self.comparable,
            "phases": list(self.phases),
            "optimum_task": self.optimum_task,
            "samples": self.samples.value,
            "batch_size": self.batch_size.value,
            "warmup_runs": self.warmup_runs.value,
        }
        sources: dict[str, str] = {
            "samples": self.samples.source_text(),
            "batch_size": self.batch_size.source_text(),
            "warmup_runs": self.warmup_runs.source_text(),
        }
        for group in ("generate_kwargs", "call_kwargs", "preprocessing", "optimum_scenario"):
            values: Mapping[str, Value] = getattr(self, group)
            if values or group == ("call_kwargs" if self.kind == "call" else "generate_kwargs"):
                data[group] = {key: value.value for key, value in values.items()}
                sources.update({f"{group}.{key}": value.source_text() for key, value in values.items()})
        if self.note:
            data["note"] = self.note
        data["sources"] = sources
        return data


def _text(source: str, reserve: str | None = None, **extra: Any) -> dict[str, Value]:
    """The text preprocessors' common rules: empty samples dropped, truncation to the model's window."""
    values = {"drop_empty": True, "truncation": True, "window_default": WINDOW_DEFAULT, **extra}
    if reserve:
        values["window_reserve"] = reserve
    return _values(source, values)


# text2text preprocessing subtracts ``len(tokenizer(prefix))`` from the window for each prefix: the number of fields a
# tokenizer returns (input_ids and attention_mask: 2), not the prefix's tokens. We follow it, so that inputs are cut
# where upstream cuts them; its text_generation branch subtracts the new tokens instead.
PREFIX_FIELDS = 2


def _t5(
    task: str, config: str, prefix: Mapping[str, str], t5_task: str, generate: Mapping[str, Any] | None
) -> Protocol:
    """A T5-family model on a text task: text2text generation with energy_star's task prefix."""
    kwargs = dict(_SCENARIO_GENERATE)
    kwargs.update(_values(f"config:{config}", generate or {}))
    preprocessing = _values("preprocessor", {"truncation": True, "window_default": WINDOW_DEFAULT})
    preprocessing.update(_values(f"config:{config}", dict(prefix)))
    reserve: Any = "max_new_tokens" if t5_task == "text_generation" else PREFIX_FIELDS * len(prefix)
    preprocessing["window_reserve"] = Value(reserve, "preprocessor")
    scenario = {"t5_task": Value(t5_task, f"config:{config}")}
    scenario.update({f"dataset_{k}": Value(v, f"config:{config}") for k, v in prefix.items()})
    return Protocol(
        task=task,
        kind="generate",
        optimum_task="text2text-generation",
        variant="t5",
        generate_kwargs=MappingProxyType(kwargs),
        preprocessing=MappingProxyType(preprocessing),
        optimum_scenario=MappingProxyType(scenario),
        note=f"T5-family models run as text2text generation ({config}), as the leaderboard ran them",
    )


_TEN_TOKENS = {"max_new_tokens": 10, "min_new_tokens": 10}

_PROTOCOLS: dict[str, Protocol] = {
    "text_generation": Protocol(
        task="text_generation",
        kind="generate",
        optimum_task="text-generation",
        generate_kwargs=MappingProxyType({**_SCENARIO_GENERATE, **_values("config:text_generation.yaml", _TEN_TOKENS)}),
        preprocessing=MappingProxyType(_text("preprocessor", reserve="max_new_tokens")),
    ),
    "reasoning": Protocol(
        task="reasoning",
        kind="generate",
        optimum_task="text-generation",
        generate_kwargs=MappingProxyType(
            {
                **_values("reasoning_helpers", {"max_new_tokens": 8192, "min_new_tokens": 1}),
                **_values("default_runner", {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 50}),
                **_values("scenario", {"num_beams": 1, "num_return_sequences": 1, "use_cache": True}),
            }
        ),
        preprocessing=MappingProxyType(
            {
                **_text("preprocessor", reserve="max_new_tokens"),
                "chat_template": Value({"add_generation_prompt": True, "enable_thinking": True}, "preprocessor"),
            }
        ),
        note="sampled: token counts vary from run to run; seed 42 as optimum-benchmark's backends set it",
    ),
    "summarization": Protocol(
        task="summarization",
        kind="forward",
        optimum_task="summarization",
        preprocessing=MappingProxyType(_text("config:summarization.yaml")),
        note=(
            "energy_star runs its summarization task as one forward pass per document (summarization is not one of "
            "its text-generation tasks; the config's generate_kwargs are never used)"
        ),
    ),
    "question_answering": Protocol(
        task="question_answering",
        kind="forward",
        optimum_task="question-answering",
        preprocessing=MappingProxyType(_text("preprocessor", text_pair=("question", "context"))),
    ),
    "text_classification": Protocol(
        task="text_classification",
        kind="forward",
        optimum_task="text-classification",
        preprocessing=MappingProxyType(_text("preprocessor")),
    ),
    "sentence_similarity": Protocol(
        task="sentence_similarity",
        kind="forward",
        optimum_task="sentence-similarity",
        preprocessing=MappingProxyType(_text("preprocessor", text_pair=("sentence1", "sentence2"))),
        note="one forward per pair: the preprocessor encodes both sentences as one sequence",
    ),
    "image_classification": Protocol(
        task="image_classification",
        kind="forward",
        optimum_task="image-classification",
        preprocessing=MappingProxyType(_values("preprocessor", {"drop_empty": True, "image_mode": "RGB"})),
    ),
    "object_detection": Protocol(
        task="object_detection",
        kind="forward",
        optimum_task="object-detection",
        preprocessing=MappingProxyType(_values("preprocessor", {"drop_empty": True, "image_mode": "RGB"})),
    ),
    "automatic_speech_recognition": Protocol(
        task="automatic_speech_recognition",
        kind="generate",
        optimum_task="automatic-speech-recognition",
        generate_kwargs=MappingProxyType(dict(_SCENARIO_GENERATE)),
        preprocessing=MappingProxyType(_values("preprocessor", {"drop_empty": True})),
        note="automatic_speech_recognition.yaml sets no generate_kwargs: the scenario's 100 new tokens apply",
    ),
    "image_captioning": Protocol(
        task="image_captioning",
        kind="generate",
        optimum_task="image-to-text",
        generate_kwargs=MappingProxyType(dict(_SCENARIO_GENERATE)),
        preprocessing=MappingProxyType(_values("preprocessor", {"drop_empty": True})),
        note="image_to_text.yaml sets no generate_kwargs: the scenario's 100 new tokens apply",
    ),
    "image_generation": Protocol(
        task="image_generation",
        kind="call",
        optimum_task="text-to-image",
        call_kwargs=MappingProxyType({**_DIFFUSION_CALL, **_values("config:text_to_image.yaml", {})}),
        preprocessing=MappingProxyType(_values("preprocessor", {"drop_empty": True})),
        note="no height or width: the pipeline's own default size (1024x1024 for SDXL-class models)",
    ),
}

# Model types whose task runs another upstream config (the leaderboard's T5 rows).
T5_MODEL_TYPES = ("t5", "mt5", "umt5", "longt5")
_T5_VARIANTS: dict[str, Protocol] = {
    "summarization": _t5(
        "summarization", "t5_summarization.yaml", {"prefix1": "summarize: "}, "summarization", _TEN_TOKENS
    ),
    "question_answering": _t5(
        "question_answering",
        "t5_question_answering.yaml",
        {"prefix1": "question: ", "prefix2": " context: "},
        "question_answering",
        None,  # that config sets no generate_kwargs: the scenario's 100 new tokens apply
    ),
    "text_classification": _t5(
        "text_classification",
        "t5_text_classification.yaml",
        {"prefix1": "sst2 sentence: "},
        "text_classification",
        _TEN_TOKENS,
    ),
    "text_generation": _t5(
        "text_generation", "t5_text_generation.yaml", {"prefix1": ""}, "text_generation", _TEN_TOKENS
    ),
}

# Our own variants, by name: recorded, never comparable.
_OWN_VARIANTS: dict[tuple[str, str], Protocol] = {
    ("summarization", "generate"): Protocol(
        task="summarization",
        kind="generate",
        optimum_task="text2text-generation",
        variant="generate",
        comparable=False,
        generate_kwargs=MappingProxyType({**_SCENARIO_GENERATE, **_values("ours", _TEN_TOKENS)}),
        preprocessing=MappingProxyType(
            {**_text("preprocessor"), "window_reserve": Value(PREFIX_FIELDS, "preprocessor")}
        ),
        optimum_scenario=MappingProxyType({"t5_task": Value("summarization", "ours")}),
        note="ours: 10 generated summary tokens per document instead of energy_star's single forward pass",
    ),
    ("sentence_similarity", "embed-pair"): Protocol(
        task="sentence_similarity",
        kind="forward",
        optimum_task="sentence-similarity",
        variant="embed-pair",
        comparable=False,
        preprocessing=MappingProxyType(_text("ours", text_pair=("sentence1", "sentence2"), embed_separately=True)),
        note="ours: each sentence embedded on its own (two forwards) and compared by cosine, as a pipeline would",
    ),
}

PROTOCOLS: Mapping[str, Protocol] = MappingProxyType(_PROTOCOLS)


def variants(task: str) -> tuple[str, ...]:
    """Every variant name a task has: default, t5 where the leaderboard had T5 rows, and ours."""
    names = ["default"]
    if task in _T5_VARIANTS:
        names.append("t5")
    names.extend(name for (owner, name) in _OWN_VARIANTS if owner == task)
    return tuple(names)


def protocol_for(task: str, model_type: str | None = None, variant: str | None = None) -> Protocol:
    """The protocol a benchmark runs: the task's, the T5 config for a T5-family model, or a named variant."""
    if task not in _PROTOCOLS:
        raise KeyError(task)
    if variant in (None, "", "default"):
        if model_type in T5_MODEL_TYPES and task in _T5_VARIANTS:
            return _T5_VARIANTS[task]
        return _PROTOCOLS[task]
    if variant == "t5" and task in _T5_VARIANTS:
        return _T5_VARIANTS[task]
    own = _OWN_VARIANTS.get((task, str(variant)))
    if own is None:
        raise UnknownVariant(f"unknown protocol variant {variant!r} for {task}; allowed: {', '.join(variants(task))}")
    return own


def work_per_query(protocol: Protocol) -> str:
    """One phrase for the README's task table, written from the protocol so the two cannot drift."""
    if protocol.kind == "call":
        call = protocol.call()
        return f"{call['num_images_per_prompt']} image, {call['num_inference_steps']} steps, pipeline's default size"
    if protocol.kind == "forward":
        pair = protocol.pre("text_pair")
        return "one forward (the pair as one sequence)" if pair else "one forward"
    kwargs = protocol.generate()
    sampling = "sampled (T 0.7, top_p 0.9, top_k 50)" if kwargs.get("do_sample") else "greedy"
    low, high = kwargs["min_new_tokens"], kwargs["max_new_tokens"]
    tokens = f"exactly {high:,}" if low == high else f"{low:,} to {high:,}"
    return f"{sampling}, {tokens} new tokens"


def markdown_task_table() -> str:
    """The README's task table (``aienergyscore protocol --markdown``); a test checks the README against it."""
    lines = ["| task | phases | work per query | T5-family models |", "|---|---|---|---|"]
    for name, protocol in PROTOCOLS.items():
        t5 = _T5_VARIANTS.get(name)
        prefix = t5.pre("prefix1") if t5 else ""
        t5_text = f"{work_per_query(t5)}" + (f", prefix `{prefix}`" if prefix else "") if t5 else ""
        lines.append(f"| `{name}` | {', '.join(protocol.phases)} | {work_per_query(protocol)} | {t5_text} |")
    return "\n".join(lines)


def work_units(protocol: Protocol) -> float:
    """Model passes one query costs, for weighing benchmarks against each other before any has run (fleet shards):
    a generative task runs its whole generation (``max_new_tokens`` steps, the budget since the length is not
    known ahead) plus the one-token prefill pass; an image generation runs its denoising steps per image; any other
    task one forward (two where each sentence of a pair is embedded on its own)."""
    if protocol.kind == "generate":
        return float(protocol.generate()["max_new_tokens"] + 1)
    if protocol.kind == "call":
        call = protocol.call()
        return float(call["num_images_per_prompt"] * call["num_inference_steps"])
    return 2.0 if protocol.pre("embed_separately") else 1.0
