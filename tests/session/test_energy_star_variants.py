"""A protocol variant the session's backend cannot run is a fact about the backend, not a fault of the benchmark:
with ``skip_unavailable=True`` the benchmark skips with the backend's one line, without it the test fails in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_embedder() -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return build_tiny_model("sentence_similarity", REPO / ".cache" / "tiny-models" / "sentence_similarity")


@pytest.mark.parametrize(("skip_unavailable", "outcome"), [(True, "skipped"), (False, "failed")])
def test_a_variant_the_backend_cannot_run_skips_when_asked_and_fails_otherwise_in_one_line(
    bench: pytest.Pytester, tiny_embedder: Path, skip_unavailable: bool, outcome: str
) -> None:
    bench.makepyfile(
        test_variant=f"""
def test_pair(energy_star):
    energy_star(task="sentence_similarity", model={str(tiny_embedder)!r}, variant="embed-pair",
                skip_unavailable={skip_unavailable})
"""
    )
    result = bench.runpytest("-p", "no:cacheprovider", "--backend=optimum", "-rs")
    result.assert_outcomes(**{outcome: 1})
    out = "\n".join(result.outlines)
    assert "protocol variant 'embed-pair' embeds each sentence on its own, which optimum-benchmark's energy_star" in out
    assert "Traceback" not in out and "optimum/backend.py" not in out
    assert not list(bench.path.glob("results/*/*/benchmark_report.json"))  # refused at load: nothing was metered
