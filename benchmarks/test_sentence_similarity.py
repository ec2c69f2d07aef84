"""Sentence similarity, AI Energy Score protocol, on the --backend; and our ``embed-pair`` variant, which shows quality.

The protocol encodes each pair as one sequence through the base model: comparable with the leaderboard, but it gives no
similarity score, so no quality. ``embed-pair`` embeds both sentences and compares them, as a sentence-similarity
pipeline would: not comparable, but its record carries Spearman's correlation with the gold scores (built in). A
backend that cannot run the variant (optimum-benchmark's energy_star) skips it with a one-line reason.

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


@pytest.mark.parametrize("model", MODELS)
def test_sentence_similarity_embed_pair(energy_star, model):
    record = energy_star(task="sentence_similarity", model=model, variant="embed-pair", skip_unavailable=True)
    quality = record.metadata["quality"]
    assert quality["metric"] == "spearman", quality.get("reason")
