"""``pytest --help`` reads well: ini keys carry their pytest types, defaults read as a user would write them, and
typed ini keys (bool, linelist) still resolve to exactly the settings the command line gives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_aienergyscore.config import parsers
from pytest_aienergyscore.config.options import OPTIONS, OptionSpec

SHOW_SETTINGS = """
import json
from pytest_aienergyscore.plugin import settings_of

def test_show(request):
    s = settings_of(request.config)
    print("SETTINGS=" + json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in s._asdict().items()
                                   if k != "sources"}, default=str))
"""


def _spec(default: object) -> OptionSpec:
    return OptionSpec("energy_x", "x", "--energy-x", "Some help.", "text", default=default)


@pytest.mark.parametrize(
    ("default", "shown"),
    [
        ("results", "default results"),
        (Path("results"), "default results"),
        (120.0, "default 120)"),
        (0.5, "default 0.5"),
        ((0,), "default 0)"),
        ((0, 1), "default 0,1"),
        (10, "default 10"),
    ],
)
def test_a_default_is_shown_as_a_user_writes_it(default: object, shown: str) -> None:
    assert shown in _spec(default).help_text()


@pytest.mark.parametrize("default", [None, False, ()])
def test_an_empty_default_is_not_shown(default: object) -> None:
    assert "default" not in _spec(default).help_text()


def test_every_row_names_a_parser_that_the_parsers_module_defines() -> None:
    missing = [f"{spec.flag}: {spec.parse}" for spec in OPTIONS if not callable(getattr(parsers, spec.parse, None))]
    assert missing == []


def test_importing_the_plugin_leaves_the_parsers_unimported() -> None:
    """The table names its parsers: pytest's start-up must not pay for the module that holds them."""
    code = "import sys, pytest_aienergyscore.plugin\nprint('pytest_aienergyscore.config.parsers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.fixture
def help_text(pytester: pytest.Pytester) -> str:
    """``pytest --help`` of a real pytest process, wrapped lines joined so that one option's help reads as one line."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--help")
    assert result.ret == pytest.ExitCode.OK
    return re.sub(r"\s+", " ", "\n".join(result.outlines))


def test_help_gives_each_ini_key_its_pytest_type(help_text: str) -> None:
    for spec in OPTIONS:
        want = "bool" if spec.is_flag else "linelist" if spec.multiple else "string"
        assert f"{spec.ini} ({want}):" in help_text


def test_help_shows_no_python_reprs_of_defaults(help_text: str) -> None:
    assert "default results)" in help_text
    assert "default 0)" in help_text  # --energy-gpus, not (0,)
    assert "default 120)" in help_text  # --vllm-timeout, not 120.0
    assert "default 10)" in help_text  # --energy-cpu-watts and --energy-warmup
    assert not re.search(r"; default (\(|\d+\.0\b|PosixPath)", help_text)  # our rows: "(env X; ini y; default z)"


def _settings(pytester: pytest.Pytester, *args: str) -> dict[str, object]:
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    line = next(x for x in result.outlines if "SETTINGS=" in x)
    return json.loads(line.split("SETTINGS=", 1)[1])


def test_bool_linelist_and_string_ini_keys_resolve_as_the_command_line_does(
    pytester: pytest.Pytester, clean_env
) -> None:
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    urls = ["http://a:1/metrics", "http://b:2/metrics"]
    cli = _settings(
        pytester,
        "--energy-strict",
        *(f"--energy-dcgm-url={url}" for url in urls),
        "--energy-output=out",
        f"--rootdir={pytester.path}",
    )
    pytester.makeini(
        "[pytest]\nenergy_strict = true\nenergy_dcgm_urls =\n    http://a:1/metrics\n    http://b:2/metrics\n"
        "energy_output = out\n"
    )
    ini = _settings(pytester)
    assert ini == cli
    assert (ini["strict"], ini["dcgm_urls"], ini["output_dir"]) == (True, urls, str(pytester.path / "out"))


def test_a_false_bool_ini_key_overrides_nothing_and_reads_false(pytester: pytest.Pytester, clean_env) -> None:
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    pytester.makeini("[pytest]\nenergy_disable = false\n")
    assert _settings(pytester)["disabled"] is False


def test_a_bad_bool_ini_key_is_one_line_naming_flag_key_and_value(pytester: pytest.Pytester, clean_env) -> None:
    pytester.makepyfile(test_nothing="def test_ok():\n    pass\n")
    pytester.makeini("[pytest]\nenergy_strict = Maybe\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert "--energy-strict" in errors[0] and "ini key energy_strict" in errors[0] and "allowed:" in errors[0]
    assert "maybe" in errors[0].lower()
    assert "Traceback" not in "\n".join(result.errlines)


def test_a_bool_ini_key_left_empty_means_the_default_as_every_other_empty_key_does(
    pytester: pytest.Pytester, clean_env
) -> None:
    pytester.makepyfile(
        test_probe="from pytest_aienergyscore.plugin import settings_of\n\n"
        "def test_probe(request):\n    assert settings_of(request.config).strict is False\n"
    )
    pytester.makeini("[pytest]\nenergy_strict =\nenergy_output =\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
