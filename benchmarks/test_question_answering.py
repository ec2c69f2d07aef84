"""Extractive question answering, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "deepset/electra-base-squad2",
]


@pytest.mark.parametrize("model", MODELS)
def test_question_answering(energy_star, model):
    energy_star(task="question_answering", model=model, skip_unavailable=True)
