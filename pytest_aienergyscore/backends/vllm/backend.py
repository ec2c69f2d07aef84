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
(``chat_template_kwargs``). The API key is read from an environment variable into a :class:`~.secret.Secret` and only
ever sent as a header: it is in no option, log, record, error message or ``repr``, and every text the server sent back
is masked (``redact``) before it is kept, since a server may repeat the request's headers in its errors.

A server is not trusted to be well-behaved either: ``/v1/models`` and error bodies are read up to ``MAX_BODY_BYTES``,
one streamed event up to ``MAX_EVENT_BYTES`` (parsed in linear time), a request with its retries is given up after
``DEADLINE_FACTOR`` times ``--vllm-timeout`` even when bytes keep trickling in, and token counts that cannot be true
(negative, not whole numbers, above ``max_tokens`` and a margin) fail the request instead of entering the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from pytest_aienergyscore.backends.base import Backend, BackendError, LoadRequest, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.secret import Secret, redact
from pytest_aienergyscore.records.figures import Measurement
from pytest_aienergyscore.rules.tasks import TaskSpec

SERVED_TASKS = ("text_generation", "reasoning", "summarization")
MAX_FAILURE_RATE = 0.05  # more failed requests than this fails the benchmark
RETRIES = 3  # further attempts after the first, for timeouts, 5xx answers and broken streams
BACKOFF_S = 0.25  # wait before the first retry; doubled for each further one
BACKOFF_MAX_S = 4.0
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx: the server may recover; other 4xx will not change
SUMMARIZE_PROMPT = "Summarize the following text.\n\n{text}"
MAX_BODY_BYTES = 1 << 20  # GET /v1/models and error bodies: far more than any real one, and read no further
MAX_EVENT_BYTES = 4 << 20  # one server-sent event: a token chunk is under a kilobyte, logprobs and all
DEADLINE_FACTOR = 10  # a request as a whole, retries included, is given up after this many --vllm-timeout
TOKEN_MARGIN = 8  # completion tokens a server may report above max_tokens (an end token counted, say)

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


# -- where a local server runs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerPlace:
    """The processes of a local server and the GPUs they hold, for the record and the one-GPU rule.

    ``gpus`` is a list of ``{"cuda": ordinal or None, "uuid": ...}`` (empty: the server holds no GPU), or None when
    that cannot be told; ``how`` says where the answer came from, ``note`` what the record should say about it.
    """

    pids: tuple[int, ...] | None
    gpus: list[dict[str, Any]] | None
    how: str
    note: str | None = None


def server_pids(endpoint: Endpoint) -> tuple[tuple[int, ...] | None, str]:
    """The pids of the process listening on the endpoint's port here, and of all its children (vLLM runs the model in
    child processes); None, with the reason, when no listener is found or its owner cannot be seen."""
    import psutil

    wanted = _host_addresses(endpoint.host)
    owners: set[int] = set()
    hidden = False
    try:
        sockets = psutil.net_connections(kind="tcp")
    except psutil.Error as err:  # macOS lists other processes' sockets to root only
        return None, f"the process serving port {endpoint.port} here is unknown: the sockets cannot be listed ({err})"
    for conn in sockets:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != endpoint.port:
            continue
        if not _listens_on(str(conn.laddr.ip), wanted):
            continue
        if conn.pid is None:
            hidden = True  # another user's process: its file descriptors cannot be read
        else:
            owners.add(conn.pid)
    if not owners:
        why = "its owner cannot be seen (another user's process?)" if hidden else "no listening socket was found"
        return None, f"the process serving port {endpoint.port} here is unknown: {why}"
    pids = set(owners)
    for pid in owners:
        with contextlib.suppress(psutil.Error):
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    return tuple(sorted(pids)), f"listening on port {endpoint.port}: pid {', '.join(map(str, sorted(owners)))}"


def _host_addresses(host: str) -> set[str]:
    try:
        return {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


def _listens_on(ip: str, wanted: set[str]) -> bool:
    """A listener on the wildcard address takes every local address; an IPv4-mapped IPv6 one its IPv4 address."""
    ip = ip.split("%")[0]
    return ip in ("", "0.0.0.0", "::") or ip in wanted or ip.removeprefix("::ffff:") in wanted


def locate_server(endpoint: Endpoint, load_nvml: Any = None) -> ServerPlace:
    """Which GPUs a local server runs on: those whose NVML running processes include one of the server's pids."""
    from pytest_aienergyscore.meters import MeterUnavailable
    from pytest_aienergyscore.meters.gpu_processes import foreign_pids, gpu_pids, gpus_held_by
    from pytest_aienergyscore.meters.nvml import load_pynvml

    pids, how = server_pids(endpoint)
    if pids is None:
        return ServerPlace(None, None, how, f"{how}; the metered GPUs were not checked against the server's")
    try:
        nvml = (load_nvml or load_pynvml)()
    except MeterUnavailable as err:  # no NVIDIA driver: the server holds no NVIDIA GPU
        return ServerPlace(pids, [], f"{how}; no GPU process list here: {err}")
    try:
        holders = gpu_pids(nvml)
    except nvml.NVMLError as err:
        why = f"NVML failed to list the GPUs: {err}"
        return ServerPlace(pids, None, f"{how}; {why}", f"the server's GPUs cannot be told: {why}")
    held = gpus_held_by(holders, pids)
    unreadable = [f"{g.device}: {g.unreadable}" for g in holders if g.unreadable]
    if held:
        gpus = [{"cuda": g.ordinal, "uuid": g.uuid} for g in held]
        partial = f"it may hold more: NVML cannot list the processes of {'; '.join(unreadable)}" if unreadable else None
        return ServerPlace(pids, gpus, f"{how}; its GPUs from NVML's running processes", partial)
    unknown = sorted(foreign_pids(holders))
    if unknown or unreadable:
        why = (
            f"NVML lists pids that are no process here ({', '.join(map(str, unknown))}: another PID namespace)"
            if unknown
            else f"NVML cannot list the processes of {'; '.join(unreadable)}"
        )
        return ServerPlace(pids, None, f"{how}; {why}", f"the server's GPUs cannot be told: {why}")
    others = [g.device for g in holders if g.pids]
    busy = f"; GPUs {', '.join(others)} are held by other processes" if others else ""
    note = f"the server at {endpoint} (pids {', '.join(map(str, pids))}) holds no GPU{busy}"
    return ServerPlace(pids, [], f"{how}; NVML's running processes include none of its pids", note)


# -- what the server is and serves ----------------------------------------------------------------------------------
def server_kind(entries: list[dict[str, Any]]) -> str:
    """vLLM says ``owned_by: vllm``; transformers serve adds a non-OpenAI ``status`` field; anything else is generic."""
    if any(entry.get("owned_by") == "vllm" for entry in entries):
        return VLLM
    if any(isinstance(entry.get("status"), dict) for entry in entries):
        return TRANSFORMERS
    return GENERIC


def secret_from_env(name: str) -> Secret | None:
    """The API key from its environment variable, straight into a Secret: no frame ever holds it as a plain local
    (``pytest -l`` prints them)."""
    return Secret(os.environ[name]) if os.environ.get(name) else None


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


def error_message(body: bytes, secrets: tuple[Secret, ...] = ()) -> str:
    """The server's reason from any of the error shapes seen: ``{"error": {...}}``, ``{"error": "..."}``,
    ``{"detail": ...}`` (FastAPI), or plain text; ``secrets`` masked before anything is cut short, so that no part of
    a key the server repeated survives."""
    text = redact(body.decode("utf-8", "replace"), secrets).strip()
    first_line = text.splitlines()[0][:200] if text else "(empty body)"
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            error = data.get("error", data.get("detail", data.get("message")))
            if isinstance(error, dict):
                error = error.get("message", error)
            if error is not None:
                return " ".join(str(error).split())[:200]
    except (ValueError, RecursionError):  # not JSON, or JSON nested deeper than a parser can follow
        return first_line
    return " ".join(text.split())[:200]


# -- request bodies -------------------------------------------------------------------------------------------------
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
    streamed pieces for servers that send no usage. Only the events that matter are JSON-decoded.

    Linear in the stream's size whatever the server sends: a piece in which no event ends is only held, never
    searched again, and the held pieces are joined once, when their event ends (``joined_bytes`` counts what those
    joins copied: each byte at most twice). One event may not exceed ``MAX_EVENT_BYTES``.
    """

    __slots__ = (
        "_cr",
        "_held",
        "_held_bytes",
        "chunks",
        "done",
        "error",
        "first_token",
        "joined_bytes",
        "secrets",
        "usage",
    )

    def __init__(self, secrets: tuple[Secret, ...] = ()) -> None:
        self.secrets = secrets  # masked in an error event's message before it is cut to length
        self._held: list[bytes] = []  # the start of an event that has not ended yet
        self._held_bytes = 0
        self._cr = False  # the last piece ended in a CR, whose LF may start the next one
        self.first_token: float | None = None
        self.usage: Any = None
        self.chunks = 0
        self.error: str | None = None
        self.done = False
        self.joined_bytes = 0

    def feed(self, piece: bytes, now: float) -> None:
        if self._cr or b"\r" in piece:
            piece = self._lf_only(piece)
        held = self._held
        if piece.find(b"\n\n") < 0 and not (held and held[-1].endswith(b"\n") and piece.startswith(b"\n")):
            self._hold(piece)
            return
        if held:
            data = b"".join([*held, piece])
            self.joined_bytes += len(data)
            self._held, self._held_bytes = [], 0
        else:
            data = piece
        *events, rest = data.split(b"\n\n")
        if rest:
            self._hold(rest)
        for event in events:
            # the common case once tokens flow, inline (this runs for every token): a token chunk, counted without
            # decoding; a chunk that carries usage (not ``"usage": null``) or surely no text is decoded or skipped,
            # so that it never counts as a token
            if self.first_token is not None and _plain_event(event):
                if b'"usage"' in event and b'"usage":null' not in event and b'"usage": null' not in event:
                    self._event(event[5:].strip(), now)
                elif not _surely_empty(event):
                    self.chunks += 1
            else:
                self._one(event, now)

    def _lf_only(self, piece: bytes) -> bytes:
        """CRLF line ends as LF; a CR at the end of a piece waits for the LF that may start the next one."""
        if self._cr:
            piece, self._cr = b"\r" + piece, False
        if piece.endswith(b"\r"):
            piece, self._cr = piece[:-1], True
        return piece.replace(b"\r\n", b"\n")

    def _hold(self, piece: bytes) -> None:
        if not piece:
            return
        self._held.append(piece)
        self._held_bytes += len(piece)
        if self._held_bytes > MAX_EVENT_BYTES:
            raise RequestFailed(f"the server sent an event of more than {MAX_EVENT_BYTES >> 20} MB", False)

    def _one(self, event: bytes, now: float) -> None:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                self._data(line[5:].strip(), now)

    def _data(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
        elif self.first_token is not None or not _surely_empty(payload) or _NON_NULL_USAGE.search(payload):
            self._event(payload, now)

    def _event(self, payload: bytes, now: float) -> None:
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise RequestFailed(f"the stream carried something that is not JSON: {payload[:80]!r}", True) from None
        if not isinstance(event, dict):
            return
        if event.get("error"):
            self.error = error_message(payload, self.secrets)
            return
        usage = event.get("usage")
        if isinstance(usage, dict):  # the two counts are all that is kept (checked in _result)
            self.usage = {
                "completion_tokens": usage.get("completion_tokens"),
                "prompt_tokens": usage.get("prompt_tokens"),
            }
        elif usage is not None:
            self.usage = usage  # not an object: _result says so
        choices = event.get("choices") or ()
        if isinstance(choices, list) and choices and isinstance(choices[0], dict) and _has_text(choices[0]):
            self.chunks += 1
            if self.first_token is None:
                self.first_token = now


def _plain_event(event: bytes) -> bool:
    """One ``data:`` line of JSON without an error in it (an error is always decoded, to report its message)."""
    return event.startswith(b"data: {") and b"\n" not in event and b'"error"' not in event


_NON_NULL_USAGE = re.compile(rb'"usage"\s*:\s*[^n\s]')


def _surely_empty(payload: bytes) -> bool:
    """A chunk that carries no text for certain (vLLM's and transformers serve's opening role chunk, a usage chunk),
    known without decoding it; anything less certain is decoded."""
    if b'"reasoning' in payload or b'"error"' in payload or payload.count(b'"text"') != payload.count(b'"text":""'):
        return False
    return payload.count(b'"content"') == payload.count(b'"content":""')


def _has_text(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        delta = {}
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
_JSON_ANSWER = {"Accept": "application/json"}  # GET /v1/models (its Content-Type, with no body, says nothing)


class VllmBackend(Backend):
    """Sends a task's requests to an OpenAI-compatible server and counts the work from its answers."""

    name = "vllm"
    cpu_scope = "machine"  # a local server's CPU work is done by another process
    remote = True  # the work runs in the server: the load request's device is "server"

    @classmethod
    def options_from(cls, settings: Any) -> tuple[tuple[str, Any], ...]:
        """The endpoint, the API key's variable name (never the key), timeout, served model and concurrency."""
        return (
            ("endpoint", settings.vllm_endpoint),
            ("api_key_env", settings.vllm_api_key_env),
            ("timeout_s", settings.vllm_timeout),
            ("served_model", settings.vllm_served_model),
            ("concurrency", settings.concurrency),
        )

    def __init__(self) -> None:
        self.window_hook: WindowMeter | None = None  # set by the runner: meters the steady state inside a phase
        self.endpoint: Endpoint | None = None
        self.task: TaskSpec | None = None
        self.kind = GENERIC
        self.served_model = ""
        self.concurrency = 1
        self.timeout_s = 120.0
        self.deadline_s = 120.0 * DEADLINE_FACTOR
        self.facts: dict[str, Any] = {}
        self._api_key: Secret | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None  # the aiohttp session, made on the backend's loop

    # -- load ---------------------------------------------------------------------------------------------------
    def load(self, request: LoadRequest) -> dict[str, Any]:
        """Connect and check the server before anything is metered: a bad endpoint fails here, in one line."""
        task = request.task
        if task.name not in SERVED_TASKS:
            raise BackendError(
                f"task {task.name} cannot run on --backend vllm; it serves text tasks only: {', '.join(SERVED_TASKS)}"
            )
        self.protocol = request.protocol()
        if not self.protocol.is_generative:
            raise BackendError(
                f"{task.name}'s protocol is one forward pass per document (optimum-benchmark's energy_star), which an "
                "OpenAI-compatible server cannot run; use --backend pytorch or optimum, or the 'generate' variant "
                "(not comparable)"
            )
        options = dict(request.options)
        endpoint = parse_endpoint(options.get("endpoint"))
        self.endpoint, self.task = endpoint, task
        self.concurrency = int(options.get("concurrency") or 1)
        self.timeout_s = float(options.get("timeout_s") or 120.0)
        self.deadline_s = self.timeout_s * DEADLINE_FACTOR
        key_env = str(options.get("api_key_env") or "VLLM_API_KEY")
        self._api_key = secret_from_env(key_env)
        self._open_client()
        try:
            entries = self._call(self._models(key_env))
            served = [str(entry.get("id")) for entry in entries if entry.get("id")]
            if not served:
                raise BackendError(f"{endpoint} serves no model (GET /v1/models listed none)")
            self.served_model = resolve_served_model(request.model, options.get("served_model"), served, endpoint)
        except BackendError as err:  # its text may repeat what the server sent
            self.close()
            raise BackendError(self._shown(str(err))) from None
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
            shown = self._shown(repr(self.served_model))
            notes.append(f"{self.endpoint} serves the model as {shown}, used for {request.model!r}")
        if local:
            place = locate_server(self.endpoint)
            if place.note:
                notes.append(place.note)
        else:
            place = ServerPlace(None, None, "the server is on another host: its processes are not visible here")
            notes.append(
                f"the server at {self.endpoint} is on another host: a local meter (nvml, rapl, estimate) measures this "
                "machine, not the server; --energy-meter dcgm reads the server's GPUs"
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
            "served_model": self._shown(self.served_model),
            "max_model_len": _count_or_none(entry.get("max_model_len")),
            "route": f"/v1{route}",
            "server_local": local,
            "server_pids": list(place.pids) if place.pids is not None else None,
            "server_gpus": place.gpus,  # [] holds no GPU; None cannot be told
            "server_gpus_source": place.how,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "request_deadline_s": self.deadline_s,
            "api_key": f"from ${key_env}" if self._api_key else "none",
            "notes": notes,
        }

    def _open_client(self) -> None:
        """One event loop and one aiohttp session for the backend's life, so that keep-alive connections outlast a
        phase. aiohttp because a benchmark client must never be the bottleneck: it costs under 0.2 ms of CPU per
        streamed request at concurrency 64 (vLLM's own benchmark client uses it), speaks http and https alike, and
        its C parser refuses malformed framing (a bad Content-Length, an endless chunk-size line) in one error."""
        assert self.endpoint is not None
        self.close()
        self._loop = asyncio.new_event_loop()
        self._client = self._call(self._session())

    async def _session(self) -> Any:
        """The session, made on the backend's loop. Bodies are read as sent (``identity``, no decompression), so the
        caps on them hold; each read may wait ``timeout_s`` (a stalled server), the request as a whole is bounded by
        the deadline in :meth:`_request`; the pool holds one connection per request in flight."""
        import aiohttp

        # the streamed POSTs' headers, made once: per-request headers would be merged into these for every request
        headers = {"Accept-Encoding": "identity", "Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"  # kept in the session, no frame's local
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        return aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout, auto_decompress=False, trust_env=False
        )

    def _shown(self, text: str) -> str:
        """Text that came from the server, fit to be kept: the API key masked wherever the server repeated it."""
        return redact(text, (self._api_key,))

    def _call(self, coroutine: Awaitable[T]) -> T:
        assert self._loop is not None
        return self._loop.run_until_complete(coroutine)

    async def _models(self, key_env: str) -> list[dict[str, Any]]:
        """GET /v1/models, every way it can go wrong turned into one line that names the endpoint."""
        import aiohttp

        endpoint = self.endpoint
        assert endpoint is not None
        try:
            async with (
                within(self.deadline_s),
                self._client.get(endpoint.url("/models"), headers=_JSON_ANSWER, allow_redirects=False) as response,
            ):
                status = response.status
                body, cut = await read_capped(response.content)
        except asyncio.TimeoutError as err:  # the deadline, or aiohttp's per-read and connect timeouts
            if isinstance(err, aiohttp.ClientError):
                raise BackendError(f"{endpoint} did not answer GET /v1/models within {self.timeout_s:g} s") from None
            raise BackendError(f"{endpoint}: GET /v1/models: {past_deadline(self.deadline_s)}") from None
        except aiohttp.ClientConnectorError as err:
            raise BackendError(f"cannot connect to {endpoint}: {_reason(err)} (is the server running?)") from None
        except aiohttp.ClientError as err:
            raise BackendError(f"{endpoint}: GET /v1/models failed: {_reason(err)}") from None
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
            reason = error_message(body, (self._api_key,) if self._api_key else ())
            raise BackendError(f"{endpoint}: GET /v1/models answered HTTP {status}: {reason}")
        if cut:
            raise BackendError(f"{endpoint}: GET /v1/models answered more than {MAX_BODY_BYTES >> 20} MB; not read")
        try:
            data = json.loads(body)
            entries = [e for e in data["data"] if isinstance(e, dict)]
        except (ValueError, KeyError, TypeError, RecursionError):
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
        from yarl import URL

        self._loaded_task()
        assert self.endpoint is not None and self.protocol is not None
        if phase == "prefill":
            params = self.protocol.prefill(overrides)
        elif phase == "warmup":
            params = self.protocol.warmup_generate(overrides)
        else:
            params = self.protocol.generate(overrides)
        fields = generation_fields(self.kind, params)
        try:
            json.dumps(fields)
        except (TypeError, ValueError) as err:
            raise BackendError(f"generation parameters {fields!r} cannot be sent as JSON: {err}") from None
        urls: dict[str, Any] = {}
        out = []
        for route, query in inputs:
            url = urls.get(route) or urls.setdefault(route, URL(self.endpoint.url(route)))
            out.append((url, json.dumps({**query, **fields}).encode()))
        return out

    async def _run_load(self, load: Load, bodies: list[tuple[Any, bytes]], progress: Progress) -> None:
        """``load.concurrency`` workers, each sending the next request as soon as its last one finished."""
        queue = iter(range(len(bodies)))
        limit = completion_limit(bodies[0][1]) if bodies else None

        async def worker() -> None:
            for index in queue:
                if load.aborted:
                    break
                load.sending()
                url, body = bodies[index]
                result = await self._request(url, body, limit)
                load.finished(index, result)
                progress(1)
            load.queue_empty()

        await asyncio.gather(*(worker() for _ in range(min(load.concurrency, len(bodies)))))

    async def _request(self, url: Any, body: bytes, limit: int | None) -> Result:
        """One request with its retries, all within the request's deadline: the result of the first attempt that
        worked, or of the last that failed, its error fit to keep (the key masked wherever the server repeated it)."""
        started = time.perf_counter()
        retries = 0
        try:
            async with within(self.deadline_s):
                while True:
                    try:
                        return await self._attempt(url, body, started, retries, limit)
                    except RequestFailed as failure:
                        if not failure.retry or retries >= RETRIES:
                            return self._failed(started, retries, str(failure))
                    await asyncio.sleep(min(BACKOFF_S * 2**retries, BACKOFF_MAX_S))
                    retries += 1
        except asyncio.TimeoutError:
            return self._failed(started, retries, past_deadline(self.deadline_s))

    def _failed(self, started: float, retries: int, error: str) -> Result:
        return Result(False, started, time.perf_counter(), retries=retries, error=self._shown(error))

    async def _attempt(self, url: Any, body: bytes, started: float, retries: int, limit: int | None) -> Result:
        """One streamed POST read to its end; whatever goes wrong becomes RequestFailed, saying if a retry may help."""
        import aiohttp

        stream = StreamReader((self._api_key,) if self._api_key else ())
        clock = time.perf_counter
        try:
            async with self._client.post(url, data=body, allow_redirects=False) as response:
                content = response.content
                if response.status != 200:
                    text, _ = await read_capped(content)
                    reason = error_message(text, stream.secrets)
                    status = response.status
                    raise RequestFailed(f"HTTP {status}: {reason}", status >= 500 or status in RETRY_STATUSES)
                while piece := await content.readany():
                    stream.feed(piece, clock())
        except asyncio.TimeoutError as err:  # aiohttp's own (connect, per read): the deadline's is raised outside
            raise RequestFailed(f"timed out: {_reason(err)} (--vllm-timeout {self.timeout_s:g} s)", True) from None
        except aiohttp.ClientError as err:
            raise RequestFailed(f"{_what_broke(err)}: {_reason(err)}", True) from None
        if stream.error is not None:
            raise RequestFailed(f"the server reported an error mid-stream: {stream.error}", True)
        if stream.usage is None and stream.first_token is None:
            raise RequestFailed("the answer held no streamed completion (no usage, no token)", False)
        return _result(stream, started, clock(), retries, limit)

    def _phase_work(self, load: Load, wall_s: float, bodies: list[tuple[Any, bytes]]) -> PhaseWork:
        details = phase_details(load, wall_s)
        details.update(
            endpoint=str(self.endpoint),
            server=self.kind,
            served_model=self._shown(self.served_model),
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
        if not tasks:  # gather() of nothing would make its future on another loop, and fail over the real error
            return
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def close(self) -> None:
        """Close the connections and the backend's event loop (streams left half-read included)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._client is not None:
            loop.run_until_complete(self._client.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._client = None


def _what_broke(err: BaseException) -> str:
    """aiohttp's exception named for a reader of the record: a response it could not parse, a body cut short."""
    import aiohttp

    if isinstance(err, aiohttp.ClientPayloadError):
        return "broken response body"
    if isinstance(err, aiohttp.ClientResponseError):  # raised by the parser only: statuses are read, not raised
        return "malformed response"
    return type(err).__name__


def _reason(err: BaseException) -> str:
    """What went wrong, in one short line: aiohttp's parser errors quote the bad line over several lines, with a
    caret under the fault (``Invalid character in Content-Length: b'Content-Length: 12abc' ^``); the caret goes, the
    rest is joined and cut, so that the bad value is named and nothing a server sent can grow the line."""
    import aiohttp

    if isinstance(err, aiohttp.ClientConnectorError):  # "connection refused", not the address once more
        cause = err.os_error
        return (os.strerror(cause.errno) if cause.errno else cause.strerror or str(cause)).lower()
    text = err.message if isinstance(err, aiohttp.ClientResponseError) else str(err)
    words = " ".join(word for word in str(text).split() if word.strip("^"))
    if not words:
        return type(err).__name__
    return words if len(words) <= 200 else words[:199] + "…"


async def read_capped(content: Any) -> tuple[bytes, bool]:
    """A body (an aiohttp stream) read up to ``MAX_BODY_BYTES`` and no further (True when there was more): the rest
    is never read, and the connection it was on is closed rather than reused."""
    parts: list[bytes] = []
    size = 0
    while piece := await content.readany():
        parts.append(piece[: MAX_BODY_BYTES - size])
        size += len(piece)
        if size > MAX_BODY_BYTES:
            return b"".join(parts), True
    return b"".join(parts), False


@contextlib.asynccontextmanager
async def _within_py310(seconds: float) -> AsyncIterator[None]:
    """``asyncio.timeout`` for Python 3.10: cancel the task when time is up, and say so as asyncio.TimeoutError."""
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def fire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, fire)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise asyncio.TimeoutError from None
        raise
    finally:
        timer.cancel()


# the whole of a request, retries and all, within a deadline: a timer per request, no task (3.11's asyncio.timeout)
within: Callable[[float], AbstractAsyncContextManager[Any]] = getattr(asyncio, "timeout", _within_py310)


def past_deadline(deadline_s: float) -> str:
    return (
        f"no complete answer within {deadline_s:g} s, the deadline of a request, retries included ({DEADLINE_FACTOR} x "
        "--vllm-timeout): the server kept it open without finishing it"
    )


def completion_limit(body: bytes) -> int | None:
    """The most completion tokens a server may report for a request: ``max_tokens`` x ``n`` and a margin; None when
    the body asks for no bound (a test's own override replaced max_tokens)."""
    fields = json.loads(body)
    asked, sequences = fields.get("max_tokens"), fields.get("n", 1)
    if not _is_count(asked) or not _is_count(sequences):
        return None
    total = int(asked) * int(sequences)
    return total + max(TOKEN_MARGIN, total // 10)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _brief(value: Any) -> str:
    """A value from the server, short: scalars as they are (cut), anything else by its type."""
    if isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return f"a {type(value).__name__}"


def _count_or_none(value: Any) -> int | None:
    return value if _is_count(value) else None


def _result(stream: StreamReader, started: float, ended: float, retries: int, limit: int | None = None) -> Result:
    """The request's result; RequestFailed when the server's counts cannot be true (negative, not whole numbers, or
    more completion tokens than were asked for), since every per-token figure would inherit them."""
    usage = stream.usage
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise RequestFailed(f"the server's usage is not an object but {_brief(usage)}", False)
    completion, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
    for name, value in (("completion_tokens", completion), ("prompt_tokens", prompt)):
        if value is not None and not _is_count(value):
            raise RequestFailed(f"the server reported {name} {_brief(value)}: not a whole number >= 0", False)
    from_usage = completion is not None
    counted = int(completion) if completion is not None else stream.chunks
    if limit is not None and counted > limit:
        what = "completion tokens" if from_usage else "streamed pieces of text"
        raise RequestFailed(
            f"the server reported {_brief(counted)} {what} for a request of at most {limit} (max_tokens x n, and a "
            "margin)",
            False,
        )
    return Result(
        ok=True,
        started=started,
        ended=ended,
        first_token=stream.first_token,
        prompt_tokens=prompt,
        completion_tokens=counted,
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
