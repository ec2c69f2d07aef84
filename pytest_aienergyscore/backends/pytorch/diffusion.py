"""The pytorch backend's text-to-image task: a diffusers pipeline called once per prompt (energy_star's ``call`` phase).

Kept apart because nothing else here is a pipeline of components: parameters are summed over its components, and what
a call did is counted from the scheduler's steps and the images returned, not read from the call's arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_aienergyscore.backends.base import BackendError, PhaseWork, Prepared, Progress
from pytest_aienergyscore.backends.pytorch.task import PytorchTask, plain_kwargs


class Diffusion(PytorchTask):
    """A diffusers text-to-image pipeline; phase ``call`` makes the protocol's images, one prompt at a time.

    Its answers are the images themselves (no built-in metric has references for them; a test's own quality
    function gets them)."""

    outputs_phase = "call"
    has_answers = True

    def readable(self, kept: Any) -> Any:
        """The prompt's image (a PIL image), or its list of images when the call made several."""
        return kept[0] if len(kept) == 1 else list(kept)

    def model_kwargs(self) -> dict[str, Any]:
        return {"torch_dtype": self.dtype}

    def load(self) -> None:
        if not (Path(self.path) / "model_index.json").is_file() and Path(self.path).is_dir():
            raise BackendError(f"model {self.request.model!r} is not a diffusers pipeline (no model_index.json)")
        from diffusers import DiffusionPipeline

        self.model = DiffusionPipeline.from_pretrained(self.path, **self.model_kwargs()).to(self.device)
        self.model.set_progress_bar_config(disable=True)

    def loaded_parameters(self) -> int | None:
        """A pipeline is not a module: its parameters are those of its components (text encoder, unet, vae)."""
        parameters = 0
        for component in self.model.components.values():
            if hasattr(component, "parameters"):
                parameters += sum(p.numel() for p in component.parameters())
        return parameters

    def preprocess(self, samples: list[dict[str, Any]]) -> Prepared:
        return Prepared([str(s["prompt"]) for s in samples])

    def warmup(self, first: Any, runs: int, overrides: dict[str, Any]) -> None:
        """energy_star's diffusion warm-up: one call with the protocol's kwargs, then ``runs`` two-step calls."""
        if not runs:
            return
        self.model(first, **self.protocol.call(overrides))
        kwargs = self.protocol.warmup_call(overrides)
        for _ in range(runs):
            self.model(first, **kwargs)

    def run(
        self, phase: str, prepared: Prepared, overrides: dict[str, Any], progress: Progress, keep: list[Any] | None
    ) -> PhaseWork:
        if phase != "call":
            raise BackendError(f"task {self.task.name} has no phase {phase!r}")
        kwargs = self.protocol.call(overrides)
        images, size = 0, None
        with count_calls(self.model.scheduler, "step") as steps:
            for prompt in prepared.inputs:
                output = self.model(prompt, **kwargs).images
                images += len(output)
                if keep is not None:
                    keep.append(output)
                size = size or (list(output[0].size) if output and hasattr(output[0], "size") else None)
                progress(1)
        details = {
            "images": images,
            "image_size": size,
            "scheduler_steps": steps[0],
            "call_kwargs": plain_kwargs(kwargs),
        }
        return PhaseWork(samples=len(prepared), details=details)


class count_calls:
    """Counts calls of ``owner.name`` while the block runs (the scheduler's steps: what a diffusion call did)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name, self.count = owner, name, [0]

    def __enter__(self) -> list[int]:
        original = getattr(self.owner, self.name)
        count = self.count

        def counted(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            return original(*args, **kwargs)

        setattr(self.owner, self.name, counted)
        return count

    def __exit__(self, *exc: object) -> None:
        delattr(self.owner, self.name)  # the instance attribute goes; the class's method shows through again
