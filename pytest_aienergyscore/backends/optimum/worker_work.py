"""Inside the optimum worker: what energy_star actually did in each metered phase, counted as it ran.

A result is comparable only when its work is the leaderboard's, and a configuration says what was asked for, not
what ran (a model may stop early, a pipeline may take other steps, a preprocessor may drop samples). So the worker
counts, per metered window: samples, generate calls and the new tokens each produced, model forward calls, images
and their size, scheduler steps. The parity tests (``tests/test_protocol_parity.py``) compare these counts with the
pytorch backend's, key for key. Counting reads tensor shapes and list lengths only.

This module runs in optimum-benchmark's environment beside :mod:`.worker`: the standard library at module
level, and it wraps what it is handed (the scenario class, a backend, transformers' generation class).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# energy_star's metered windows that run the model (its ``track(task_name=...)`` names); warm-up runs outside them.
WORK_PHASES = ("prefill", "generate", "forward", "call")
# Windows whose samples are relayed as progress: the model's passes, and the preprocessing of the dataset.
SAMPLE_PHASES = ("preprocess_dataset", *WORK_PHASES)
# energy_star's warm-up methods (one per kind of task): announced as a phase of their own, not metered.
WARMUPS = ("warmup_text_generation", "warmup_image_diffusion", "warmup_inference")
# transformers' decoding loops: each takes the decoder's starting ids and returns them with the new tokens appended.
DECODING_LOOPS = ("_sample", "_beam_search")


class ProgressChannel:
    """The worker's end of the progress relay: one short line per event, appended to a file the plugin reads.

    Lines: ``start<TAB>phase<TAB>samples`` as a phase begins (0 samples: no count, as loading a model) and
    ``done<TAB>n`` as n samples finish. Why so little: a ``done`` line is written inside a metered window, so an event
    is one unbuffered ``os.write`` of a few bytes (no lock, no flush, no JSON) and nothing else; the plugin does the
    rest in its own process. Progress is a nicety: a failed write ends the lines, never the benchmark.
    """

    def __init__(self, path: str | None = None) -> None:
        self.fd: int | None = None
        if path:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def start(self, phase: str, samples: int) -> None:
        self._write(f"start\t{phase}\t{samples}\n")

    def done(self, samples: int) -> None:
        self._write(f"done\t{samples}\n")

    def _write(self, line: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, line.encode())
        except OSError:
            self.fd = None


def _rows(inputs: Any) -> int:
    """Samples in one batch of energy_star's inputs: the first dimension of a tensor, or a list's length."""
    for value in inputs.values() if hasattr(inputs, "values") else ():
        if hasattr(value, "shape") and len(value.shape) > 0:
            return int(value.shape[0])
        if isinstance(value, (list, tuple)):
            return len(value)
    return 1


def _sequences(output: Any) -> Any:
    """The token ids of a decoding loop's result (a tensor, or a generate output with ``sequences``)."""
    return getattr(output, "sequences", output)


def _image_size(image: Any) -> list[int] | None:
    """[width, height] of a PIL image, or of an (height, width, channels) array."""
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return [int(size[0]), int(size[1])]
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) >= 2:
        return [int(shape[1]), int(shape[0])] if len(shape) == 3 else [int(shape[-1]), int(shape[-2])]
    return None


class Work:
    """What energy_star actually did in each metered phase, counted from its calls' inputs and outputs.

    Why measured: the configuration says what was asked for; the leaderboard's method is what ran (a model may
    stop early, a pipeline may take other steps, a preprocessor may drop samples). Counting only happens while one
    of energy_star's metered windows is open, so warm-up calls are left out, as energy_star leaves them out.

    New tokens are read in transformers' decoding loop (ids in, ids out), not from ``generate``'s result: models
    differ in what that result starts with (a causal LM echoes its prompt, Whisper drops its decoder prompt, BLIP and
    encoder-decoders keep one start token), while the loop's own input is exactly the sequence it extends.
    """

    def __init__(self, channel: ProgressChannel | None = None) -> None:
        self.channel = channel or ProgressChannel()
        self.phase: str | None = None
        self.phases: dict[str, dict[str, Any]] = {}
        self._loop_tokens: list[int] | None = None
        self._instrumented: set[int] = set()
        # set when the plugin asks for the answers (.worker_outputs.Keeper): each metered pass's output is handed to
        # it by reference; the backend is kept so that the answers can be read with its processor once all is over
        self.keeper: Any = None
        self.backend: Any = None

    def facts(self) -> dict[str, Any]:
        assert self.phase is not None
        return self.phases.setdefault(self.phase, {"samples": 0})

    def add(self, key: str, amount: int) -> None:
        facts = self.facts()
        facts[key] = facts.get(key, 0) + amount

    def samples_done(self, rows: int) -> None:
        """Count samples once their call has returned, and relay them as progress."""
        self.add("samples", rows)
        self.channel.done(rows)

    def to_dict(self) -> dict[str, Any]:
        return {name: dict(facts) for name, facts in self.phases.items()}

    # -- energy_star's side: phases and backend calls

    def follow_phases(self, scenario_class: Any) -> None:
        """Know which metered window is open, by wrapping the scenario's ``track`` context manager; announce each
        window before it opens, and the preprocessed samples after it has closed."""
        original = scenario_class.track
        work = self

        @contextlib.contextmanager
        def track(scenario: Any, task_name: str) -> Iterator[None]:
            if task_name in WORK_PHASES:
                work.instrument(scenario.backend)
            samples = int(scenario.config.num_samples) if task_name in SAMPLE_PHASES else 0
            work.channel.start(task_name, samples)
            work.phase = task_name if task_name in WORK_PHASES else None
            try:
                with original(scenario, task_name=task_name):
                    yield
            finally:
                work.phase = None
            if task_name == "preprocess_dataset":  # one call does them all: their count comes with the window's end
                work.channel.done(len(scenario.dataset))

        scenario_class.track = track

    def follow_warmup(self, scenario_class: Any) -> None:
        """Announce the warm-up (unmetered, possibly long for a big model) so that it is not shown as loading."""
        for name in WARMUPS:
            original = getattr(scenario_class, name, None)
            if original is not None:
                setattr(scenario_class, name, self._announced("warmup", original))

    def _announced(self, phase: str, method: Any) -> Any:
        def announced(*args: Any, **kwargs: Any) -> Any:
            self.channel.start(phase, 0)
            return method(*args, **kwargs)

        return announced

    def instrument(self, backend: Any) -> None:
        """Wrap this backend's calls and its model's forward (and a pipeline's scheduler step), once."""
        if id(backend) in self._instrumented:
            return
        self._instrumented.add(id(backend))
        self.backend = backend
        for name in ("prefill", "generate"):
            setattr(backend, name, self._counting_generate(getattr(backend, name)))
        backend.forward = self._counting_samples(backend.forward)
        backend.call = self._counting_call(backend.call)
        model = getattr(backend, "pretrained_model", None)
        if model is None:
            return
        if callable(getattr(model, "forward", None)):
            model.forward = self._counting("forward_calls", model.forward)
        scheduler = getattr(model, "scheduler", None)
        if scheduler is not None and callable(getattr(scheduler, "step", None)):
            scheduler.step = self._counting("scheduler_steps", scheduler.step)

    def _counting(self, key: str, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.phase is not None:
                self.add(key, 1)
            return method(*args, **kwargs)

        return counted

    def _counting_samples(self, method: Any) -> Any:
        def counted(inputs: Any, kwargs: Any) -> Any:
            output = method(inputs, kwargs)
            if self.phase is not None:
                self.samples_done(_rows(inputs))
                if self.keeper is not None:
                    self.keeper.keep(self.phase, inputs, output)
            return output

        return counted

    def _counting_generate(self, method: Any) -> Any:
        def counted(inputs: Any, kwargs: Any) -> Any:
            if self.phase is None:
                return method(inputs, kwargs)
            self._loop_tokens = []
            try:
                output = method(inputs, kwargs)
                new = sum(self._loop_tokens) if self._loop_tokens else None
            finally:
                self._loop_tokens = None
            rows = _rows(inputs)
            self.samples_done(rows)
            if self.keeper is not None:
                self.keeper.keep(self.phase, inputs, output)
            self.add("generate_calls", 1)
            histogram = self.facts().setdefault("new_tokens_per_sample", {})
            key = str(new) if new is not None else "unknown"
            histogram[key] = histogram.get(key, 0) + rows
            return output

        return counted

    def _counting_call(self, method: Any) -> Any:
        def counted(inputs: Any, kwargs: Any) -> Any:
            if self.phase is None:
                return method(inputs, kwargs)
            output = method(inputs, kwargs)
            images = getattr(output, "images", None)  # PIL images, or one array / tensor of them
            images = [] if images is None else images
            self.samples_done(_rows(inputs))
            self.add("images", len(images))
            if len(images) and "image_size" not in self.facts():
                self.facts()["image_size"] = _image_size(images[0])
            return output

        return counted

    # -- transformers' side: the decoding loop

    def follow_decoding(self, generation_class: Any) -> None:
        """Count new tokens where they are made: each decoding loop's output length minus its input length."""
        for name in DECODING_LOOPS:
            original = getattr(generation_class, name, None)
            if original is not None:
                setattr(generation_class, name, self._counting_loop(original))

    def _counting_loop(self, loop: Any) -> Any:
        def counted(model: Any, input_ids: Any, *args: Any, **kwargs: Any) -> Any:
            output = loop(model, input_ids, *args, **kwargs)
            if self._loop_tokens is not None:
                self._loop_tokens.append(int(_sequences(output).shape[-1]) - int(input_ids.shape[-1]))
            return output

        return counted
