"""The vllm backend: a task's prompts sent to a running OpenAI-compatible server (vLLM, ``transformers serve``...).

The server does the work, so this backend only has to send the protocol's requests exactly and count what came back,
without ever being the bottleneck itself:

- ``load`` connects and reads ``/v1/models`` (a server that cannot be reached fails here, before anything is metered),
  resolves the served model name and detects the server kind once, because exact output lengths are asked for
  differently: vLLM takes ``min_tokens``/``ignore_eos``, ``transformers serve`` a ``generation_config`` JSON string,
  and other servers get the plain OpenAI fields only (and the record says lengths were not forced).
- ``preprocess`` builds the request bodies; it sends nothing, so token counts come later, from the server's ``usage``.
- ``run`` streams every request (``stream_options.include_usage``) with ``--energy-concurrency`` in flight, measures
  time to first token and latency, retries timeouts, 5xx answers and broken streams a bounded number of times with
  back-off, counts what still fails, and with more than one request in flight meters the steady-state window (from
  the moment N requests are in flight until the queue drains) on the meter the runner hands over in ``window_hook``.

text_generation goes to ``/v1/completions`` with the raw prompt (AI Energy Score's text-generation pipeline applies no
chat template); reasoning and summarization go to ``/v1/chat/completions``, the reasoning switch as vLLM takes it
(``chat_template_kwargs``). The API key is read from an environment variable into memory and only ever sent as a
header: it is in no option, log, record or error message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import os
import re
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from ..energy import Measurement
from ..tasks import WARMUP_GENERATE, TaskSpec
from .base import Backend, BackendError, LoadRequest, PhaseWork, Prepared, Progress

SERVED_TASKS = ("text_generation", "reasoning", "summarization")
MAX_FAILURE_RATE = 0.05  # more failed requests than this fails the benchmark
RETRIES = 3  # further attempts after the first, for timeouts, 5xx answers and broken streams
BACKOFF_S = 0.25  # wait before the first retry; doubled for each further one
BACKOFF_MAX_S = 4.0
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx: the server may recover; other 4xx will not change
SUMMARIZE_PROMPT = "Summarize the following text.\n\n{text}"

VLLM, TRANSFORMERS, GENERIC = "vllm", "transformers-serve", "openai-compatible"

T = TypeVar("T")


class WindowMeter(Protocol):
    """What the backend needs to meter a stretch inside a phase: the session's meter has exactly this."""

    def begin_window(self, name: str) -> None: ...

    def end_window(self, name: str) -> Measurement: ...

    def cancel_window(self, name: str) -> None: ...


# -- endpoint -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """A server's base URL, normalised: no credentials, no ``/v1``, no trailing slash."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    def url(self, route: str) -> str:
        return f"{self.base}/v1{route}"

    def __str__(self) -> str:
        return f"{self.base}/v1"


def parse_endpoint(raw: str | None) -> Endpoint:
    """``http://host:port``, ``.../v1``, with or without a trailing slash: all the same endpoint."""
    text = (raw or "").strip()
    if not text:
        raise BackendError("--backend vllm needs a server: pass --vllm-endpoint URL or set VLLM_ENDPOINT")
    parts = urlsplit(text)
    if parts.username or parts.password:
        shown = f"{parts.scheme}://{parts.hostname}"
        raise BackendError(
            f"--vllm-endpoint {shown}: credentials in the URL are not taken; put the API key in an environment "
            "variable (VLLM_API_KEY, or the one named with --vllm-api-key-env)"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise BackendError(f"--vllm-endpoint {text!r}: not an http(s) URL such as http://127.0.0.1:8000/v1")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        prefix = prefix[: -len("/v1")].rstrip("/")
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(parts.scheme, parts.hostname, port or default_port, prefix)


def is_local_host(host: str) -> bool:
    """Whether the server runs on this machine, so that its GPUs are the local ones given with --energy-gpus."""
    if host.lower() == "localhost":
        return True
    try:
        addresses = {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    local = _local_addresses()
    return any(ipaddress.ip_address(a).is_loopback or a in local for a in addresses)


def _local_addresses() -> set[str]:
    import psutil

    return {
        str(addr.address).split("%")[0]
        for addrs in psutil.net_if_addrs().values()
        for addr in addrs
        if addr.family in (socket.AF_INET, socket.AF_INET6)
    }


# -- what the server is and serves ----------------------------------------------------------------------------------
def server_kind(entries: list[dict[str, Any]]) -> str:
    """vLLM says ``owned_by: vllm``; transformers serve adds a non-OpenAI ``status`` field; anything else is generic."""
    if any(entry.get("owned_by") == "vllm" for entry in entries):
        return VLLM
    if any(isinstance(entry.get("status"), dict) for entry in entries):
        return TRANSFORMERS
    return GENERIC


def resolve_served_model(requested: str, override: str | None, served: list[str], endpoint: Endpoint) -> str:
    """The name to put in requests: the override, else the model id, else the one model the server serves."""
    listing = ", ".join(repr(name) for name in served)
    if override:
        if override in served:
            return override
        raise BackendError(f"model {override!r} (--vllm-served-model) is not served by {endpoint}; it serves {listing}")
    if requested in served:
        return requested
    if len(served) == 1:
        return served[0]
    raise BackendError(
        f"model {requested!r} is not served by {endpoint}; it serves {listing} (choose with --vllm-served-model)"
    )


def error_message(body: bytes) -> str:
    """The server's reason from any of the error shapes seen: ``{"error": {...}}``, ``{"error": "..."}``,
    ``{"detail": ...}`` (FastAPI), or plain text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:200] if text else "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:200]
    return text[:200]


# -- request bodies -------------------------------------------------------------------------------------------------
def generation_fields(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """OpenAI request fields for transformers-style generation parameters, exact lengths the way ``kind`` takes them."""
    params = dict(params)
    max_new = int(params.pop("max_new_tokens", 16))
    min_new = int(params.pop("min_new_tokens", 0) or 0)
    do_sample = bool(params.pop("do_sample", False))
    if int(params.pop("num_beams", 1)) != 1:
        raise BackendError("num_beams: the vllm backend sends one sequence per request; beam search is not served")
    fields: dict[str, Any] = {"max_tokens": max_new, "stream": True, "stream_options": {"include_usage": True}}
    if not do_sample:
        fields["temperature"] = 0.0
    sequences = int(params.pop("num_return_sequences", 1))
    if sequences != 1:
        fields["n"] = sequences
    for name in ("pad_token_id", "eos_token_id"):  # tokenizer details of in-process generation; the server knows
        params.pop(name, None)
    if min_new > 0 and kind == VLLM:
        fields["min_tokens"] = min_new
        if min_new >= max_new:
            fields["ignore_eos"] = True
    elif min_new > 0 and kind == TRANSFORMERS:
        fields["generation_config"] = json.dumps({"min_new_tokens": min_new})
    fields.update(params)  # anything else a test passed (top_p, seed...), as the server's own field
    return fields


def query_fields(task: TaskSpec, text: str) -> tuple[str, dict[str, Any]]:
    """The route and the prompt part of one request."""
    if task.name == "text_generation":
        return "/completions", {"prompt": text}
    content = SUMMARIZE_PROMPT.format(text=text) if task.name == "summarization" else text
    fields: dict[str, Any] = {"messages": [{"role": "user", "content": content}]}
    if task.reasoning_kwargs:
        fields["chat_template_kwargs"] = dict(task.reasoning_kwargs)
    return "/chat/completions", fields


# -- one request ----------------------------------------------------------------------------------------------------
class RequestFailed(Exception):
    """One attempt failed; ``retry`` says whether another attempt may help."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(slots=True)
class Result:
    """What one request (all its attempts) came to."""

    ok: bool
    started: float
    ended: float
    first_token: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    from_usage: bool = True
    retries: int = 0
    error: str | None = None


class StreamReader:
    """Server-sent events of one streamed completion: time of the first token, the last ``usage``, and a count of
    streamed pieces for servers that send no usage. Only the events that matter are JSON-decoded."""

    __slots__ = ("buffer", "chunks", "done", "error", "first_token", "usage")

    def __init__(self) -> None:
        self.buffer = b""
        self.first_token: float | None = None
        self.usage: dict[str, Any] | None = None
        self.chunks = 0
        self.error: str | None = None
        self.done = False

    def feed(self, piece: bytes, now: float) -> None:
        data = self.buffer + piece
        if b"\r" in data:  # CRLF line ends are allowed too; a CR left at the end is joined with its LF next time
            data = data.replace(b"\r\n", b"\n")
        *events, self.buffer = data.split(b"\n\n")
        for event in events:
            if self.first_token is not None and _plain_event(event):
                # the common case once tokens flow: a token chunk, or the usage chunk, read without decoding
                usage = _usage_numbers(event) if b'"usage"' in event else None
                if usage is None:
                    self.chunks += 1
                else:
                    self.usage = usage
                continue
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._data(line[5:].strip(), now)

    def _data(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
        elif self.first_token is not None or not _surely_empty(payload) or b'"usage"' in payload:
            self._event(payload, now)

    def _event(self, payload: bytes, now: float) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            raise RequestFailed(f"the stream carried something that is not JSON: {payload[:80]!r}", True) from None
        if not isinstance(event, dict):
            return
        if event.get("error"):
            self.error = error_message(payload)
            return
        if event.get("usage"):
            self.usage = event["usage"]
        choices = event.get("choices") or ()
        if choices and _has_text(choices[0]):
            self.chunks += 1
            if self.first_token is None:
                self.first_token = now


def _plain_event(event: bytes) -> bool:
    """One ``data:`` line of JSON without an error in it (an error is always decoded, to report its message)."""
    return event.startswith(b"data: {") and b"\n" not in event and b'"error"' not in event


_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def _usage_numbers(event: bytes) -> dict[str, Any] | None:
    """The usage counts of a chunk, found without decoding all of it; None when it has none (``"usage": null``).

    Exact keys only: a quote inside generated text is escaped (``\\"``), so it cannot look like one of these keys.
    """
    completion = _COMPLETION_TOKENS.search(event)
    if completion is None:
        return None
    prompt = _PROMPT_TOKENS.search(event)
    return {"completion_tokens": int(completion[1]), "prompt_tokens": int(prompt[1]) if prompt else None}


def _surely_empty(payload: bytes) -> bool:
    """A chunk that carries no text for certain (vLLM's and transformers serve's opening role chunk), known without
    decoding it; anything less certain is decoded."""
    if b'"reasoning' in payload or b'"error"' in payload:
        return False
    return (b'"text"' not in payload or b'"text":""' in payload) and (
        b'"content"' not in payload or b'"content":""' in payload
    )


def _has_text(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return bool(choice.get("text") or delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"))


# -- the load generator ---------------------------------------------------------------------------------------------
@dataclass
class SteadyState:
    """The stretch of a run with N requests in flight: from the first moment N were in flight until the queue drained
    (the last request was sent and the first worker found nothing left to send)."""

    name: str
    started: float | None = None
    started_wall: float | None = None
    ended: float | None = None
    ended_wall: float | None = None
    measurement: Measurement | None = None
    problem: str | None = None


@dataclass
class Load:
    """Bookkeeping of one phase's requests while they run."""

    total: int
    concurrency: int
    window_hook: WindowMeter | None
    steady: SteadyState
    results: list[Result | None] = field(default_factory=list)
    in_flight: int = 0
    failed: int = 0
    aborted: bool = False

    def __post_init__(self) -> None:
        self.results = [None] * self.total
        self.allowed_failures = int(self.total * MAX_FAILURE_RATE)

    def sending(self) -> None:
        self.in_flight += 1
        if self.concurrency > 1 and self.in_flight == self.concurrency and self.steady.started is None:
            self._begin_steady()

    def finished(self, index: int, result: Result) -> None:
        self.in_flight -= 1
        self.results[index] = result
        if not result.ok:
            self.failed += 1
            # past the limit the benchmark fails anyway: stop sending instead of waiting out every retry
            self.aborted = self.failed > self.allowed_failures

    def queue_empty(self) -> None:
        if self.steady.started is not None and self.steady.ended is None:
            self._end_steady()

    def _begin_steady(self) -> None:
        steady = self.steady
        if self.window_hook is not None:
            try:
                self.window_hook.begin_window(steady.name)
            except Exception as err:  # a meter that cannot open a window leaves the times, not the run, short
                steady.problem = f"the steady-state window could not be metered: {err}"
                self.window_hook = None
        steady.started, steady.started_wall = time.perf_counter(), time.time()

    def _end_steady(self) -> None:
        steady = self.steady
        steady.ended, steady.ended_wall = time.perf_counter(), time.time()
        if self.window_hook is not None:
            try:
                steady.measurement = self.window_hook.end_window(steady.name)
            except Exception as err:
                steady.problem = f"the steady-state window could not be metered: {err}"

    def cancel(self) -> None:
        """After an interruption: leave no window open on the session's meter."""
        if self.window_hook is not None and self.steady.started is not None and self.steady.ended is None:
            self.window_hook.cancel_window(self.steady.name)


_window_ids = itertools.count(1)


class VllmBackend(Backend):
    """Sends a task's requests to an OpenAI-compatible server and counts the work from its answers."""

    name = "vllm"
    cpu_scope = "machine"  # a local server's CPU work is done by another process

    def __init__(self) -> None:
        self.window_hook: WindowMeter | None = None  # set by the runner: meters the steady state inside a phase
        self.endpoint: Endpoint | None = None
        self.task: TaskSpec | None = None
        self.kind = GENERIC
        self.served_model = ""
        self.concurrency = 1
        self.timeout_s = 120.0
        self.facts: dict[str, Any] = {}
        self._api_key: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._transport: Any = None

    # -- load ---------------------------------------------------------------------------------------------------
    def load(self, request: LoadRequest) -> dict[str, Any]:
        """Connect and check the server before anything is metered: a bad endpoint fails here, in one line."""
        task = request.task
        if task.name not in SERVED_TASKS:
            raise BackendError(
                f"task {task.name} cannot run on --backend vllm; it serves text tasks only: {', '.join(SERVED_TASKS)}"
            )
        options = dict(request.options)
        endpoint = parse_endpoint(options.get("endpoint"))
        self.endpoint, self.task = endpoint, task
        self.concurrency = int(options.get("concurrency") or 1)
        self.timeout_s = float(options.get("timeout_s") or 120.0)
        key_env = str(options.get("api_key_env") or "VLLM_API_KEY")
        self._api_key = os.environ.get(key_env) or None
        self._open_client()
        try:
            entries = self._call(self._models(key_env))
            served = [str(entry.get("id")) for entry in entries if entry.get("id")]
            if not served:
                raise BackendError(f"{endpoint} serves no model (GET /v1/models listed none)")
            self.served_model = resolve_served_model(request.model, options.get("served_model"), served, endpoint)
        except BaseException:  # the runner keeps no backend that failed to load: nothing may stay open
            self.close()
            raise
        self.kind = server_kind(entries)
        self.facts = self._facts(request, entries, key_env)
        return self.facts

    def _facts(self, request: LoadRequest, entries: list[dict[str, Any]], key_env: str) -> dict[str, Any]:
        assert self.endpoint is not None and self.task is not None
        entry = next(e for e in entries if e.get("id") == self.served_model)
        local = is_local_host(self.endpoint.host)
        route, _ = query_fields(self.task, "")
        notes = []
        if self.served_model != request.model:
            notes.append(f"{self.endpoint} serves the model as {self.served_model!r}, used for {request.model!r}")
        if not local:
            notes.append(
                f"the server at {self.endpoint} is on another host: no local GPU was metered, the energy figures cover "
                "this machine only (remote metering is a separate feature)"
            )
        if self.kind == GENERIC:
            notes.append(
                f"{self.endpoint} is neither vLLM nor transformers serve: exact output lengths cannot be asked for, "
                "token counts are what it generated"
            )
        folder = str(entry.get("root") or self.served_model)
        return {
            "device": "server",
            "path": folder if local and os.path.isdir(folder) else None,  # lets the model's size be counted
            "server": self.kind,
            "endpoint": str(self.endpoint),
            "served_model": self.served_model,
            "max_model_len": entry.get("max_model_len"),
            "route": f"/v1{route}",
            "server_local": local,
            "local_gpus_metered": local,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "api_key": f"from ${key_env}" if self._api_key else "none",
            "notes": notes,
        }

    def _open_client(self) -> None:
        """One event loop for the backend's life, so that keep-alive connections outlast a phase."""
        import httpx

        from .lean_http import LeanTransport

        assert self.endpoint is not None
        self.close()
        self._loop = asyncio.new_event_loop()
        if self.endpoint.scheme == "http":
            self._transport = LeanTransport(self.timeout_s, max_idle=self.concurrency)
        else:  # TLS: httpx's own transport, its pool sized to the concurrency
            limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            self._transport = httpx.AsyncHTTPTransport(limits=limits)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(
            transport=self._transport, headers=headers, timeout=self.timeout_s, trust_env=False
        )

    def _call(self, coroutine: Awaitable[T]) -> T:
        assert self._loop is not None
        return self._loop.run_until_complete(coroutine)

    async def _models(self, key_env: str) -> list[dict[str, Any]]:
        """GET /v1/models, every way it can go wrong turned into one line that names the endpoint."""
        import httpx

        endpoint = self.endpoint
        assert endpoint is not None
        try:
            response = await self._client.get(endpoint.url("/models"))
        except httpx.ConnectError as err:
            raise BackendError(f"cannot connect to {endpoint}: {_reason(err)} (is the server running?)") from None
        except httpx.TimeoutException:
            raise BackendError(f"{endpoint} did not answer GET /v1/models within {self.timeout_s:g} s") from None
        except httpx.HTTPError as err:
            raise BackendError(f"{endpoint}: GET /v1/models failed: {_reason(err)}") from None
        status = response.status_code
        if status in (401, 403):
            if self._api_key:
                raise BackendError(f"{endpoint} rejected the API key from ${key_env} (HTTP {status})")
            raise BackendError(
                f"{endpoint} needs an API key (HTTP {status}): set ${key_env}, or name another variable with "
                "--vllm-api-key-env"
            )
        if status == 404:
            raise BackendError(f"{endpoint} is not an OpenAI-compatible server: GET /v1/models answered 404")
        if status != 200:
            reason = error_message(response.content)
            raise BackendError(f"{endpoint}: GET /v1/models answered HTTP {status}: {reason}")
        try:
            data = response.json()
            entries = [e for e in data["data"] if isinstance(e, dict)]
        except (ValueError, KeyError, TypeError):
            raise BackendError(
                f"{endpoint} is not an OpenAI-compatible server: GET /v1/models did not return a model list"
            ) from None
        return entries

    # -- preprocess ---------------------------------------------------------------------------------------------
    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        """Request bodies without the generation fields (they differ per phase); nothing is sent, nothing counted."""
        task = self._loaded_task()
        inputs = []
        for sample in samples:
            route, fields = query_fields(task, str(sample["text"]))
            inputs.append((route, {"model": self.served_model, **fields}))
        return Prepared(inputs, details={"token_counts": "from the server's usage, once requests ran"})

    def _loaded_task(self) -> TaskSpec:
        if self.task is None or self.endpoint is None:
            raise BackendError("no server is connected")
        return self.task

    # -- warm-up and phases -------------------------------------------------------------------------------------
    def warmup(self, prepared: Prepared, runs: int, overrides: dict[str, Any]) -> None:
        """Unmetered short requests on the first prompt; one that fails even after retries stops the benchmark."""
        if not runs or not prepared.inputs:
            return
        bodies = self._bodies(prepared.inputs[:1], overrides, "warmup") * runs
        load = Load(len(bodies), 1, None, SteadyState("warmup"))
        self._call(self._run_load(load, bodies, lambda n: None))
        failure = next((r for r in load.results if r is not None and not r.ok), None)
        if failure is not None:
            raise BackendError(f"warm-up request to {self.endpoint} failed: {failure.error}")

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        """Every request of the phase; failures are counted in the details, which fail the benchmark past 5%."""
        if phase not in ("prefill", "generate"):
            raise BackendError(f"task {self._loaded_task().name} has no phase {phase!r} on --backend vllm")
        bodies = self._bodies(prepared.inputs, overrides, phase)
        steady = SteadyState(f"{phase}-steady-state#{next(_window_ids)}")
        load = Load(len(bodies), self.concurrency, self.window_hook, steady)
        started = time.perf_counter()
        try:
            self._call(self._run_load(load, bodies, progress))
        except BaseException:  # Ctrl-C or a bug: no window left open, no request left running
            load.cancel()
            self._cancel_pending()
            raise
        work = self._phase_work(load, time.perf_counter() - started, bodies)
        if work.details.get("prompt_tokens") is not None:
            prepared.input_tokens = work.details["prompt_tokens"]  # the server's count is the one that exists
        return work

    def _bodies(
        self, inputs: list[tuple[str, dict[str, Any]]], overrides: dict[str, Any], phase: str
    ) -> list[tuple[Any, bytes]]:
        """(URL, JSON body) per request, all built before the first request is sent, so sending is all that is left."""
        import httpx

        task = self._loaded_task()
        assert self.endpoint is not None
        params = {**task.generate_kwargs, **overrides}
        if phase == "prefill":
            params.update(max_new_tokens=1, min_new_tokens=1)
        elif phase == "warmup":
            params.update(WARMUP_GENERATE)
        fields = generation_fields(self.kind, params)
        urls: dict[str, Any] = {}
        out = []
        for route, query in inputs:
            url = urls.get(route) or urls.setdefault(route, httpx.URL(self.endpoint.url(route)))
            out.append((url, json.dumps({**query, **fields}).encode()))
        return out

    async def _run_load(self, load: Load, bodies: list[tuple[Any, bytes]], progress: Progress) -> None:
        """``load.concurrency`` workers, each sending the next request as soon as its last one finished."""
        queue = iter(range(len(bodies)))
        headers = self._request_headers()
        extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout_s)}

        async def worker() -> None:
            for index in queue:
                if load.aborted:
                    break
                load.sending()
                url, body = bodies[index]
                result = await self._request(url, body, headers, extensions)
                load.finished(index, result)
                progress(1)
            load.queue_empty()

        await asyncio.gather(*(worker() for _ in range(min(load.concurrency, len(bodies)))))

    def _request_headers(self) -> list[tuple[bytes, bytes]]:
        assert self.endpoint is not None
        host = self.endpoint.base.split("://", 1)[1].split("/", 1)[0]
        headers = [
            (b"Host", host.encode("ascii")),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"text/event-stream"),
        ]
        if self._api_key:
            headers.append((b"Authorization", f"Bearer {self._api_key}".encode("latin-1")))
        return headers

    async def _request(
        self, url: Any, body: bytes, headers: list[tuple[bytes, bytes]], extensions: dict[str, Any]
    ) -> Result:
        """One request with its retries: the result of the first attempt that worked, or of the last that failed."""
        started = time.perf_counter()
        retries = 0
        while True:
            try:
                return await self._attempt(url, body, headers, extensions, started, retries)
            except RequestFailed as failure:
                if not failure.retry or retries >= RETRIES:
                    return Result(False, started, time.perf_counter(), retries=retries, error=str(failure))
            await asyncio.sleep(min(BACKOFF_S * 2**retries, BACKOFF_MAX_S))
            retries += 1

    async def _attempt(
        self,
        url: Any,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        extensions: dict[str, Any],
        started: float,
        retries: int,
    ) -> Result:
        """One streamed POST read to its end; whatever goes wrong becomes RequestFailed, saying if a retry may help."""
        import httpx

        # a ready stream and length: several times cheaper than content=, which re-derives both every time
        length = (b"Content-Length", str(len(body)).encode())
        request = httpx.Request(
            "POST", url, headers=[*headers, length], stream=httpx.ByteStream(body), extensions=extensions
        )
        stream = StreamReader()
        clock = time.perf_counter
        try:
            response = await self._transport.handle_async_request(request)
            try:
                if response.status_code != 200:
                    reason = error_message(await response.aread())
                    status = response.status_code
                    raise RequestFailed(f"HTTP {status}: {reason}", status >= 500 or status in RETRY_STATUSES)
                pieces = response.stream  # the transport's own stream: no decoding layers (nothing is encoded)
                assert isinstance(pieces, httpx.AsyncByteStream)
                async for piece in pieces:
                    stream.feed(piece, clock())
            finally:
                await response.aclose()
        except httpx.TimeoutException as err:
            raise RequestFailed(f"timed out: {_reason(err)}", True) from None
        except httpx.TransportError as err:
            raise RequestFailed(f"{type(err).__name__}: {_reason(err)}", True) from None
        if stream.error is not None:
            raise RequestFailed(f"the server reported an error mid-stream: {stream.error}", True)
        if stream.usage is None and stream.first_token is None:
            raise RequestFailed("the answer held no streamed completion (no usage, no token)", False)
        return _result(stream, started, clock(), retries)

    def _phase_work(self, load: Load, wall_s: float, bodies: list[tuple[Any, bytes]]) -> PhaseWork:
        details = phase_details(load, wall_s)
        details.update(
            endpoint=str(self.endpoint),
            server=self.kind,
            served_model=self.served_model,
            request_fields=_request_fields(bodies),
        )
        if details["failed"] > load.allowed_failures:
            details["error"] = failure_error(load, str(self.endpoint))
        return PhaseWork(samples=load.total, tokens=details["completion_tokens"], details=details)

    def _cancel_pending(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def close(self) -> None:
        """Close the connections and the backend's event loop (streams left half-read included)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._client is not None:
            loop.run_until_complete(self._client.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._client = self._transport = None


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _result(stream: StreamReader, started: float, ended: float, retries: int) -> Result:
    usage = stream.usage or {}
    completion = usage.get("completion_tokens")
    from_usage = isinstance(completion, int)
    return Result(
        ok=True,
        started=started,
        ended=ended,
        first_token=stream.first_token,
        prompt_tokens=usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else None,
        completion_tokens=completion if from_usage else stream.chunks,
        from_usage=from_usage,
        retries=retries,
    )


def _request_fields(bodies: list[tuple[Any, bytes]]) -> dict[str, Any]:
    """The generation fields as sent (from the first body), for the record: no prompt, no header, no key."""
    if not bodies:
        return {}
    body = json.loads(bodies[0][1])
    return {k: v for k, v in body.items() if k not in ("prompt", "messages", "model")}


# -- what a phase's requests add up to ------------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float] | None:
    """Mean and nearest-rank p50/p90/p99, in seconds."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return {"mean": sum(ordered) / len(ordered), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99)}


def phase_details(load: Load, wall_s: float) -> dict[str, Any]:
    """Counts, token source, latencies, failures and the steady state of one phase, for the record."""
    done = [r for r in load.results if r is not None]
    ok = [r for r in done if r.ok]
    prompt = [r.prompt_tokens for r in ok]
    counted = sum(1 for r in ok if not r.from_usage)
    source = "server usage"
    if counted:
        source = "counted streamed chunks: the server sent no usage" if counted == len(ok) else "mixed"
    errors = list(dict.fromkeys(r.error for r in done if r.error))
    return {
        "concurrency": load.concurrency,
        "requests": load.total,
        "succeeded": len(ok),
        "failed": len(done) - len(ok),
        "not_sent": load.total - len(done),
        "failure_rate": (len(done) - len(ok)) / load.total if load.total else 0.0,
        "max_failure_rate": MAX_FAILURE_RATE,
        "retries": sum(r.retries for r in done),
        "errors": errors[:5],
        "prompt_tokens": sum(p for p in prompt if p is not None) if prompt and None not in prompt else None,
        "completion_tokens": sum(r.completion_tokens or 0 for r in ok),
        "token_count_source": source,
        "ttft_s": percentiles([r.first_token - r.started for r in ok if r.first_token is not None]),
        "latency_s": percentiles([r.ended - r.started for r in ok]),
        "wall_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else None,
        "steady_state": steady_state_details(load, ok),
    }


def steady_state_details(load: Load, ok: list[Result]) -> dict[str, Any] | None:
    """ML.ENERGY-style figures of the window with N requests in flight: its energy per token and per request.

    Requests completed inside the window count whole; tokens are counted as generated evenly between a request's
    first token and its end, so that requests running across an edge count only their share inside the window.
    """
    if load.concurrency <= 1:
        return None
    steady = load.steady
    if steady.started is None or steady.ended is None:
        return {"reached": False, "why": f"never {load.concurrency} requests in flight (fewer requests than that?)"}
    start, end = steady.started, steady.ended
    requests = sum(1 for r in ok if start <= r.ended <= end)
    tokens = 0.0
    for r in ok:
        first = r.first_token if r.first_token is not None else r.started
        span = r.ended - first
        overlap = max(0.0, min(end, r.ended) - max(start, first))
        if span > 0:
            tokens += (r.completion_tokens or 0) * overlap / span
        elif start <= r.ended <= end:
            tokens += r.completion_tokens or 0
    details: dict[str, Any] = {
        "reached": True,
        "window": "from the moment N requests were in flight until the queue drained",
        "started_at": steady.started_wall,
        "ended_at": steady.ended_wall,
        "duration_s": end - start,
        "requests_completed": requests,
        "tokens": tokens,
        "tokens_method": "each request's completion tokens spread evenly from its first token to its end",
        "energy_source": None,
    }
    m = steady.measurement
    if m is not None:
        joules = m.joules()
        details.update(
            energy_source="metered",
            energy_j=joules,
            meter=m.meter,
            kind=m.kind,
            confidence=m.confidence,
            warnings=list(m.warnings),
            j_per_token=joules / tokens if tokens else None,
            j_per_request=joules / requests if requests else None,
        )
    elif steady.problem:
        details["why_not_metered"] = steady.problem
    else:
        details["why_not_metered"] = "no meter was handed to the backend"
    return details


def failure_error(load: Load, endpoint: str) -> str:
    """The one line that fails the benchmark when more than 5% of its requests failed."""
    done = [r for r in load.results if r is not None]
    failed = sum(1 for r in done if not r.ok)
    share = failed / load.total * 100 if load.total else 0.0
    last = next((r.error for r in reversed(done) if r.error), "unknown")
    unsent = load.total - len(done)
    stopped = f"; stopped early, {unsent} not sent" if unsent else ""
    return (
        f"{failed} of {load.total} requests to {endpoint} failed ({share:.1f}% > {MAX_FAILURE_RATE:.0%} allowed)"
        f"{stopped}; last error: {last}"
    )
