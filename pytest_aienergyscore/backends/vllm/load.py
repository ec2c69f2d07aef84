"""The load generator: a phase's requests sent by N workers, and the bookkeeping of what is in flight.

With more than one request in flight, the figure worth having is the steady state (ML.ENERGY's way): the stretch
from the moment N requests are in flight until the queue drains, metered on the window meter the runner hands over.
The bookkeeping also stops sending once more requests failed than the benchmark allows, instead of waiting out
every retry of a run that fails anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_aienergyscore.backends.base import Progress
from pytest_aienergyscore.backends.vllm.stream import Result, completion_limit
from pytest_aienergyscore.records.figures import Measurement

MAX_FAILURE_RATE = 0.05  # more failed requests than this fails the benchmark

Send = Callable[[Any, bytes, int | None], Awaitable[Result]]  # (URL, body, completion limit) -> its result


class WindowMeter(Protocol):
    """What the backend needs to meter a stretch inside a phase: the session's meter has exactly this."""

    def begin_window(self, name: str) -> None: ...

    def end_window(self, name: str) -> Measurement: ...

    def cancel_window(self, name: str) -> None: ...


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


async def run_load(load: Load, bodies: list[tuple[Any, bytes]], progress: Progress, send: Send) -> None:
    """``load.concurrency`` workers, each sending the next request as soon as its last one finished."""
    queue = iter(range(len(bodies)))
    limit = completion_limit(bodies[0][1]) if bodies else None

    async def worker() -> None:
        for index in queue:
            if load.aborted:
                break
            load.sending()
            url, body = bodies[index]
            result = await send(url, body, limit)
            load.finished(index, result)
            progress(1)
        load.queue_empty()

    await asyncio.gather(*(worker() for _ in range(min(load.concurrency, len(bodies)))))
