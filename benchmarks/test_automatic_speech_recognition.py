"""Automatic speech recognition, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "openai/whisper-large-v3",
]


@pytest.mark.parametrize("model", MODELS)
def test_automatic_speech_recognition(energy_star, model):
    energy_star(task="automatic_speech_recognition", model=model, skip_unavailable=True)
