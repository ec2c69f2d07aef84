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
  When the runner keeps outputs for quality, each generate request keeps its stream's raw pieces (one list append
  per piece); ``readable_outputs`` decodes the answers' text from them once the metered phases are over.

text_generation goes to ``/v1/completions`` with the raw prompt (AI Energy Score's text-generation pipeline applies no
chat template); reasoning and summarization go to ``/v1/chat/completions``, the reasoning switch as vLLM takes it
(``chat_template_kwargs``). The API key is read from an environment variable into a :class:`~.secret.Secret` and only
ever sent as a header: it is in no option, log, record, error message or ``repr``, and every text the server sent back
is masked (``redact``) before it is kept, since a server may repeat the request's headers in its errors.

This module is the backend's contract only; the parts it wires together each have their own module:
:mod:`.endpoint` (the URL), :mod:`.server` (where the server runs and on which GPUs), :mod:`.fields` (request bodies),
:mod:`.client` (HTTP, retries, deadlines), :mod:`.stream` (one streamed answer, its counts checked), :mod:`.load`
(N requests in flight, the steady state) and :mod:`.summary` (what a phase adds up to).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from pytest_aienergyscore.backends.base import Backend, BackendError, LoadRequest, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.secret import Secret, redact
from pytest_aienergyscore.backends.vllm.client import DEADLINE_FACTOR, Client
from pytest_aienergyscore.backends.vllm.endpoint import Endpoint, parse_endpoint
from pytest_aienergyscore.backends.vllm.fields import (
    GENERIC,
    encode_bodies,
    generation_fields,
    query_fields,
    request_fields,
    server_kind,
)
from pytest_aienergyscore.backends.vllm.load import Load, SteadyState, WindowMeter, run_load
from pytest_aienergyscore.backends.vllm.server import ServerPlace, is_local_host, locate_server
from pytest_aienergyscore.backends.vllm.stream import is_count, streamed_text
from pytest_aienergyscore.backends.vllm.summary import failure_error, phase_details
from pytest_aienergyscore.rules.protocol import Protocol
from pytest_aienergyscore.rules.tasks import TaskSpec

SERVED_TASKS = ("text_generation", "reasoning", "summarization")

_window_ids = itertools.count(1)


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
        self._client: Client | None = None  # the HTTP client and its event loop, for the backend's life

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
        self.close()
        self._client = client = Client(endpoint, self._api_key, self.timeout_s, self.deadline_s, self.concurrency)
        try:
            entries = client.call(client.models(key_env))
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
        route, _ = query_fields(*self._loaded(), "")
        place, notes = self._place_and_notes(request, local)
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

    def _place_and_notes(self, request: LoadRequest, local: bool) -> tuple[ServerPlace, list[str]]:
        """Where the server runs, and what the record should say about the server: its name for the model, whether
        a local meter can see its work, whether exact output lengths could be asked for."""
        assert self.endpoint is not None
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
        return place, notes

    def _shown(self, text: str) -> str:
        """Text that came from the server, fit to be kept: the API key masked wherever the server repeated it."""
        return redact(text, (self._api_key,))

    # -- preprocess ---------------------------------------------------------------------------------------------
    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        """Request bodies without the generation fields (they differ per phase); nothing is sent, nothing counted."""
        task, protocol = self._loaded()
        inputs = []
        for sample in samples:
            route, fields = query_fields(task, protocol, str(sample["text"]))
            inputs.append((route, {"model": self.served_model, **fields}))
        return Prepared(inputs, details={"token_counts": "from the server's usage, once requests ran"})

    def _loaded(self) -> tuple[TaskSpec, Protocol]:
        """The connected server's task and the protocol it runs, or one line saying that no server is connected."""
        if self.task is None or self.protocol is None or self.endpoint is None:
            raise BackendError("no server is connected")
        return self.task, self.protocol

    # -- warm-up and phases -------------------------------------------------------------------------------------
    def warmup(self, prepared: Prepared, runs: int, overrides: dict[str, Any]) -> None:
        """Unmetered short requests on the first prompt; one that fails even after retries stops the benchmark."""
        if not runs or not prepared.inputs:
            return
        bodies = self._bodies(prepared.inputs[:1], overrides, "warmup") * runs
        load = Load(len(bodies), 1, None, SteadyState("warmup"))
        client = self._connected()
        client.call(run_load(load, bodies, lambda n: None, client.request))
        failure = next((r for r in load.results if r is not None and not r.ok), None)
        if failure is not None:
            raise BackendError(f"warm-up request to {self.endpoint} failed: {failure.error}")

    def run(self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress) -> PhaseWork:
        """Every request of the phase; failures are counted in the details, which fail the benchmark past 5%."""
        if phase not in ("prefill", "generate"):
            raise BackendError(f"task {self._loaded()[0].name} has no phase {phase!r} on --backend vllm")
        bodies = self._bodies(prepared.inputs, overrides, phase)
        steady = SteadyState(f"{phase}-steady-state#{next(_window_ids)}")
        load = Load(len(bodies), self.concurrency, self.window_hook, steady)
        client = self._connected()
        keep = self.keep_outputs and phase == "generate"  # the whole generation pass is the one whose answers count
        client.keep_pieces = keep
        started = time.perf_counter()
        try:
            client.call(run_load(load, bodies, progress, client.request))
        except BaseException:  # Ctrl-C or a bug: no window left open, no request left running
            load.cancel()
            client.cancel_pending()
            raise
        finally:
            client.keep_pieces = False
        work = self._phase_work(load, time.perf_counter() - started, bodies)
        if keep:
            work.outputs = [r.pieces if r is not None and r.ok else None for r in load.results]
        if work.details.get("prompt_tokens") is not None:
            prepared.input_tokens = work.details["prompt_tokens"]  # the server's count is the one that exists
        return work

    def readable_outputs(self, outputs: list[Any]) -> list[Any]:
        """Each request's answer text from the stream pieces it kept (None for a request that failed or was never
        sent: there is no answer to score), decoded only now that the metered phases are over."""
        secrets = (self._api_key,) if self._api_key else ()
        return [None if pieces is None else streamed_text(pieces, secrets) for pieces in outputs]

    def _connected(self) -> Client:
        if self._client is None:
            raise BackendError("no server is connected")
        return self._client

    def _bodies(
        self, inputs: list[tuple[str, dict[str, Any]]], overrides: dict[str, Any], phase: str
    ) -> list[tuple[Any, bytes]]:
        """(URL, JSON body) per request, all built before the first request is sent, so sending is all that is left."""
        _, protocol = self._loaded()
        assert self.endpoint is not None
        if phase == "prefill":
            params = protocol.prefill(overrides)
        elif phase == "warmup":
            params = protocol.warmup_generate(overrides)
        else:
            params = protocol.generate(overrides)
        return encode_bodies(self.endpoint, inputs, generation_fields(self.kind, params))

    def _phase_work(self, load: Load, wall_s: float, bodies: list[tuple[Any, bytes]]) -> PhaseWork:
        details = phase_details(load, wall_s)
        details.update(
            endpoint=str(self.endpoint),
            server=self.kind,
            served_model=self._shown(self.served_model),
            request_fields=request_fields(bodies),
        )
        if details["failed"] > load.allowed_failures:
            details["error"] = failure_error(load, str(self.endpoint))
        return PhaseWork(samples=load.total, tokens=details["completion_tokens"], details=details)

    def close(self) -> None:
        """Close the connections and the backend's event loop (streams left half-read included)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _count_or_none(value: Any) -> int | None:
    return value if is_count(value) else None
