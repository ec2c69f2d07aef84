"""The one grammar of --energy-dcgm-gpus: what each term means, what is refused, and how a term picks GPUs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_aienergyscore.config.dcgm_selector import GRAMMAR, SelectorError, Term, parse_selector

H100 = {"modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-1"}


@pytest.mark.parametrize(
    ("text", "kind", "value", "host", "label"),
    [
        ("GPU-0a1b-2c3d", "uuid", "GPU-0a1b-2c3d", None, None),
        ("mig-GPU-0a1b/1/0", "uuid", "mig-GPU-0a1b/1/0", None, None),
        ("3", "index", "3", None, None),
        ("node-1:0", "index", "0", "node-1", None),
        ("gpu-node-1:0", "index", "0", "gpu-node-1", None),
        ("10.0.0.5:9400:1", "index", "1", "10.0.0.5:9400", None),
        ("modelName=NVIDIA H100 80GB HBM3", "label", "NVIDIA H100 80GB HBM3", None, "modelName"),
        ("pod=a=b:0", "label", "a=b:0", None, "pod"),
    ],
)
def test_each_term_is_classified_by_the_grammar(text: str, kind: str, value: str, host: str, label: str) -> None:
    (term,) = parse_selector(text).terms
    assert term == Term(text, kind, value, host=host, label=label)


@pytest.mark.parametrize("bad", ["node-1", "GPU-", "GPU-a b", "GPU-x=y", "x=", "node:1=x", "node 1:0", "é=1"])
def test_a_term_outside_the_grammar_is_refused_naming_the_term(bad: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_selector(f"0,{bad}")
    assert (err.value.term, str(err.value)) == (bad.strip(), GRAMMAR)


def test_an_empty_term_between_commas_is_refused() -> None:
    with pytest.raises(SelectorError) as err:
        parse_selector("0,,1")
    assert err.value.term == ""


def test_terms_are_stripped_and_the_selector_normalized_without_spaces() -> None:
    selector = parse_selector("  0 , node-1:1 ")
    assert (selector.text, selector.normalized) == ("0 , node-1:1", "0,node-1:1")


def test_a_braced_selector_goes_to_prometheus_whole() -> None:
    selector = parse_selector(' {Hostname="node-1", gpu=~"0|1"} ')
    assert (selector.promql, selector.terms, selector.normalized) == (
        '{Hostname="node-1", gpu=~"0|1"}',
        (),
        '{Hostname="node-1", gpu=~"0|1"}',
    )


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_a_blank_selector_selects_every_gpu(blank: str | None) -> None:
    assert parse_selector(blank) == parse_selector(None)
    assert parse_selector(blank).terms == () and parse_selector(blank).promql == ""


@pytest.mark.parametrize(
    ("text", "selected"),
    [
        ("gpu-0A1B", True),  # UUIDs compare in any case
        ("GPU-ffff", False),
        ("1", True),
        ("2", False),
        ("node-1:1", True),
        ("node-2:1", False),
        ("modelName=NVIDIA H100 80GB HBM3", True),
        ("modelName=NVIDIA A100", False),
        ("pod=vllm-0", False),
    ],
)
def test_a_term_selects_a_gpu_by_uuid_index_host_and_index_or_label(text: str, selected: bool) -> None:
    (term,) = parse_selector(text).terms
    assert term.matches(uuid="GPU-0a1b", index="1", host="node-1", labels=H100) is selected


def test_settings_load_neither_the_grammar_nor_the_rules_at_start_up() -> None:
    """Both are imported when a selector or a model class is parsed: config loads on every pytest start-up."""
    wanted = "('pytest_aienergyscore.rules', 'pytest_aienergyscore.config.dcgm_selector')"
    code = (
        f"import sys, pytest_aienergyscore.config.settings\nprint([m for m in sys.modules if m.startswith({wanted})])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
