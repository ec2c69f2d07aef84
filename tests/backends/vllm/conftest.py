"""The real server the vllm backend's tests talk to: one ``transformers serve`` of a tiny model built offline,
shared by every test module here (it takes about 5 s to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Server, import_generation_stack, start_transformers_serve
from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / ".cache" / "tiny-models" / "text_generation"


@pytest.fixture(scope="session")
def tiny_lm() -> Path:
    model = build_tiny_model("text_generation", TINY)
    import_generation_stack(model)
    return model


@pytest.fixture(scope="session")
def tserve(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real ``transformers serve`` for the whole session, stopped by its pid."""
    server = start_transformers_serve(tiny_lm, tmp_path_factory.mktemp("tserve") / "server.log")
    try:
        yield server
    finally:
        server.stop()
