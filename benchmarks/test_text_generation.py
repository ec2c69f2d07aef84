"""Text generation (greedy, 10 new tokens per prompt), AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "openai/gpt-oss-20b",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
]


@pytest.mark.parametrize("model", MODELS)
def test_text_generation(energy_star, model):
    energy_star(task="text_generation", model=model, skip_unavailable=True)
