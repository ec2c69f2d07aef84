"""``--backend`` is a common option name: a conftest (or a plugin) that defines its own must keep working beside ours.

Real pytest runs (pytester): the stranger's conftest gets its ``--backend`` value, and our benchmarks then take the
namespaced twin ``--energy-backend``, the environment variable ``BENCHMARK_BACKEND`` or the ini key.
"""

from __future__ import annotations

import pytest

THEIR_CONFTEST = """
import pytest

def pytest_addoption(parser):
    parser.addoption("--backend", choices=["cpu", "cuda"], default="cpu", help="their own backend option")
"""

THEIR_TEST_AND_OUR_BENCHMARK = """
def test_theirs(request):
    assert request.config.getoption("backend") == "cuda"

def test_ours(energy_meter):
    with energy_meter.measure("call", samples=1):
        sum(i * i for i in range(20_000))
"""

OUR_BENCHMARK = """
def test_ours(energy_meter):
    with energy_meter.measure("call", samples=1):
        sum(i * i for i in range(20_000))
"""

YIELDED = "--backend belongs to conftest.py here: use --energy-backend"


def header(result: pytest.RunResult) -> str:
    (line,) = [line for line in result.outlines if line.startswith("aienergyscore: backend ")]
    return line


def test_a_conftest_with_its_own_backend_option_gets_its_value_and_our_benchmark_takes_energy_backend(
    bench: pytest.Pytester,
) -> None:
    bench.makeconftest(THEIR_CONFTEST)
    bench.makepyfile(test_mixed=THEIR_TEST_AND_OUR_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", "--backend", "cuda", "--energy-backend", "pytorch")
    result.assert_outcomes(passed=2)
    assert header(result).startswith(f"aienergyscore: backend pytorch (command line); {YIELDED}, output ")


def test_benchmark_backend_environment_variable_still_reaches_us_when_a_conftest_owns_backend(
    bench: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    bench.makeconftest(THEIR_CONFTEST)
    bench.makepyfile(test_mixed=THEIR_TEST_AND_OUR_BENCHMARK)
    clean_env.setenv("BENCHMARK_BACKEND", "vllm")
    result = bench.runpytest("-p", "no:cacheprovider", "--backend=cuda")
    result.assert_outcomes(passed=2)
    assert f"backend vllm (environment variable BENCHMARK_BACKEND); {YIELDED}" in header(result)


def test_the_ini_key_still_reaches_us_when_a_conftest_owns_backend(bench: pytest.Pytester) -> None:
    bench.makeconftest(THEIR_CONFTEST)
    bench.makeini("[pytest]\nenergy_backend = pytorch\n")
    bench.makepyfile(test_mixed=THEIR_TEST_AND_OUR_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", "--backend", "cuda")
    result.assert_outcomes(passed=2)
    assert f"backend pytorch (ini key energy_backend); {YIELDED}" in header(result)


def test_their_backend_choices_are_checked_by_their_option_not_by_ours(bench: pytest.Pytester) -> None:
    bench.makeconftest(THEIR_CONFTEST)
    bench.makepyfile(test_mixed=THEIR_TEST_AND_OUR_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", "--backend", "pytorch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "argument --backend: invalid choice: 'pytorch'" in "\n".join(result.errlines)


def test_without_a_conflicting_conftest_backend_still_selects_our_backend(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_ours=OUR_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", "--backend", "pytorch")
    result.assert_outcomes(passed=1)
    assert header(result).startswith("aienergyscore: backend pytorch (command line), output ")


def test_energy_backend_works_without_a_conflicting_conftest_too(bench: pytest.Pytester) -> None:
    bench.makepyfile(test_ours=OUR_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-backend", "vllm")
    result.assert_outcomes(passed=1)
    assert header(result).startswith("aienergyscore: backend vllm (command line), output ")


def test_an_unknown_energy_backend_value_is_a_one_line_usage_error(bench: pytest.Pytester) -> None:
    bench.makeconftest(THEIR_CONFTEST)
    bench.makepyfile(test_mixed=THEIR_TEST_AND_OUR_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", "--backend", "cuda", "--energy-backend", "nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "invalid value 'nosuch'" in line]
    assert len(errors) == 1 and "--backend/--energy-backend: invalid value 'nosuch'" in errors[0]
    assert "(from command line); allowed: " in errors[0] and "pytorch" in errors[0]
    assert "Traceback" not in "\n".join(result.errlines)


def test_a_plugin_loaded_before_ours_that_owns_backend_is_named_in_the_header(bench: pytest.Pytester) -> None:
    bench.makepyfile(their_plugin=THEIR_CONFTEST, test_mixed=THEIR_TEST_AND_OUR_BENCHMARK)
    bench.syspathinsert()
    result = bench.runpytest("-p", "no:cacheprovider", "-p", "their_plugin", "--backend", "cuda")
    result.assert_outcomes(passed=2)
    assert "; --backend belongs to another plugin here: use --energy-backend, output " in header(result)


def test_help_shows_both_spellings_of_our_backend_option(bench: pytest.Pytester) -> None:
    result = bench.runpytest("-p", "no:cacheprovider", "--help")
    text = "\n".join(result.outlines)
    assert "--energy-backend=NAME" in text and "--backend=NAME" in text
    assert "Same as --energy-backend." in text


def test_help_shows_only_energy_backend_as_ours_when_a_conftest_owns_backend(bench: pytest.Pytester) -> None:
    bench.makeconftest(THEIR_CONFTEST)
    result = bench.runpytest("-p", "no:cacheprovider", "--help")
    text = "\n".join(result.outlines)
    assert "--energy-backend=NAME" in text and "their own backend option" in text
    assert "Same as --energy-backend." not in text
