"""Summarization, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "sshleifer/distilbart-cnn-12-6",
]


@pytest.mark.parametrize("model", MODELS)
def test_summarization(energy_star, model):
    energy_star(task="summarization", model=model, skip_unavailable=True)
