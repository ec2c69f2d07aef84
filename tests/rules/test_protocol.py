"""The protocol table: one source for every task's work, each value with its upstream source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_aienergyscore.rules.protocol import (
    PROTOCOLS,
    SOURCES,
    UnknownVariant,
    markdown_task_table,
    protocol_for,
    variants,
)
from pytest_aienergyscore.rules.tasks import TASKS

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_aienergyscore", "protocol", *args], capture_output=True, text=True, check=False
    )


def test_every_task_has_a_protocol_and_every_value_names_a_known_source() -> None:
    assert set(PROTOCOLS) == set(TASKS)
    for name in PROTOCOLS:
        for variant in variants(name):
            data = protocol_for(name, variant=variant).to_dict()
            values = [
                f"{group}.{key}"
                for group in ("generate_kwargs", "call_kwargs", "preprocessing")
                for key in data.get(group, {})
            ]
            assert set(values) <= set(data["sources"]), (name, variant)
            assert all(data["sources"][key] for key in values)
            assert {"task", "phases", "samples", "batch_size", "warmup_runs", "sources"} <= set(data)


def test_asr_and_image_captioning_generate_the_scenarios_100_tokens_exactly() -> None:
    for task in ("automatic_speech_recognition", "image_captioning"):
        data = json.loads(_cli(task, "--json").stdout)
        assert data["generate_kwargs"]["max_new_tokens"] == data["generate_kwargs"]["min_new_tokens"] == 100
        assert data["generate_kwargs"]["do_sample"] is False
        assert "scenario.py" in data["sources"]["generate_kwargs.max_new_tokens"]


def test_image_generation_forces_no_image_size() -> None:
    data = json.loads(_cli("image_generation", "--json").stdout)
    assert data["call_kwargs"] == {"num_inference_steps": 30, "num_images_per_prompt": 1}
    assert data["phases"] == ["preprocess", "call"]


def test_summarization_is_one_forward_per_document_as_energy_star_runs_it() -> None:
    protocol = protocol_for("summarization")
    assert protocol.phases == ("preprocess", "forward") and not protocol.generate_kwargs
    assert protocol.optimum_task == "summarization" and protocol.comparable


def test_a_t5_model_runs_the_t5_config_with_its_prefix_and_ten_tokens() -> None:
    protocol = protocol_for("summarization", model_type="t5")
    assert protocol.variant == "t5" and protocol.comparable and protocol.phases[-1] == "decode"
    assert protocol.pre("prefix1") == "summarize: " and protocol.generate()["max_new_tokens"] == 10
    assert protocol_for("question_answering", model_type="t5").generate()["max_new_tokens"] == 100  # no override
    assert protocol_for("sentence_similarity", model_type="t5").variant == "default"  # no T5 config upstream


def test_sentence_similarity_is_one_forward_per_pair() -> None:
    protocol = protocol_for("sentence_similarity")
    assert protocol.kind == "forward" and protocol.pre("text_pair") == ("sentence1", "sentence2")
    assert not protocol.pre("embed_separately")


def test_reasoning_samples_as_ai_energy_scores_default_runner_does() -> None:
    kwargs = protocol_for("reasoning").generate()
    assert (kwargs["do_sample"], kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (True, 0.7, 0.9, 50)
    assert (kwargs["min_new_tokens"], kwargs["max_new_tokens"]) == (1, 8192)
    assert protocol_for("reasoning").generate_kwargs["temperature"].source == "default_runner"


def test_our_own_variants_are_named_and_never_comparable() -> None:
    assert not protocol_for("summarization", variant="generate").comparable
    assert not protocol_for("sentence_similarity", variant="embed-pair").comparable
    assert protocol_for("summarization", variant="generate").source_keys() <= set(SOURCES)


def test_an_unknown_variant_is_one_line_naming_the_allowed_ones() -> None:
    with pytest.raises(
        UnknownVariant, match=r"unknown protocol variant 'fast' for summarization; allowed: default, t5"
    ):
        protocol_for("summarization", variant="fast")
    result = _cli("summarization", "--variant", "fast")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_prefill_and_warm_up_follow_energy_stars_overrides() -> None:
    protocol = protocol_for("text_generation")
    assert protocol.prefill()["max_new_tokens"] == protocol.prefill()["min_new_tokens"] == 1
    assert protocol.warmup_generate()["max_new_tokens"] == 2
    assert protocol_for("image_generation").warmup_call()["num_inference_steps"] == 2


def test_the_readme_task_table_is_the_generated_one() -> None:
    assert markdown_task_table() in (REPO / "docs" / "rules.md").read_text(encoding="utf-8")


def test_the_protocol_command_prints_every_parameter_with_its_source() -> None:
    out = _cli("text_generation").stdout
    assert (
        "generate_kwargs.max_new_tokens = 10  [optimum-benchmark energy_star/ configs @b263af46 (text_generation.yaml)]"
        in out
    )
    assert len(json.loads(_cli("--json").stdout)) == len(PROTOCOLS)
