"""The answers the vllm backend keeps for quality scoring, against a real ``transformers serve``: the generation
pass's text per request in sample order, nothing kept for prefill or when the runner did not ask, the same work
either way, and only the attempt that succeeded counted when a request was retried."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_aienergyscore.backends import LoadRequest
from pytest_aienergyscore.backends.vllm import client as vllm_client
from pytest_aienergyscore.backends.vllm.backend import VllmBackend
from pytest_aienergyscore.rules.tasks import get_task
from tests.support.servers import Server, fault_proxy

pytest.importorskip("transformers")
pytest.importorskip("aiohttp")

PROMPTS = ["Tell me about the weather in spring.", "What is two plus two?", "Name three colours of the rainbow."]


def connected(endpoint: str, model: Path, keep: bool) -> VllmBackend:
    backend = VllmBackend()
    backend.keep_outputs = keep
    options = (("endpoint", endpoint), ("timeout_s", 5.0))
    backend.load(LoadRequest(str(model), None, get_task("text_generation"), "server", options=options))
    return backend


@pytest.fixture
def backends() -> Iterator[list[VllmBackend]]:
    """Backends a test connects, closed after it whatever happened."""
    made: list[VllmBackend] = []
    yield made
    for backend in made:
        backend.close()


def answer_without_streaming(backend: VllmBackend, prompt: str) -> str:
    """The server's answer to the generation pass's request for ``prompt``, asked for in one JSON body instead of a
    stream: the same request, read by another path."""
    prepared = backend.preprocess([{"text": prompt}])
    [(url, body)] = backend._bodies(prepared.inputs, {}, "generate")
    fields = {**json.loads(body), "stream": False}
    fields.pop("stream_options")
    request = urllib.request.Request(str(url), json.dumps(fields).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.loads(response.read())["choices"][0]["text"])


def test_the_generation_pass_keeps_each_requests_answer_in_sample_order(
    tserve: Server, tiny_lm: Path, backends: list[VllmBackend]
) -> None:
    backend = connected(tserve.url, tiny_lm, keep=True)
    backends.append(backend)
    prepared = backend.preprocess([{"text": p} for p in PROMPTS])
    prefill = backend.run("prefill", prepared, {}, lambda n: None)
    generate = backend.run("generate", prepared, {}, lambda n: None)
    assert prefill.outputs is None  # one token per prompt: not the answer that is scored
    assert generate.outputs is not None and len(generate.outputs) == 3
    answers = backend.readable_outputs(generate.outputs)
    expected = [answer_without_streaming(backend, p) for p in PROMPTS]
    print(f"kept answers: {answers}")
    assert answers == expected and all(isinstance(a, str) and a for a in answers)


def test_nothing_is_kept_unless_asked_and_keeping_leaves_the_work_unchanged(
    tserve: Server, tiny_lm: Path, backends: list[VllmBackend]
) -> None:
    plain, keeping = connected(tserve.url, tiny_lm, keep=False), connected(tserve.url, tiny_lm, keep=True)
    backends += [plain, keeping]
    samples = [{"text": p} for p in PROMPTS]
    without = plain.run("generate", plain.preprocess(samples), {}, lambda n: None)
    kept = keeping.run("generate", keeping.preprocess(samples), {}, lambda n: None)
    assert without.outputs is None and kept.outputs is not None
    assert without.samples == kept.samples == 3 and without.tokens == kept.tokens == 30
    for key in ("succeeded", "completion_tokens", "prompt_tokens", "request_fields"):
        assert without.details[key] == kept.details[key], key


def test_a_retried_request_keeps_only_the_answer_of_the_attempt_that_succeeded(
    tserve: Server, tiny_lm: Path, backends: list[VllmBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vllm_client, "BACKOFF_S", 0.05)
    with fault_proxy(tserve.port) as proxy:
        backend = connected(proxy.url, tiny_lm, keep=True)
        backends.append(backend)
        prepared = backend.preprocess([{"text": p} for p in PROMPTS])
        proxy.plan = ["cut", "pass", "pass", "503", "503", "503", "503"]  # the first cut once, the third fails for good
        work = backend.run("generate", prepared, {}, lambda n: None)
    assert work.details["retries"] == 4 and work.details["failed"] == 1
    assert work.outputs is not None
    first, second, third = backend.readable_outputs(work.outputs)
    direct = connected(tserve.url, tiny_lm, keep=False)
    backends.append(direct)
    assert first == answer_without_streaming(direct, PROMPTS[0])
    assert isinstance(second, str) and second
    assert third is None  # no answer came back: nothing to score, not an empty answer
