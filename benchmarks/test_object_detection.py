"""Object detection, AI Energy Score protocol, on the --backend.

Models that cannot be had on this machine (not cached, Hub offline) are skipped with a one-line reason.
Add your own model ids or local folders to MODELS.
"""

import pytest

MODELS = [
    "facebook/detr-resnet-50",
]


@pytest.mark.parametrize("model", MODELS)
def test_object_detection(energy_star, model):
    energy_star(task="object_detection", model=model, skip_unavailable=True)
