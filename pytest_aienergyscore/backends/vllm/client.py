"""The HTTP side: one aiohttp session that lists the served models and streams requests, with retries and deadlines.

A benchmark client must never be the bottleneck, and must never trust the server: every way a request can go wrong
(refused, timed out, a 5xx, a body cut short, malformed framing, bytes trickling in forever) ends as one line that
names it, and a request with its retries is given up after ``DEADLINE_FACTOR`` times ``--vllm-timeout``. Bodies are
read up to ``MAX_BODY_BYTES``. The API key is sent as a header only and masked in every text the server sent back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from pytest_aienergyscore.backends.base import BackendError
from pytest_aienergyscore.backends.secret import Secret, redact
from pytest_aienergyscore.backends.vllm.endpoint import Endpoint
from pytest_aienergyscore.backends.vllm.stream import RequestFailed, Result, StreamReader, checked_result, error_message

RETRIES = 3  # further attempts after the first, for timeouts, 5xx answers and broken streams
BACKOFF_S = 0.25  # wait before the first retry; doubled for each further one
BACKOFF_MAX_S = 4.0
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx: the server may recover; other 4xx will not change
MAX_BODY_BYTES = 1 << 20  # GET /v1/models and error bodies: far more than any real one, and read no further
DEADLINE_FACTOR = 10  # a request as a whole, retries included, is given up after this many --vllm-timeout

_JSON_ANSWER = {"Accept": "application/json"}  # GET /v1/models (its Content-Type, with no body, says nothing)

T = TypeVar("T")


class Client:
    """One event loop and one aiohttp session for the backend's life, so that keep-alive connections outlast a
    phase. aiohttp because a benchmark client must never be the bottleneck: it costs under 0.2 ms of CPU per
    streamed request at concurrency 64 (vLLM's own benchmark client uses it), speaks http and https alike, and
    its C parser refuses malformed framing (a bad Content-Length, an endless chunk-size line) in one error."""

    def __init__(
        self, endpoint: Endpoint, api_key: Secret | None, timeout_s: float, deadline_s: float, concurrency: int
    ) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self.secrets: tuple[Secret, ...] = (api_key,) if api_key else ()
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.concurrency = concurrency
        # set by the backend for the pass whose answers are scored: each request keeps its stream's raw pieces
        self.keep_pieces = False
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop()
        self._session: Any = None
        try:
            self._session = self.call(self._new_session())
        except BaseException:  # no loop left open by a client that never came to be
            self.close()
            raise

    async def _new_session(self) -> Any:
        """The session, made on the client's loop. Bodies are read as sent (``identity``, no decompression), so the
        caps on them hold; each read may wait ``timeout_s`` (a stalled server), the request as a whole is bounded by
        the deadline in :meth:`request`; the pool holds one connection per request in flight."""
        import aiohttp

        # the streamed POSTs' headers, made once: per-request headers would be merged into these for every request
        headers = {"Accept-Encoding": "identity", "Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key.reveal()}"  # kept in the session, no frame's local
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        return aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout, auto_decompress=False, trust_env=False
        )

    def call(self, coroutine: Awaitable[T]) -> T:
        """Run a coroutine to its end on the client's loop (the backend's methods are synchronous)."""
        assert self._loop is not None
        return self._loop.run_until_complete(coroutine)

    def shown(self, text: str) -> str:
        """Text that came from the server, fit to be kept: the API key masked wherever the server repeated it."""
        return redact(text, (self.api_key,))

    # -- GET /v1/models -------------------------------------------------------------------------------------------
    async def models(self, key_env: str) -> list[dict[str, Any]]:
        """GET /v1/models, every way it can go wrong turned into one line that names the endpoint."""
        import aiohttp

        endpoint = self.endpoint
        try:
            async with (
                within(self.deadline_s),
                self._session.get(endpoint.url("/models"), headers=_JSON_ANSWER, allow_redirects=False) as response,
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
        return self._model_list(status, body, cut, key_env)

    def _model_list(self, status: int, body: bytes, cut: bool, key_env: str) -> list[dict[str, Any]]:
        """The listing's entries from its answer, or one line saying why the answer is not a model list."""
        endpoint = self.endpoint
        if status in (401, 403):
            if self.api_key:
                raise BackendError(f"{endpoint} rejected the API key from ${key_env} (HTTP {status})")
            raise BackendError(
                f"{endpoint} needs an API key (HTTP {status}): set ${key_env}, or name another variable with "
                "--vllm-api-key-env"
            )
        if status == 404:
            raise BackendError(f"{endpoint} is not an OpenAI-compatible server: GET /v1/models answered 404")
        if status != 200:
            raise BackendError(
                f"{endpoint}: GET /v1/models answered HTTP {status}: {error_message(body, self.secrets)}"
            )
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

    # -- one streamed request -----------------------------------------------------------------------------------
    async def request(self, url: Any, body: bytes, limit: int | None) -> Result:
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
        return Result(False, started, time.perf_counter(), retries=retries, error=self.shown(error))

    async def _attempt(self, url: Any, body: bytes, started: float, retries: int, limit: int | None) -> Result:
        """One streamed POST read to its end; whatever goes wrong becomes RequestFailed, saying if a retry may help."""
        import aiohttp

        stream = StreamReader(self.secrets)
        clock = time.perf_counter
        pieces: list[bytes] | None = [] if self.keep_pieces else None  # per attempt: a retry starts a fresh list
        try:
            async with self._session.post(url, data=body, allow_redirects=False) as response:
                content = response.content
                if response.status != 200:
                    text, _ = await read_capped(content)
                    reason = error_message(text, stream.secrets)
                    status = response.status
                    raise RequestFailed(f"HTTP {status}: {reason}", status >= 500 or status in RETRY_STATUSES)
                if pieces is None:
                    while piece := await content.readany():
                        stream.feed(piece, clock())
                else:  # the answer's text is wanted: one append per piece, nothing decoded until the phase is over
                    keep = pieces.append
                    while piece := await content.readany():
                        keep(piece)
                        stream.feed(piece, clock())
        except asyncio.TimeoutError as err:  # aiohttp's own (connect, per read): the deadline's is raised outside
            raise RequestFailed(f"timed out: {_reason(err)} (--vllm-timeout {self.timeout_s:g} s)", True) from None
        except aiohttp.ClientError as err:
            raise RequestFailed(f"{_what_broke(err)}: {_reason(err)}", True) from None
        if stream.error is not None:
            raise RequestFailed(f"the server reported an error mid-stream: {stream.error}", True)
        if stream.usage is None and stream.first_token is None:
            raise RequestFailed("the answer held no streamed completion (no usage, no token)", False)
        result = checked_result(stream, started, clock(), retries, limit)
        result.pieces = pieces
        return result

    # -- the end ----------------------------------------------------------------------------------------------------
    def cancel_pending(self) -> None:
        """After an interruption: no request left running on the loop."""
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
        """Close the connections and the event loop (streams left half-read included)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._session is not None:
            loop.run_until_complete(self._session.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        self._session = None


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
