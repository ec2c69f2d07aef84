"""The plugin's configuration, resolved once per session: command line > environment variable > ini key > default.

Every option is one row of the table in :mod:`.options` (flag, environment variable, ini key, help, parser), so that
its spellings and its validation cannot drift apart. A bad value raises :class:`SettingsError`, which names the
option, where the value came from and what is allowed; the plugin turns it into a pytest usage error (exit status 4).

Only the standard library is imported here, and only when a session resolves its settings (never at a bare start-up).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from pytest_aienergyscore.config import parsers
from pytest_aienergyscore.config.options import DEFAULT_BACKEND, OPTIONS, OptionSpec


class SettingsError(ValueError):
    """A configuration value that cannot be used, with everything a user needs to fix it in one line."""

    def __init__(self, flag: str, source: str, value: object, allowed: str) -> None:
        self.flag, self.source, self.value, self.allowed = flag, source, value, allowed
        super().__init__(f"{flag}: invalid value {value!r} (from {source}); allowed: {allowed}")


class Settings(NamedTuple):
    """Everything the plugin was told, after precedence and validation. Built once, never mutated (``_replace``
    makes a changed copy). Imported only when a session resolves its settings, never at a bare pytest start-up."""

    backend: str = DEFAULT_BACKEND
    vllm_endpoint: str | None = None
    output_dir: Path = Path("results")
    meter: str = "auto"
    gpus: tuple[int, ...] = (0,)
    cpu_watts: float = 10.0
    cpu_scope: str = "process"
    dataset: str | None = None
    samples: int | None = None
    repeat: int = 1
    warmup: int = 10
    trust_remote_code: bool = False
    # -- vllm backend fields (issue 4) --
    concurrency: int = 1
    vllm_api_key_env: str = "VLLM_API_KEY"
    vllm_timeout: float = 120.0
    vllm_served_model: str | None = None
    # -- optimum backend fields (issue 5) --
    optimum_python: Path | None = None
    # -- CI gate and export fields (issue 6) --
    save_baseline: Path | None = None
    baseline: Path | None = None
    fail_above: float | None = None
    strict: bool = False
    require_baseline: bool = False
    json_path: Path | None = None
    exports_dir: Path | None = None
    # -- history, comparison, HTML report and carbon (issue 16) --
    autosave: Path | None = None
    compare: str | None = None
    html_path: Path | None = None
    carbon_intensity: float | None = None
    # -- quality beside energy (issue 17) --
    quality_drop: float | None = None
    # -- fleet sweeps (issue 18) --
    shard: tuple[int | None, int] | None = None  # (index, count); index None: read from the scheduler's variable
    run_id: str | None = None
    shard_durations: Path | None = None
    # -- AI Energy Score rules fields (issue 7) --
    model_class: str | None = None
    allow_multi_gpu: bool = False
    # -- remote DCGM meter fields (issue 8) --
    dcgm_urls: tuple[str, ...] = ()
    dcgm_gpus: str | None = None
    dcgm_max_age: float = 30.0
    disabled: bool = False
    sources: Mapping[str, str] = MappingProxyType({})

    def source_of(self, field_name: str) -> str:
        """Where a setting came from (``command line``, ``environment variable X``, ``ini key x`` or ``default``)."""
        return self.sources.get(field_name, "default")


IniValue = str | bool | list[str] | None  # as pytest's getini types it: bool for flags, linelist for repeatables


def resolve_value(spec: OptionSpec, cli_value: Any, env: Mapping[str, str], ini_value: IniValue) -> tuple[Any, str]:
    """Pick one option's value and name its source. CLI values already went through argparse (typed for flags), and
    ini values through pytest's getini (a bool, or a list of lines): both are turned back into parser text below."""
    if cli_value is not None:
        raw, source = cli_value, "command line"
    elif spec.env and env.get(spec.env, "").strip():
        raw, source = env[spec.env], f"environment variable {spec.env}"
    elif isinstance(ini_value, bool) or (ini_value and "".join(ini_value).strip()):  # False is a value, [] is not
        raw, source = ini_value, f"ini key {spec.ini}"
    else:
        return spec.default, "default"
    if isinstance(raw, bool):
        return raw, source
    if isinstance(raw, (list, tuple)):  # a repeated flag or a linelist ini key (OptionSpec.multiple): as --x a --x b
        raw = ",".join(str(item) for item in raw)
    try:
        return parser_of(spec)(str(raw)), source
    except ValueError as err:
        flag = spec.flag if spec.twin is None else f"{spec.flag}/{spec.twin}"  # either may have been used
        raise SettingsError(flag, source, raw, str(err)) from None


def parser_of(spec: OptionSpec) -> Callable[[str], Any]:
    """The parser a row of the options table names. Looked up here, when a value is parsed, rather than held by the
    row: the table is imported on every pytest start-up, and the parsers need not be."""
    parse: Callable[[str], Any] = getattr(parsers, spec.parse)
    return parse


_PATH_OPTIONS = ("energy_baseline", "energy_json", "energy_exports", "energy_autosave", "energy_html")


def _resolve_ci_paths(values: dict[str, Any], sources: Mapping[str, str], cwd: Path, rootdir: Path) -> None:
    """Baseline and export paths, relative ones taken as --energy-output's are (ini: rootdir, else: cwd)."""
    if values["energy_save_baseline"] is True:
        values["energy_save_baseline"] = values["energy_output"] / "baseline.json"
    if values["energy_autosave"] is True:  # pytest-benchmark keeps .benchmarks in the rootdir; we keep .energy there
        values["energy_autosave"] = rootdir / ".energy"
    paths = (
        "energy_save_baseline",
        "energy_baseline",
        "energy_json",
        "energy_exports",
        "energy_autosave",
        "energy_html",
        "energy_shard_durations",
    )
    for dest in paths:
        if not values[dest]:
            values[dest] = None
            continue
        path = Path(values[dest]).expanduser()
        base = rootdir if sources[dest] == f"ini key {dest}" else cwd
        values[dest] = path if path.is_absolute() else base / path


def _resolve_optimum_python(value: str | None, sources: Mapping[str, str], cwd: Path, rootdir: Path) -> Path | None:
    """The optimum environment's python as given (relative to the current directory, or to the rootdir from the ini
    file); None when not given, and the backend then looks in the plugin's cache, where ``aienergyscore setup
    optimum`` puts it. Never resolved through symlinks: a venv's python is a link to the base interpreter, and
    following it would leave the venv."""
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (rootdir if sources["energy_optimum_python"].startswith("ini") else cwd) / path
    return path


def build_settings(
    cli: Mapping[str, Any],
    ini: Mapping[str, IniValue],
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path,
    rootdir: Path,
) -> Settings:
    """Resolve every option. ``cli`` and ``ini`` are keyed by dest; missing keys mean "not given"."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        value, source = resolve_value(spec, cli.get(spec.dest), env, ini.get(spec.dest))
        values[spec.dest] = value
        sources[spec.dest] = source
    output = Path(values["energy_output"]).expanduser()
    if not output.is_absolute():
        base = rootdir if sources["energy_output"] in ("default", "ini key energy_output") else cwd
        output = base / output
    values["energy_output"] = output
    if values["energy_meter"] == "dcgm" and not values["energy_dcgm_urls"]:
        raise SettingsError(
            "--energy-meter",
            sources["energy_meter"],
            "dcgm",
            "dcgm only together with --energy-dcgm-url URL (env AIENERGYSCORE_DCGM_URLS, ini energy_dcgm_urls)",
        )
    for dest in ("energy_vllm_endpoint", "energy_dataset", "energy_vllm_served_model"):
        if values[dest] == "":
            values[dest] = None
    values["energy_optimum_python"] = _resolve_optimum_python(values["energy_optimum_python"], sources, cwd, rootdir)
    _resolve_ci_paths(values, sources, cwd, rootdir)
    fields = {spec.dest: spec.attr for spec in OPTIONS}
    kwargs = {fields[dest]: value for dest, value in values.items()}
    return Settings(**kwargs, sources={fields[dest]: source for dest, source in sources.items()})
