"""Shared test set-up: pytester for driving the plugin as a user would, and an offline, repo-local cache."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

# The optimum environment belongs to the machine (`aienergyscore setup optimum` makes it once in the user's cache, as
# scripts/setup.sh does): tests.support.optimum_env finds it here, before XDG_CACHE_HOME is pointed inside the repo.
import tests.support.optimum_env  # noqa: F401
from pytest_aienergyscore.config.options import OPTIONS

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"

# No Hub at test time, and every cache inside the repo's ignored .cache folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(CACHE / "hf"))
os.environ.setdefault("XDG_CACHE_HOME", str(CACHE))
os.environ.setdefault("VLLM_CACHE_ROOT", str(CACHE / "vllm"))

# pytester's in-process runs drop the modules first imported inside them. torch cannot be imported twice in one
# process, and a second copy of Pillow or matplotlib next to objects of the first (cached fonts, matplotlib's class
# registry) breaks; so everything a benchmark run may import is imported once here, outside every run. A test file
# that needs one of them still says so with pytest.importorskip.
for _outside_module in (
    "torch",
    "numpy",
    "aiohttp",
    "transformers",
    "datasets",  # registers pyarrow extension types: a second import in one process fails
    "diffusers",
    "PIL.Image",
    "PIL.ImageDraw",
    "PIL.ImageFont",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "ttf_opensans",
):
    with contextlib.suppress(ImportError):  # a missing extra skips the tests that need it, and this too
        __import__(_outside_module)
with contextlib.suppress(ImportError):
    import transformers

    transformers.AutoModel, transformers.AutoModelForCausalLM  # noqa: B018 - resolve the lazy modules now
    # The processors' base classes too: a processor class first imported inside an in-process run is dropped with
    # that run, and its next copy no longer subclasses the base class transformers checks against (seen with BLIP).
    transformers.AutoProcessor, transformers.AutoImageProcessor, transformers.AutoFeatureExtractor  # noqa: B018
    for _base in ("image_processing_base", "image_processing_utils", "processing_utils", "feature_extraction_utils"):
        with contextlib.suppress(ImportError):
            __import__(f"transformers.{_base}")

# Every option's environment variable (so a new option cannot be forgotten here), and the ones read outside the table.
ENV_VARS = (
    *(spec.env for spec in OPTIONS if spec.env),
    "VLLM_API_KEY",
    "GITHUB_STEP_SUMMARY",
    "AIENERGYSCORE_PROGRESS_INTERVAL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No plugin setting leaks in from the developer's shell."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def bench(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project where the plugin's meter is the estimate (the only one this machine has)."""
    clean_env.setenv("AIENERGYSCORE_METER", "estimate")
    return pytester
