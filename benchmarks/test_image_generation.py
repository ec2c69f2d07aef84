"""Image generation, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "segmind/tiny-sd",
]


@pytest.mark.parametrize("model", MODELS)
def test_image_generation(energy_star, model):
    energy_star(task="image_generation", model=model, skip_unavailable=True)
