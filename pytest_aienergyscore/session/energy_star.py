"""The callable behind the ``energy_star`` fixture: turns a test's request into a runner call, and every error a
user can cause into one line (a failed test, or a skip when the model cannot be had here), never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from pytest_aienergyscore.backends import BackendError, ModelUnavailable, ProtocolRefused, backend_class
from pytest_aienergyscore.backends.base import BenchmarkRequest
from pytest_aienergyscore.records.quality import QualityError
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.rules.datasets import DatasetError
from pytest_aienergyscore.rules.model_class import MultiGpuRefused
from pytest_aienergyscore.rules.protocol import UnknownVariant
from pytest_aienergyscore.rules.tasks import TaskSpec, UnknownTask, get_task
from pytest_aienergyscore.session.energy_meter import EnergyRecorder
from pytest_aienergyscore.session.energy_session import EnergySession
from pytest_aienergyscore.session.runner import default_device, run_benchmark


def with_reasoning_params(spec: TaskSpec, params: Mapping[str, Any] | None) -> TaskSpec:
    """The task with extra chat-template switches for reasoning (``reasoning_effort="high"``, say).

    Changing them changes the protocol, so the record's protocol differs from the task's and the result is marked
    not comparable; they mean nothing to a task without reasoning, hence the error there.
    """
    if not params:
        return spec
    if not spec.reasoning:
        raise BackendError(f"reasoning_params apply to the reasoning task only, not to {spec.name}")
    return replace(spec, chat_template_extra=MappingProxyType({**spec.chat_template_extra, **params}))


def check_quality_function(quality: object) -> str:
    """Why ``energy_star(quality=...)`` cannot be used ("" when it can): it is called after the phases as
    ``fn(samples, outputs)``, and a non-function found only then would cost the whole benchmark's run."""
    if quality is None or callable(quality):
        return ""
    return (
        f"energy_star(quality={quality!r}): not callable; pass a function fn(samples, outputs) returning "
        '{"metric": name, "value": number, "higher_is_better": bool}'
    )


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
        reasoning_params: Mapping[str, Any] | None = None,
        variant: str | None = None,
        quality: Callable[[list[dict[str, Any]], list[Any]], dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> Record:
        """Run the task's protocol on ``model``; ``quality=fn`` scores the kept outputs with the test's own metric
        (``fn(samples, outputs)``, called after the metered phases) instead of the task's built-in one.
        ``skip_unavailable=True`` skips, rather than fails, when the model cannot be had here or the backend cannot
        run the protocol (a variant it has no way to do)."""
        if self.calls:
            pytest.fail("energy_star runs one benchmark per test; parametrize the test for more", pytrace=False)
        self.calls += 1
        bad_quality = check_quality_function(quality)
        if bad_quality:
            pytest.fail(bad_quality, pytrace=False)
        s = self.session.settings
        if s.disabled:
            pytest.skip("energy metering is off (--no-energy)")
        try:
            spec = with_reasoning_params(get_task(task), reasoning_params)
            if variant not in (None, "default", "t5"):
                spec.protocol_for(variant=variant)  # an unknown variant fails here, in one line
            backend = backend_class(s.backend)
            request = BenchmarkRequest(
                task=spec,
                model=model,
                processor=processor,
                dataset=s.dataset or dataset,
                samples=s.samples or samples,
                repeat=s.repeat,
                warmup=s.warmup,
                device="server" if backend.remote else default_device(s.gpus),
                trust_remote_code=s.trust_remote_code,
                overrides=overrides,
                backend_options=backend.options_from(s),
                model_class=s.model_class,
                allow_multi_gpu=s.allow_multi_gpu,
                variant=variant,
                quality=quality,
            )
            run_benchmark(self.recorder, s.backend, request, self.session.backend_cache)
        except (ModelUnavailable, ProtocolRefused) as err:  # not here, or not on this backend: not a fault of the test
            problem, skip = str(err), skip_unavailable
        # QualityError: a test's quality function failed or returned a bad figure; the phases are in the recorder
        except (UnknownTask, UnknownVariant, DatasetError, BackendError, MultiGpuRefused, QualityError) as err:
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
