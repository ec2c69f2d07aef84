"""Sentence similarity, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "sentence-transformers/all-MiniLM-L6-v2",
]


@pytest.mark.parametrize("model", MODELS)
def test_sentence_similarity(energy_star, model):
    energy_star(task="sentence_similarity", model=model, skip_unavailable=True)
