"""The --vllm-endpoint value: every form a server's docs show is one endpoint, and anything else is one line."""

from __future__ import annotations

import pytest

from pytest_aienergyscore.backends import BackendError
from pytest_aienergyscore.backends.vllm.endpoint import parse_endpoint

SECRET = "sk-test-0123-SECRET-value-9876"


@pytest.mark.parametrize(
    "raw",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/",
        "  http://127.0.0.1:8000/v1//  ",
    ],
)
def test_endpoint_forms_are_one_endpoint(raw: str) -> None:
    endpoint = parse_endpoint(raw)
    assert str(endpoint) == "http://127.0.0.1:8000/v1"
    assert endpoint.url("/models") == "http://127.0.0.1:8000/v1/models"


def test_endpoint_prefix_and_default_ports_are_kept() -> None:
    assert parse_endpoint("https://gw.example/serving/v1").url("/models") == "https://gw.example:443/serving/v1/models"
    assert str(parse_endpoint("http://[::1]/v1")) == "http://[::1]:80/v1"


@pytest.mark.parametrize("raw", ["127.0.0.1:8000", "ftp://host/v1", "http://", "http://h:99999/v1", "http://h/v1?x=1"])
def test_endpoint_that_is_not_a_url_is_one_line_naming_it(raw: str) -> None:
    with pytest.raises(BackendError, match="not an http") as err:
        parse_endpoint(raw)
    assert repr(raw.strip()) in str(err.value) and "\n" not in str(err.value)


def test_credentials_in_the_endpoint_are_refused_and_not_repeated() -> None:
    with pytest.raises(BackendError) as err:
        parse_endpoint(f"http://user:{SECRET}@127.0.0.1:8000/v1")
    assert SECRET not in str(err.value) and "API key" in str(err.value)


def test_missing_endpoint_says_how_to_give_one() -> None:
    with pytest.raises(BackendError, match="--vllm-endpoint URL or set VLLM_ENDPOINT"):
        parse_endpoint(None)
