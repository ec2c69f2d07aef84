"""The vllm backend's API key, against a server that repeats it: it must reach no record, log, archive, JUnit XML,
terminal line or ``pytest -l`` local, in any spelling, whole or cut short.

The server is real (tests/hostile_servers.py, on 127.0.0.1): it echoes the ``Authorization`` header it received in
its error bodies, as some proxies and debugging servers do.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from _pytest._io.saferepr import saferepr

from pytest_aienergyscore.backends.secret import MASK, Secret, redact
from pytest_aienergyscore.backends.vllm.stream import StreamReader, error_message
from tests.support.hostile_servers import Request, Writer, answer, hostile_server
from tests.support.servers import files_containing

pytest.importorskip("aiohttp")

KEY = "sk-live/4f9c2e71+b3a8=SECRET-d6e0"  # / + = change when URL-encoded
PROMPTS = "".join(json.dumps({"text": f"Prompt number {i}."}) + "\n" for i in range(3))

BENCHMARK = """
def test_bench(energy_star):
    energy_star(task="text_generation", model="m", dataset="prompts.jsonl", max_new_tokens=4)
"""

# A user's own code that drives the backend directly: an error then shows as a traceback, with -l its locals.
DIRECT = """
from pytest_aienergyscore.backends import LoadRequest
from pytest_aienergyscore.backends.vllm.backend import VllmBackend
from pytest_aienergyscore.rules.tasks import get_task

def test_direct():
    options = (("endpoint", "{url}"), ("api_key_env", "MY_KEY"), ("timeout_s", 5.0))
    backend = VllmBackend()
    backend.load(LoadRequest("m", None, get_task("text_generation"), "server", options=options))
"""


async def echo_key_400(request: Request, writer: Writer) -> None:
    """A 400 whose body repeats the request's Authorization header, in a JSON error and URL-encoded in a hint."""
    sent = request.headers.get("authorization", "")
    body = {"error": {"message": f"invalid request; headers were Authorization: {sent}", "hint": quote(sent, safe="")}}
    answer(writer, 400, json.dumps(body).encode())


async def echo_key_500_plain(request: Request, writer: Writer) -> None:
    answer(
        writer, 500, f"Internal error while serving {request.path} for {request.headers.get('authorization')}".encode()
    )


def no_key_anywhere(text: str) -> bool:
    """The key is absent, and so is any piece of it long enough to be one cut short."""
    return all(KEY[i : i + 8] not in text for i in range(len(KEY) - 7))


# -- the pieces ---------------------------------------------------------------------------------------------------
def test_a_secret_shows_as_stars_wherever_it_is_printed() -> None:
    secret = Secret(KEY)
    assert repr(secret) == str(secret) == f"{secret}" == f"{secret!r}" == MASK
    assert saferepr(secret) == MASK and secret.reveal() == KEY and bool(secret) and not Secret("")


@pytest.mark.parametrize(
    "echoed",
    [
        f"Bearer {KEY}",
        json.dumps({"auth": f"Bearer {KEY}"}),
        f"retry?token={quote(KEY, safe='')}",
        repr(f"Bearer {KEY}".encode()),
    ],
    ids=["as is", "in JSON", "URL-encoded", "bytes repr"],
)
def test_redact_masks_the_key_in_every_spelling_a_server_may_echo(echoed: str) -> None:
    shown = redact(f"the server said: {echoed}", [Secret(KEY)])
    assert no_key_anywhere(shown) and MASK in shown


def test_a_key_with_quotes_and_backslashes_is_masked_in_json_too() -> None:
    key = 'k"ey\\with-odd"chars'
    assert redact(json.dumps({"echo": key}), [key]) == json.dumps({"echo": MASK})


@pytest.mark.parametrize("cut", [10, 20, len(KEY) - 1])
def test_a_key_cut_short_by_a_length_limit_is_masked_too(cut: int) -> None:
    for tail in ("", "…", "'"):
        shown = redact(f"invalid header Bearer {KEY[:cut]}{tail}", [Secret(KEY)])
        assert KEY[:8] not in shown and shown.endswith(MASK + tail)


def test_an_error_body_is_masked_before_it_is_cut_to_200_characters() -> None:
    body = json.dumps({"error": {"message": "x" * 185 + f" Bearer {KEY} and more"}}).encode()
    message = error_message(body, (Secret(KEY),))
    assert no_key_anywhere(message) and len(message) <= 200
    assert no_key_anywhere(error_message(body[:120] + KEY.encode(), (Secret(KEY),)))  # not JSON: first line


def test_an_error_event_mid_stream_is_masked() -> None:
    reader = StreamReader((Secret(KEY),))
    reader.feed(b'data: {"error": {"message": "bad key Bearer ' + KEY.encode() + b'"}}\n\n', 1.0)
    assert reader.error is not None and no_key_anywhere(reader.error) and MASK in reader.error


# -- a whole session against a server that repeats the key --------------------------------------------------------
@pytest.fixture
def project(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    bench.path.joinpath("prompts.jsonl").write_text(PROMPTS)
    bench.makepyfile(test_bench=BENCHMARK)
    return bench


def everything_written(root: Path) -> list[str]:
    return files_containing(root, KEY) + [
        hit for piece in (KEY[:12], KEY[-12:]) for hit in files_containing(root, piece)
    ]


@pytest.mark.parametrize("handler", [echo_key_400, echo_key_500_plain], ids=["400 JSON", "500 plain text"])
def test_a_server_echoing_the_key_in_its_errors_leaves_it_nowhere(project: pytest.Pytester, handler) -> None:
    with hostile_server(post=handler) as server:
        result = project.runpytest(
            "-p", "no:cacheprovider", "--energy-warmup=0", "--backend=vllm", f"--vllm-endpoint={server.url}",
            "--energy-output=results", "--junitxml=junit.xml", "-l", "-rf",
        )  # fmt: skip
    result.assert_outcomes(failed=1)
    assert any(r.headers.get("authorization") == f"Bearer {KEY}" for r in server.seen)  # the server did get it
    results = project.path / "results"
    records = "".join(p.read_text() for p in results.rglob("records.jsonl"))
    assert MASK in records  # the echo was recorded, masked: the check below looks where the key would be
    assert list(results.rglob("*.zip")) and list(results.rglob("run.log"))
    assert everything_written(results) == []
    junit = (project.path / "junit.xml").read_text()
    assert "failed" in junit and no_key_anywhere(junit)
    assert no_key_anywhere("\n".join(result.outlines + result.errlines))


def test_a_models_listing_that_echoes_the_key_fails_load_with_it_masked(project: pytest.Pytester) -> None:
    with hostile_server(models=echo_key_500_plain) as server:
        result = project.runpytest(
            "-p", "no:cacheprovider", "--backend=vllm", f"--vllm-endpoint={server.url}", "--junitxml=junit.xml", "-l"
        )
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    assert f"GET /v1/models answered HTTP 500: Internal error while serving /v1/models for Bearer {MASK}" in out
    assert no_key_anywhere(out) and no_key_anywhere((project.path / "junit.xml").read_text())


def test_pytest_l_on_a_users_own_backend_call_shows_no_key_among_the_locals(
    bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", KEY)
    with hostile_server(models=echo_key_500_plain) as server:
        bench.makepyfile(test_direct=DIRECT.replace("{url}", server.url))
        result = bench.runpytest("-p", "no:cacheprovider", "-l", "--tb=long")
    result.assert_outcomes(failed=1)
    out = "\n".join(result.outlines)
    assert "BackendError" in out and "self " in out and "key_env " in out  # the long traceback with its locals
    assert no_key_anywhere(out)
