"""Every option resolves command line > environment > ini > default, and every bad value is a one-line usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_aienergyscore.config.options import OPTIONS
from pytest_aienergyscore.config.settings import Settings, SettingsError, build_settings

# option dest -> (ini value, env value, cli value, expected ini, expected env, expected cli)
CASES = {
    "energy_backend": ("pytorch", "vllm", "optimum", "pytorch", "vllm", "optimum"),
    "energy_vllm_endpoint": ("http://a:1", "http://b:2/v1", "http://c:3", "http://a:1", "http://b:2/v1", "http://c:3"),
    "energy_meter": ("rapl", "nvml", "estimate", "rapl", "nvml", "estimate"),
    "energy_gpus": ("1", "0,2", "3", [1], [0, 2], [3]),
    "energy_cpu_watts": ("5", "7.5", "12", 5.0, 7.5, 12.0),
    "energy_cpu_scope": ("machine", "process", "machine", "machine", "process", "machine"),
    "energy_disable": ("true", "0", None, True, False, True),
    "energy_dataset": ("a.jsonl", "b.csv", "c.parquet", "a.jsonl", "b.csv", "c.parquet"),
    "energy_samples": ("5", "6", "7", 5, 6, 7),
    "energy_repeat": ("2", "3", "4", 2, 3, 4),
    "energy_warmup": ("0", "1", "2", 0, 1, 2),
    "energy_trust_remote_code": ("yes", "no", None, True, False, True),
    "energy_dcgm_urls": (
        "http://a:1/metrics, http://b:2/metrics",
        "http://e:5/metrics",
        "http://c:3/metrics",
        ["http://a:1/metrics", "http://b:2/metrics"],
        ["http://e:5/metrics"],
        ["http://c:3/metrics"],
    ),
    "energy_dcgm_gpus": ("0", "node-1:1,node-2:0", "GPU-0a1b", "0", "node-1:1,node-2:0", "GPU-0a1b"),
    "energy_dcgm_max_age": ("5", "7.5", "12", 5.0, 7.5, 12.0),
    "energy_optimum_python": ("/opt/i/bin/python", "/opt/e/bin/python", "/opt/c/bin/python") * 2,
    "energy_concurrency": ("2", "8", "64", 2, 8, 64),
    "energy_vllm_api_key_env": ("KEY_A", "KEY_B", "_KEY_C", "KEY_A", "KEY_B", "_KEY_C"),
    "energy_vllm_timeout": ("5", "0.5", "300", 5.0, 0.5, 300.0),
    "energy_vllm_served_model": ("m-ini", "m-env", "org/m-cli", "m-ini", "m-env", "org/m-cli"),
    "energy_model_class": ("a", "B", "c", "A", "B", "C"),
    "energy_allow_multi_gpu": ("true", "0", None, True, False, True),
    "energy_save_baseline": ("/b/ini.json", "/b/env.json", "/b/cli.json", "/b/ini.json", "/b/env.json", "/b/cli.json"),
    "energy_baseline": ("/b/i.json", "/b/e.json", "/b/c.json", "/b/i.json", "/b/e.json", "/b/c.json"),
    "energy_fail_above": ("5", "7.5", "10", 5.0, 7.5, 10.0),
    "energy_strict": ("true", "0", None, True, False, True),
    "energy_require_baseline": ("yes", "off", None, True, False, True),
    "energy_json": ("/j/i.json", "/j/e.json", "/j/c.json", "/j/i.json", "/j/e.json", "/j/c.json"),
    "energy_exports": ("/x/i", "/x/e", "/x/c", "/x/i", "/x/e", "/x/c"),
    "energy_autosave": ("/h/i", "/h/e", "/h/c", "/h/i", "/h/e", "/h/c"),
    "energy_compare": ("latest", "0003", "12", "latest", "0003", "12"),  # a missing FILE.json stops the run early
    "energy_html": ("/r/i.html", "/r/e.html", "/r/c.html", "/r/i.html", "/r/e.html", "/r/c.html"),
    "energy_carbon_intensity": ("400", "55.5", "12", 400.0, 55.5, 12.0),
    "energy_quality_drop": ("5", "7.5", "10", 5.0, 7.5, 10.0),
    "energy_shard": ("0/1", "0/1", "0/1", [0, 1], [0, 1], [0, 1]),  # one share of one: the test itself always runs
    "energy_run_id": ("run-ini", "run.env", "run_cli", "run-ini", "run.env", "run_cli"),
    "energy_shard_durations": ("/d/i.json", "/d/e", "/d/c.json", "/d/i.json", "/d/e", "/d/c.json"),
}

BAD = {
    "energy_backend": "tensorrt",
    "energy_meter": "wattmeter",
    "energy_gpus": "first",
    "energy_cpu_watts": "-3",
    "energy_cpu_scope": "cluster",
    "energy_disable": "maybe",
    "energy_samples": "0",
    "energy_repeat": "-1",
    "energy_warmup": "-2",
    "energy_trust_remote_code": "perhaps",
    "energy_dcgm_urls": ",",
    "energy_dcgm_gpus": "node-1",
    "energy_dcgm_max_age": "0",
    "energy_concurrency": "0",
    "energy_vllm_api_key_env": "sk-not-a-name",
    "energy_vllm_timeout": "soon",
    "energy_model_class": "D",
    "energy_allow_multi_gpu": "sometimes",
    "energy_save_baseline": "test_x.py",
    "energy_fail_above": "-5",
    "energy_strict": "maybe",
    "energy_require_baseline": "perhaps",
    "energy_autosave": "test_x.py",
    "energy_compare": "yesterday",
    "energy_carbon_intensity": "-400",
    "energy_quality_drop": "-1",
    "energy_shard": "4/4",
    "energy_run_id": "../up",
}

SPECS = {spec.dest: spec for spec in OPTIONS}

SHOW_SETTINGS = """
import json
from pytest_aienergyscore.plugin import settings_of

def test_show(request):
    s = settings_of(request.config)
    print("SETTINGS=" + json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in s._asdict().items()
                                   if k != "sources"}, default=str))
    print("SOURCES=" + json.dumps(dict(s.sources)))
"""


def test_every_option_has_a_case() -> None:
    assert set(CASES) | {"energy_output"} == set(SPECS)


def _run_and_read(pytester: pytest.Pytester, *args: str) -> tuple[dict[str, object], dict[str, str]]:
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    return _printed(result, "SETTINGS="), _printed(result, "SOURCES=")


def _printed(result: pytest.RunResult, tag: str) -> dict:
    line = next(x for x in result.outlines if tag in x)
    return json.loads(line.split(tag, 1)[1])


def _cli_args(dest: str, value: str | None) -> list[str]:
    spec = SPECS[dest]
    if spec.is_flag:
        return [spec.flag]
    return [f"{spec.flag}={value}"]


@pytest.mark.parametrize("dest", sorted(CASES))
def test_precedence_cli_over_env_over_ini_over_default(pytester: pytest.Pytester, clean_env, dest: str) -> None:
    spec = SPECS[dest]
    ini, env, cli, want_ini, want_env, want_cli = CASES[dest]
    attr = spec.attr

    settings, sources = _run_and_read(pytester)
    assert sources[attr] == "default"
    assert settings[attr] == (list(spec.default) if isinstance(spec.default, tuple) else spec.default)

    pytester.makeini(f"[pytest]\n{spec.ini} = {ini}\n")
    settings, sources = _run_and_read(pytester)
    assert (settings[attr], sources[attr]) == (want_ini, f"ini key {spec.ini}")

    if spec.env:
        clean_env.setenv(spec.env, env)
        settings, sources = _run_and_read(pytester)
        assert (settings[attr], sources[attr]) == (want_env, f"environment variable {spec.env}")

    settings, sources = _run_and_read(pytester, *_cli_args(dest, cli))
    assert (settings[attr], sources[attr]) == (want_cli, "command line")


BAD_CASES = [
    (dest, source)
    for dest in sorted(BAD)
    for source in ("cli", "env", "ini")
    if not (source == "cli" and SPECS[dest].is_flag)  # a flag carries no value on the command line
]


@pytest.mark.parametrize(("dest", "source"), BAD_CASES)
def test_bad_value_is_a_usage_error_naming_option_source_and_allowed(
    pytester: pytest.Pytester, clean_env, dest: str, source: str
) -> None:
    spec = SPECS[dest]
    bad = BAD[dest]
    pytester.makepyfile(test_nothing="def test_ok():\n    pass\n")
    args: list[str] = []
    if source == "cli":
        args = [f"{spec.flag}={bad}"]
        where = "command line"
    elif source == "env":
        clean_env.setenv(spec.env, bad)
        where = f"environment variable {spec.env}"
    else:
        pytester.makeini(f"[pytest]\n{spec.ini} = {bad}\n")
        where = f"ini key {spec.ini}"
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert spec.flag in errors[0] and repr(bad) in errors[0] and where in errors[0] and "allowed:" in errors[0]
    assert "Traceback" not in "\n".join(result.errlines)


def test_relative_output_from_cli_is_taken_from_the_current_directory(pytester: pytest.Pytester, clean_env) -> None:
    sub = pytester.mkdir("sub")
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        result = pytester.runpytest(str(pytester.path), "-s", "--energy-output=out", "-p", "no:cacheprovider")
    assert _printed(result, "SETTINGS=")["output_dir"] == str(sub / "out")


def test_relative_output_from_ini_is_taken_from_the_rootdir(pytester: pytest.Pytester, clean_env) -> None:
    pytester.makeini("[pytest]\nenergy_output = out-ini\n")
    settings, _ = _run_and_read(pytester)
    assert settings["output_dir"] == str(pytester.path / "out-ini")


def test_default_output_is_results_under_the_rootdir(tmp_path: Path) -> None:
    settings = build_settings({}, {}, {}, cwd=tmp_path / "elsewhere", rootdir=tmp_path)
    assert settings.output_dir == tmp_path / "results"


def test_repeated_gpu_ordinals_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="without repeats"):
        build_settings({"energy_gpus": "0,0"}, {}, {}, cwd=tmp_path, rootdir=tmp_path)


def test_help_lists_every_option_with_env_and_ini(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = "\n".join(result.outlines)
    for spec in OPTIONS:
        assert spec.flag in text
        assert f"ini {spec.ini}" in text or spec.ini in text
        if spec.env:
            assert spec.env in text


def test_the_model_classes_allowed_are_the_rules_own(tmp_path: Path) -> None:
    from pytest_aienergyscore.rules.model_class import MODEL_CLASSES

    with pytest.raises(SettingsError) as err:
        build_settings({"energy_model_class": "D"}, {}, {}, cwd=tmp_path, rootdir=tmp_path)
    assert err.value.allowed == ", ".join(MODEL_CLASSES)


def test_a_dcgm_selector_is_kept_without_the_spaces_around_its_terms(tmp_path: Path) -> None:
    settings = build_settings({"energy_dcgm_gpus": " 0 , node-1:1 "}, {}, {}, cwd=tmp_path, rootdir=tmp_path)
    assert settings.dcgm_gpus == "0,node-1:1"


def test_a_blank_dcgm_selector_on_the_command_line_is_refused_with_the_grammar(tmp_path: Path) -> None:
    from pytest_aienergyscore.config.dcgm_selector import GRAMMAR

    with pytest.raises(SettingsError) as err:
        build_settings({"energy_dcgm_gpus": ""}, {}, {}, cwd=tmp_path, rootdir=tmp_path)
    assert str(err.value) == f"--energy-dcgm-gpus: invalid value '' (from command line); allowed: {GRAMMAR}"


def test_default_settings_equal_settings_built_with_every_default_spelled_out() -> None:
    spelled = Settings(**{name: getattr(Settings(), name) for name in Settings._fields})
    assert spelled == Settings() and spelled.backend == "optimum" and Settings().source_of("backend") == "default"


def test_autosave_alone_keeps_runs_in_dot_energy_under_the_rootdir_and_compare_alone_means_latest(tmp_path) -> None:
    cwd = tmp_path / "sub"
    alone = build_settings({"energy_autosave": "1", "energy_compare": "latest"}, {}, {}, cwd=cwd, rootdir=tmp_path)
    assert alone.autosave == tmp_path / ".energy" and alone.compare == "latest"
    named = build_settings({"energy_autosave": "runs", "energy_compare": "7"}, {}, {}, cwd=cwd, rootdir=tmp_path)
    assert named.autosave == tmp_path / "sub" / "runs" and named.compare == "7"
    off = build_settings({}, {"energy_autosave": "false"}, {}, cwd=tmp_path, rootdir=tmp_path)
    assert off.autosave is None and off.compare is None and off.carbon_intensity is None
