"""Text generation with the model's reasoning switch on, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "Qwen/Qwen3-0.6B",
]


@pytest.mark.parametrize("model", MODELS)
def test_reasoning(energy_star, model):
    energy_star(task="reasoning", model=model, skip_unavailable=True)
