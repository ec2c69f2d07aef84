"""The protocol's parameters as request bodies: exact lengths the way each kind of server takes them, the route
and the reasoning switch per task."""

from __future__ import annotations

import json

import pytest

from pytest_aienergyscore.backends import BackendError
from pytest_aienergyscore.backends.vllm.fields import GENERIC, TRANSFORMERS, VLLM, generation_fields, query_fields
from pytest_aienergyscore.rules.tasks import get_task


def test_exact_lengths_are_asked_for_the_way_each_server_takes_them() -> None:
    protocol = {**get_task("text_generation").generate_kwargs}
    sent = generation_fields(VLLM, protocol)
    assert sent["max_tokens"] == sent["min_tokens"] == 10 and sent["ignore_eos"] is True
    assert sent["temperature"] == 0.0 and sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "max_new_tokens" not in sent and "do_sample" not in sent and "num_beams" not in sent
    served = generation_fields(TRANSFORMERS, protocol)
    assert json.loads(served["generation_config"]) == {"min_new_tokens": 10} and "min_tokens" not in served
    plain = generation_fields(GENERIC, protocol)
    assert "min_tokens" not in plain and "generation_config" not in plain and plain["max_tokens"] == 10
    reasoning = generation_fields(VLLM, {**get_task("reasoning").generate_kwargs})
    assert reasoning["min_tokens"] == 1 and "ignore_eos" not in reasoning  # 1 to 8,192 tokens: EOS may end it
    # AI Energy Score's default runner samples reasoning: temperature 0.7, top_p 0.9, top_k 50
    assert (reasoning["temperature"], reasoning["top_p"], reasoning["top_k"]) == (0.7, 0.9, 50)
    assert "use_cache" not in reasoning and "do_sample" not in reasoning
    assert generation_fields(VLLM, {**protocol, "top_p": 0.5})["top_p"] == 0.5
    with pytest.raises(BackendError, match="num_beams"):
        generation_fields(VLLM, {**protocol, "num_beams": 4})


def test_routes_and_the_reasoning_switch() -> None:
    def query(task_name: str, text: str, variant: str | None = None) -> tuple[str, dict]:
        task = get_task(task_name)
        return query_fields(task, task.protocol_for(None, variant), text)

    route, fields = query("text_generation", "Once upon a time")
    assert (route, fields) == ("/completions", {"prompt": "Once upon a time"})
    route, fields = query("reasoning", "Why?")
    assert route == "/chat/completions" and fields["messages"] == [{"role": "user", "content": "Why?"}]
    assert fields["chat_template_kwargs"] == {"enable_thinking": True} and "enable_thinking" not in fields
    route, fields = query("summarization", "A long text.", variant="generate")
    assert route == "/chat/completions" and "A long text." in fields["messages"][0]["content"]
    assert "chat_template_kwargs" not in fields  # the variant has no chat-template switches


def test_the_chat_template_switches_come_from_the_protocol_that_runs_and_a_tests_own_on_top() -> None:
    """One rule for pytorch and vllm: the running protocol's switches (not always the task's own), then the test's."""
    from dataclasses import replace
    from types import MappingProxyType

    reasoning = replace(get_task("reasoning"), chat_template_extra=MappingProxyType({"reasoning_effort": "high"}))
    _, fields = query_fields(reasoning, reasoning.default_protocol, "Why?")
    assert fields["chat_template_kwargs"] == {"enable_thinking": True, "reasoning_effort": "high"}
    text = get_task("text_generation")
    assert dict(text.chat_template_switches(reasoning.default_protocol)) == {"enable_thinking": True}
    assert dict(text.chat_template_switches(text.default_protocol)) == {}
