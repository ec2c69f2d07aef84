"""The protocol's parameters turned into OpenAI request bodies, the way the kind of server takes them.

The protocol table speaks transformers' ``generate`` (``max_new_tokens``, ``min_new_tokens``, ``do_sample``...); a
server speaks the OpenAI API, and each kind asks for exact output lengths differently: vLLM takes
``min_tokens``/``ignore_eos``, ``transformers serve`` a ``generation_config`` JSON string, and other servers get the
plain OpenAI fields only. The bodies are all built and encoded before the first request is sent, so that sending is
all that is left while the meter runs.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_aienergyscore.backends.base import BackendError
from pytest_aienergyscore.backends.vllm.endpoint import Endpoint
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

VLLM, TRANSFORMERS, GENERIC = "vllm", "transformers-serve", "openai-compatible"
SUMMARIZE_PROMPT = "Summarize the following text.\n\n{text}"


def server_kind(entries: list[dict[str, Any]]) -> str:
    """vLLM says ``owned_by: vllm``; transformers serve adds a non-OpenAI ``status`` field; anything else is generic."""
    if any(entry.get("owned_by") == "vllm" for entry in entries):
        return VLLM
    if any(isinstance(entry.get("status"), dict) for entry in entries):
        return TRANSFORMERS
    return GENERIC


def generation_fields(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """OpenAI request fields for transformers-style generation parameters, exact lengths the way ``kind`` takes them."""
    params = dict(params)
    max_new = _whole(params, "max_new_tokens", 16, 1)
    min_new = _whole(params, "min_new_tokens", 0, 0)
    do_sample = bool(params.pop("do_sample", False))
    if _whole(params, "num_beams", 1, 1) != 1:
        raise BackendError("num_beams: the vllm backend sends one sequence per request; beam search is not served")
    fields: dict[str, Any] = {"max_tokens": max_new, "stream": True, "stream_options": {"include_usage": True}}
    if not do_sample:
        fields["temperature"] = 0.0
    sequences = _whole(params, "num_return_sequences", 1, 1)
    if sequences != 1:
        fields["n"] = sequences
    for name in ("pad_token_id", "eos_token_id", "use_cache"):  # in-process generation details; the server knows
        params.pop(name, None)
    if min_new > 0 and kind == VLLM:
        fields["min_tokens"] = min_new
        if min_new >= max_new:
            fields["ignore_eos"] = True
    elif min_new > 0 and kind == TRANSFORMERS:
        fields["generation_config"] = json.dumps({"min_new_tokens": min_new})
    fields.update(params)  # anything else a test passed (top_p, seed...), as the server's own field
    return fields


def _whole(params: dict[str, Any], name: str, default: int, minimum: int) -> int:
    """A count among the generation parameters (taken out of ``params``), or one line naming the bad value."""
    value = params.pop(name, default)
    if value is None and minimum == 0:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BackendError(f"generation parameter {name}={value!r}: must be a whole number >= {minimum}")
    return value


def query_fields(task: TaskSpec, protocol: Protocol, text: str) -> tuple[str, dict[str, Any]]:
    """The route and the prompt part of one request, with the chat-template switches of the protocol that runs."""
    if task.name == "text_generation":
        return "/completions", {"prompt": text}
    content = SUMMARIZE_PROMPT.format(text=text) if task.name == "summarization" else text
    fields: dict[str, Any] = {"messages": [{"role": "user", "content": content}]}
    switches = task.chat_template_switches(protocol)
    if switches:
        fields["chat_template_kwargs"] = dict(switches)
    return "/chat/completions", fields


def encode_bodies(
    endpoint: Endpoint, inputs: list[tuple[str, dict[str, Any]]], fields: dict[str, Any]
) -> list[tuple[Any, bytes]]:
    """(URL, JSON body) per request: each query's fields with the generation ``fields`` on top. A parameter that
    cannot be sent as JSON is one line here, before anything is sent; one URL object per route, made once."""
    from yarl import URL

    try:
        json.dumps(fields)
    except (TypeError, ValueError) as err:
        raise BackendError(f"generation parameters {fields!r} cannot be sent as JSON: {err}") from None
    urls: dict[str, Any] = {}
    out = []
    for route, query in inputs:
        url = urls.get(route) or urls.setdefault(route, URL(endpoint.url(route)))
        out.append((url, json.dumps({**query, **fields}).encode()))
    return out


def request_fields(bodies: list[tuple[Any, bytes]]) -> dict[str, Any]:
    """The generation fields as sent (from the first body), for the record: no prompt, no header, no key."""
    if not bodies:
        return {}
    body = json.loads(bodies[0][1])
    return {k: v for k, v in body.items() if k not in ("prompt", "messages", "model")}
