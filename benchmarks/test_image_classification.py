"""Image classification, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "google/vit-base-patch16-224",
]


@pytest.mark.parametrize("model", MODELS)
def test_image_classification(energy_star, model):
    energy_star(task="image_classification", model=model, skip_unavailable=True)
