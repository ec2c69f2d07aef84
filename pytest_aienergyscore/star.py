"""The callable behind the ``energy_star`` fixture: turns a test's request into a runner call, and every error a
user can cause into one line (a failed test, or a skip when the model cannot be had here), never a traceback."""

from __future__ import annotations

from typing import Any

import pytest

from .backends import BackendError, ModelUnavailable
from .datasets import DatasetError
from .recorder import EnergyRecorder
from .records import Record
from .runner import BenchmarkRequest, default_device, run_benchmark
from .session import EnergySession
from .tasks import UnknownTask, get_task


class EnergyStar:
    def __init__(self, session: EnergySession, recorder: EnergyRecorder) -> None:
        self.session = session
        self.recorder = recorder
        self.calls = 0

    def __call__(
        self,
        task: str,
        model: str,
        processor: str | None = None,
        *,
        skip_unavailable: bool = False,
        dataset: str | None = None,
        samples: int | None = None,
        **overrides: Any,
    ) -> Record:
        if self.calls:
            pytest.fail("energy_star runs one benchmark per test; parametrize the test for more", pytrace=False)
        self.calls += 1
        s = self.session.settings
        if s.disabled:
            pytest.skip("energy metering is off (--no-energy)")
        try:
            spec = get_task(task)
            request = BenchmarkRequest(
                task=spec,
                model=model,
                processor=processor,
                dataset=s.dataset or dataset,
                samples=s.samples or samples,
                repeat=s.repeat,
                warmup=s.warmup,
                device=default_device(s.gpus),
                trust_remote_code=s.trust_remote_code,
                overrides=overrides,
            )
            run_benchmark(self.recorder, s.backend, request, self.session.backend_cache)
        except ModelUnavailable as err:
            problem, skip = str(err), skip_unavailable
        except (UnknownTask, DatasetError, BackendError) as err:
            problem, skip = str(err), False
        else:
            problem, skip = "", False
        # outside the except blocks, so the report shows the one line and no chained exception
        if problem and skip:
            pytest.skip(problem)
        if problem:
            pytest.fail(problem, pytrace=False)
        record = self.recorder.to_record("passed")
        assert record is not None
        return record
